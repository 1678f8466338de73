"""The one augmentation definition (NumPy + OpenCV), for every trainer and backend.

A *sample* is a dict that keeps everything a loss or an input may need through augmentation:

    image   (h, w, 3) uint8 RGB: what the model sees (composited at the end)
    alpha   (h, w) float32 in [0, 1]: the person's matte or mask
    fg, bg  (h, w, 3) uint8: foreground and background colours (both the image itself
            unless the person was pasted onto a new background)
    trimap  (h, w) uint8 0 / 128 / 255, from the augmented alpha (`AugmentConfig.trimap`)
    refined bool: the alpha is soft (refined) rather than a rough binary mask

`augment_sample(rng, sample, size, aug, backgrounds)` warps every map with one transform (a
resized crop of the bucket's aspect ratio, rotation, perspective), flips them together,
jitters the colours of fg and bg alike, and only then composites image = alpha fg + (1 -
alpha) bg, so a composition loss and a trimap input need nothing else. Every random draw
comes from `rng` (a NumPy Generator), so the same seed gives the same sample on the tf.data
path and on the PyDataset path.
"""

import dataclasses
import math

import cv2
import numpy as np

from humanmatting.specs import make_trimap

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass
class AugmentConfig:
    """Joint augmentation settings (training only).

    Attributes:
        flip: probability of a horizontal flip.
        rotation: maximum rotation in degrees (uniform in +-rotation).
        perspective: maximum corner displacement as a fraction of the crop's side.
        min_scale, max_scale: area of the crop window relative to the image (values above 1
            zoom out, the border filled by reflection).
        grayscale: probability of turning the image gray.
        brightness: maximum brightness shift as a fraction of 255.
        contrast, saturation: maximum relative change (uniform in 1 +- value).
        balance: maximum per-channel colour-balance change (uniform in 1 +- value per
            channel).
        composite: probability of pasting the person onto a random people-free background
            (when backgrounds are given and the sample has a person).
        crop_background: cut a window of the sample's aspect ratio out of the background
            instead of stretching it.
        trimap: make a trimap from the augmented alpha (for trimap-matting models).
        trimap_band: (low, high) pixels: the trimap's band half-width is drawn in this range.
    """

    flip: float = 0.5
    rotation: float = 15.0
    perspective: float = 0.06
    min_scale: float = 0.35
    max_scale: float = 1.0
    grayscale: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.3
    saturation: float = 0.4
    balance: float = 0.1
    composite: float = 0.25
    crop_background: bool = False
    trimap: bool = False
    trimap_band: tuple = (1, 19)

    def __post_init__(self):
        for name in ("flip", "grayscale", "composite"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment.{name} is a probability in [0, 1], got "
                                 f"{getattr(self, name)}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"augment: need 0 < min_scale <= max_scale, got "
                             f"{self.min_scale}, {self.max_scale}")
        low, high = self.trimap_band
        if not 0 <= low <= high:
            raise ValueError(f"augment.trimap_band must be (low, high) with 0 <= low <= high, "
                             f"got {self.trimap_band}")


def make_sample(image, alpha, refined=False):
    """A sample from an (h, w, 3) uint8 image and an (h, w) uint8 or float alpha."""
    alpha = np.asarray(alpha)
    if alpha.dtype == np.uint8:
        alpha = alpha.astype(np.float32) * np.float32(1 / 255)
    return {"image": image, "alpha": alpha.astype(np.float32), "fg": image, "bg": image,
            "trimap": None, "refined": bool(refined)}


def fit_background(rng, bg, height, width, crop):
    """`bg` at (height, width): stretched, or (`crop`) a random window of that aspect ratio
    resized, so that a 4:1 people-free band is not squashed behind a 3:4 portrait."""
    if crop:
        bh, bw = bg.shape[:2]
        if bw * height >= bh * width:
            ch, cw = bh, max(1, round(bh * width / height))
        else:
            ch, cw = max(1, round(bw * height / width)), bw
        y0, x0 = rng.integers(bh - ch + 1), rng.integers(bw - cw + 1)
        bg = bg[y0:y0 + ch, x0:x0 + cw]
    return cv2.resize(bg, (width, height), interpolation=cv2.INTER_LINEAR)


def crop_transform(rng, height, width, size, aug):
    """The 3x3 perspective matrix that maps a random crop of an (height, width) image onto an
    output of `size` (H, W): the bucket's aspect ratio, an area of min_scale..max_scale of the
    image, rotated by up to +-rotation degrees, corners jittered by up to `perspective`."""
    out_h, out_w = size
    aspect = out_w / out_h
    area = height * width * rng.uniform(aug.min_scale, aug.max_scale)
    ch = math.sqrt(area / aspect)
    cw = ch * aspect
    if aug.max_scale <= 1:   # a zoom-in stays inside the image
        cw = min(width, cw)
        ch = min(height, cw / aspect)
        cw = ch * aspect
    # max(0, ...): the window may be larger than the image (zoom-out) or exceed it by a
    # rounding step; it is then centred with some play
    y0 = rng.uniform(min(0.0, height - ch), max(0.0, height - ch))
    x0 = rng.uniform(min(0.0, width - cw), max(0.0, width - cw))
    src = np.float32([[x0, y0], [x0 + cw, y0], [x0 + cw, y0 + ch], [x0, y0 + ch]])
    src += rng.uniform(-aug.perspective, aug.perspective, (4, 2)).astype(np.float32) * [cw, ch]
    angle = math.radians(rng.uniform(-aug.rotation, aug.rotation))
    centre = src.mean(axis=0)
    rot = np.float32([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    src = (src - centre) @ rot.T + centre
    dst = np.float32([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]])
    return cv2.getPerspectiveTransform(src, dst)


def _warp(array, matrix, size, interpolation=cv2.INTER_LINEAR):
    return cv2.warpPerspective(array, matrix, (size[1], size[0]), flags=interpolation,
                               borderMode=cv2.BORDER_REFLECT_101)


def colour_jitter(rng, aug):
    """Draws one colour change; returns a function applying it to (h, w, 3) uint8 images."""
    contrast = rng.uniform(1 - aug.contrast, 1 + aug.contrast)
    brightness = rng.uniform(-aug.brightness, aug.brightness) * 255
    saturation = rng.uniform(1 - aug.saturation, 1 + aug.saturation)
    balance = rng.uniform(1 - aug.balance, 1 + aug.balance, size=3).astype(np.float32)
    gray = rng.random() < aug.grayscale

    def apply(rgb):
        x = rgb.astype(np.float32) * np.float32(contrast) + np.float32(brightness)
        mean = x.mean(axis=2, keepdims=True)
        x = mean + (x - mean) * np.float32(saturation)
        x = x * balance
        if gray:
            x = np.repeat((x @ LUMA)[..., None], 3, axis=2)
        return np.clip(x, 0, 255)

    return apply


def augment_sample(rng, sample, size, aug, backgrounds=()):
    """One training sample at `size` (H, W); see the module docstring.

    Args:
        rng: numpy.random.Generator (all randomness comes from it).
        sample: a dict from `make_sample` (any size).
        size: the bucket's (H, W).
        aug: AugmentConfig.
        backgrounds: people-free (h, w, 3) uint8 images to paste people onto.

    Returns:
        A new sample dict at `size`: image, fg, bg uint8, alpha float32, trimap uint8 or None,
        refined.
    """
    image, alpha = sample["image"], sample["alpha"]
    fg, bg = sample.get("fg", image), sample.get("bg", image)
    height, width = image.shape[:2]
    pasted = (len(backgrounds) > 0 and rng.random() < aug.composite
              and float(alpha.max()) > 0.5)
    if pasted:
        fg = image
        bg = fit_background(rng, backgrounds[rng.integers(len(backgrounds))], height, width,
                            aug.crop_background)
    separate = pasted or bg is not fg   # else fg = bg = image, and compositing is a no-op
    matrix = crop_transform(rng, height, width, size, aug)
    alpha = np.clip(_warp(alpha, matrix, size), 0.0, 1.0)
    fg = _warp(fg, matrix, size)
    bg = _warp(bg, matrix, size) if separate else fg
    if rng.random() < aug.flip:
        alpha, fg, bg = alpha[:, ::-1], fg[:, ::-1], bg[:, ::-1]
    jitter = colour_jitter(rng, aug)
    fg_f = jitter(fg)
    bg_f = fg_f if bg is fg else jitter(bg)
    a = alpha[..., None]
    image = fg_f if bg is fg else fg_f * a + bg_f * (1.0 - a)
    trimap = None
    if aug.trimap:
        low, high = aug.trimap_band
        band = int(rng.integers(low, high + 1))
        trimap = make_trimap(alpha, erode=band, dilate=band)
    as_uint8 = lambda x: np.ascontiguousarray(np.rint(x)).astype(np.uint8)   # noqa: E731
    return {"image": as_uint8(image), "alpha": np.ascontiguousarray(alpha, np.float32),
            "fg": as_uint8(fg_f), "bg": as_uint8(bg_f), "trimap": trimap,
            "refined": bool(sample.get("refined", False))}
