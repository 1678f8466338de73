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

People as users photograph them (all off by default, on in the shipped configs):
`zoom_out` pastes the sample's person small (a share of the frame height drawn log-uniformly
in `zoom_out_height`), anywhere, onto a people-free scene or onto a larger canvas of the
photo's own background (the person painted out); `extra_people` pastes up to
`max_extra_people` more people cut from other samples (`people`, a function drawing one)
into the frame; `rotation_far` is the probability of a rotation beyond +-rotation (up to
180 degrees, people lying or upside down); `motion_blur`, `low_light` and `jpeg` degrade the
frame as phones and cameras do. A pasted person goes *over* the frame (alpha a_p, colours
f_p): alpha <- a_p + (1 - a_p) alpha and the premultiplied foreground likewise, so every
mask stays exact and image = alpha fg + (1 - alpha) bg still holds (before noise and JPEG,
which touch the image only).
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
        edge_crop: probability that the crop window is centred on a pixel of the person's
            edge (soft alpha, or the mask's boundary) rather than anywhere: IndexNet's
            training crops, where the matting loss is (the unknown band) and not on the
            known regions around it.
        rotation_far: probability that the rotation is drawn beyond +-rotation, up to 180.
        zoom_out: probability of pasting the person small into a new frame;
            zoom_out_height: (low, high) share of the frame height the person's box takes
            (log-uniform); own_background: the share of those frames made from the photo's
            own background (the person painted out), the rest from a people-free scene.
        extra_people: probability of pasting 1..max_extra_people more people (cut from other
            samples) into the frame; extra_height: their (low, high) share of its height.
        motion_blur: probability of a linear motion blur (length a share of the long side in
            motion_blur_length, any direction) of image and alpha alike.
        low_light: probability of a dark, noisy exposure (gain, gamma, sensor noise).
        jpeg: probability of JPEG compression at a quality in jpeg_quality.
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
    edge_crop: float = 0.0
    rotation_far: float = 0.0
    zoom_out: float = 0.0
    zoom_out_height: tuple = (0.05, 0.6)
    own_background: float = 0.5
    extra_people: float = 0.0
    max_extra_people: int = 3
    extra_height: tuple = (0.08, 0.8)
    motion_blur: float = 0.0
    motion_blur_length: tuple = (0.01, 0.05)
    low_light: float = 0.0
    jpeg: float = 0.0
    jpeg_quality: tuple = (20, 75)

    def __post_init__(self):
        for name in ("flip", "grayscale", "composite", "rotation_far", "zoom_out",
                     "own_background", "extra_people", "motion_blur", "low_light", "jpeg",
                     "edge_crop"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment.{name} is a probability in [0, 1], got "
                                 f"{getattr(self, name)}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"augment: need 0 < min_scale <= max_scale, got "
                             f"{self.min_scale}, {self.max_scale}")
        for name in ("zoom_out_height", "extra_height", "motion_blur_length"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"augment.{name} must be (low, high) with 0 < low <= high, "
                                 f"got {getattr(self, name)}")
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise ValueError(f"augment.jpeg_quality must be (low, high) in 1..100, got "
                             f"{self.jpeg_quality}")
        if self.max_extra_people < 1:
            raise ValueError(f"augment.max_extra_people must be >= 1, got "
                             f"{self.max_extra_people}")
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


def edge_pixel(rng, alpha):
    """(y, x) of a random pixel of the person's edge: a soft one (0.02 < alpha < 0.98), else
    one on the boundary of `alpha >= 0.5` (a binary mask); None without either."""
    soft = (alpha > 0.02) & (alpha < 0.98)
    if not soft.any():
        mask = (alpha >= 0.5).astype(np.uint8)
        soft = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    found = np.flatnonzero(soft)
    if not len(found):
        return None
    return divmod(int(found[rng.integers(len(found))]), alpha.shape[1])


def crop_transform(rng, height, width, size, aug, centre=None):
    """The 3x3 perspective matrix that maps a random crop of an (height, width) image onto an
    output of `size` (H, W): the bucket's aspect ratio, an area of min_scale..max_scale of the
    image, rotated by up to +-rotation degrees, corners jittered by up to `perspective`;
    centred on `centre` (y, x) when given (kept inside the image where it fits)."""
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
    if centre is not None:
        y0 = min(max(centre[0] - ch / 2, min(0.0, height - ch)), max(0.0, height - ch))
        x0 = min(max(centre[1] - cw / 2, min(0.0, width - cw)), max(0.0, width - cw))
    src = np.float32([[x0, y0], [x0 + cw, y0], [x0 + cw, y0 + ch], [x0, y0 + ch]])
    src += rng.uniform(-aug.perspective, aug.perspective, (4, 2)).astype(np.float32) * [cw, ch]
    angle = math.radians(draw_angle(rng, aug))
    centre = src.mean(axis=0)
    rot = np.float32([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    src = (src - centre) @ rot.T + centre
    dst = np.float32([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]])
    return cv2.getPerspectiveTransform(src, dst)


def draw_angle(rng, aug):
    """A rotation in degrees: uniform in +-rotation, or with probability `rotation_far`
    uniform in rotation..180 either way."""
    if aug.rotation_far and rng.random() < aug.rotation_far:
        return float(rng.choice((-1, 1)) * rng.uniform(aug.rotation, 180.0))
    return float(rng.uniform(-aug.rotation, aug.rotation))


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


def person_box(alpha, threshold=0.02):
    """(y0, y1, x0, x1) of the pixels with alpha above `threshold`, or None."""
    rows = np.flatnonzero((alpha > threshold).any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero((alpha > threshold).any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def paint_out(image, alpha, work_side=96):
    """The photo's own background: the person (alpha > 0.02, dilated) painted out by
    OpenCV's inpainting at a small working size, then resized back."""
    h, w = image.shape[:2]
    scale = min(1.0, work_side / min(h, w))
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    hole = cv2.resize((alpha > 0.02).astype(np.uint8), small, interpolation=cv2.INTER_NEAREST)
    hole = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    filled = cv2.inpaint(img, hole * 255, 5, cv2.INPAINT_TELEA)
    return cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)


def log_uniform(rng, low, high):
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def paste_over(rng, layers, person, height_share, aug):
    """Pastes one person over `layers` (alpha, premultiplied fg, bg at the frame's size).

    Args:
        rng: the generator.
        layers: dict alpha (H, W) float32, fgp (H, W, 3) float32 = alpha x fg, bg; changed in
            place.
        person: a sample dict; its alpha's box is cut out with its colours (`fg`).
        height_share: the box's height as a share of the frame's.
        aug: AugmentConfig (rotation, flip, colours).
    """
    box = person_box(person["alpha"])
    if box is None:
        return
    y0, y1, x0, x1 = box
    alpha = person["alpha"][y0:y1, x0:x1]
    fg = person.get("fg", person["image"])[y0:y1, x0:x1]
    height, width = layers["alpha"].shape
    scale = height_share * height / (y1 - y0)
    angle = float(rng.uniform(-aug.rotation, aug.rotation))
    # the box's centre lands anywhere in the frame, its feet at most a little below it
    cx = rng.uniform(0, width)
    half = 0.5 * (y1 - y0) * scale
    cy = rng.uniform(min(half, height / 2), max(height - half, height / 2) + 0.1 * half)
    matrix = cv2.getRotationMatrix2D(((x1 - x0) / 2, (y1 - y0) / 2), angle, scale)
    matrix[:, 2] += [cx - (x1 - x0) / 2, cy - (y1 - y0) / 2]
    if rng.random() < aug.flip:
        alpha, fg = alpha[:, ::-1], fg[:, ::-1]
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    a = cv2.warpAffine(np.ascontiguousarray(alpha), matrix, (width, height), flags=interp,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    f = cv2.warpAffine(np.ascontiguousarray(fg), matrix, (width, height), flags=interp,
                       borderMode=cv2.BORDER_REPLICATE)
    a = np.clip(a, 0.0, 1.0)[..., None]
    f = colour_jitter(rng, aug)(f)
    layers["fgp"] = a * f + (1.0 - a) * layers["fgp"]
    layers["alpha"] = a[..., 0] + (1.0 - a[..., 0]) * layers["alpha"]


def degrade(rng, layers, aug):
    """Frame-wide motion blur and low light on the layers (alpha too for blur); returns the
    noise to add to the image (or None)."""
    height, width = layers["alpha"].shape
    if aug.motion_blur and rng.random() < aug.motion_blur:
        length = max(3, int(round(rng.uniform(*aug.motion_blur_length) * max(height, width))))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2),
                                      float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        kernel /= max(float(kernel.sum()), 1e-6)
        for key in ("alpha", "fgp", "bg"):
            layers[key] = cv2.filter2D(layers[key], -1, kernel, borderType=cv2.BORDER_REFLECT)
    noise = None
    if aug.low_light and rng.random() < aug.low_light:
        gain = rng.uniform(0.2, 0.6)
        gamma = rng.uniform(1.0, 1.8)
        for key in ("fgp", "bg"):
            layers[key] = 255.0 * (np.clip(layers[key], 0, 255) / 255.0) ** gamma * gain
        sigma = rng.uniform(2.0, 8.0)
        noise = rng.normal(0.0, sigma, (height, width, 3)).astype(np.float32)
    return noise


def augment_sample(rng, sample, size, aug, backgrounds=(), people=None):
    """One training sample at `size` (H, W); see the module docstring.

    Args:
        rng: numpy.random.Generator (all randomness comes from it).
        sample: a dict from `make_sample` (any size).
        size: the bucket's (H, W).
        aug: AugmentConfig.
        backgrounds: people-free (h, w, 3) uint8 images to paste people onto.
        people: None, or a function rng -> a sample dict with a person (for `extra_people`).

    Returns:
        A new sample dict at `size`: image, fg, bg uint8, alpha float32, trimap uint8 or None,
        refined, rearranged (people were pasted small or added: a teacher that knows the
        original photo's kind does not know this frame).
    """
    image, alpha = sample["image"], sample["alpha"]
    fg, bg = sample.get("fg", image), sample.get("bg", image)
    height, width = image.shape[:2]
    has_person = float(alpha.max()) > 0.5
    zoom = bool(aug.zoom_out) and has_person and rng.random() < aug.zoom_out
    extra = bool(aug.extra_people) and people is not None and rng.random() < aug.extra_people
    layers = None
    if zoom:
        own = len(backgrounds) == 0 or rng.random() < aug.own_background
        canvas = paint_out(bg, alpha) if own else backgrounds[rng.integers(len(backgrounds))]
        ch, cw = canvas.shape[:2]
        matrix = crop_transform(rng, ch, cw, size, dataclasses.replace(
            aug, min_scale=min(aug.min_scale, 1.0), max_scale=1.0, rotation_far=0.0))
        canvas = _warp(canvas, matrix, size)
        if rng.random() < aug.flip:
            canvas = canvas[:, ::-1]
        bg_f = colour_jitter(rng, aug)(canvas)
        layers = {"alpha": np.zeros(size, np.float32),
                  "fgp": np.zeros((*size, 3), np.float32), "bg": bg_f}
        paste_over(rng, layers, {"alpha": alpha, "fg": fg, "image": image},
                   log_uniform(rng, *aug.zoom_out_height), aug)
        fg_f, separate = None, True
    else:
        pasted = (len(backgrounds) > 0 and rng.random() < aug.composite and has_person)
        if pasted:
            fg = image
            bg = fit_background(rng, backgrounds[rng.integers(len(backgrounds))], height,
                                width, aug.crop_background)
        separate = pasted or bg is not fg   # else fg = bg = image: compositing is a no-op
        centre = None
        if aug.edge_crop and rng.random() < aug.edge_crop:
            centre = edge_pixel(rng, alpha)
        matrix = crop_transform(rng, height, width, size, aug, centre)
        alpha = np.clip(_warp(alpha, matrix, size), 0.0, 1.0)
        fg = _warp(fg, matrix, size)
        bg = _warp(bg, matrix, size) if separate else fg
        if rng.random() < aug.flip:
            alpha, fg, bg = alpha[:, ::-1], fg[:, ::-1], bg[:, ::-1]
        jitter = colour_jitter(rng, aug)
        fg_f = jitter(fg)
        bg_f = fg_f if bg is fg else jitter(bg)
    if extra:
        if layers is None:
            layers = {"alpha": np.ascontiguousarray(alpha, np.float32),
                      "fgp": fg_f * alpha[..., None], "bg": bg_f}
        for _ in range(int(rng.integers(1, aug.max_extra_people + 1))):
            paste_over(rng, layers, people(rng), log_uniform(rng, *aug.extra_height), aug)
    if layers is None and (aug.motion_blur or aug.low_light):
        layers = {"alpha": np.ascontiguousarray(alpha, np.float32),
                  "fgp": fg_f * alpha[..., None], "bg": bg_f}
    noise = degrade(rng, layers, aug) if layers is not None else None
    if layers is not None:
        alpha = np.clip(layers["alpha"], 0.0, 1.0)
        bg_f = np.clip(layers["bg"], 0, 255)
        a = alpha[..., None]
        # fg where the person is; elsewhere it is never seen, the background's colour
        fg_f = np.where(a > 1e-4, layers["fgp"] / np.maximum(a, 1e-4), bg_f)
        fg_f = np.clip(fg_f, 0, 255)
        image = np.clip(layers["fgp"], 0, 255) + (1.0 - a) * bg_f
    else:
        a = alpha[..., None]
        image = fg_f if bg is fg else fg_f * a + bg_f * (1.0 - a)
    if noise is not None:
        image = image + noise
    if aug.jpeg and rng.random() < aug.jpeg:
        quality = int(rng.integers(aug.jpeg_quality[0], aug.jpeg_quality[1] + 1))
        bgr = cv2.cvtColor(np.clip(np.rint(image), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        _, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        image = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    trimap = None
    if aug.trimap:
        low, high = aug.trimap_band
        band = int(rng.integers(low, high + 1))
        trimap = make_trimap(alpha, erode=band, dilate=band)
    as_uint8 = lambda x: np.ascontiguousarray(np.clip(np.rint(x), 0, 255)).astype(np.uint8)   # noqa: E731
    return {"image": as_uint8(image), "alpha": np.ascontiguousarray(alpha, np.float32),
            "fg": as_uint8(fg_f), "bg": as_uint8(bg_f), "trimap": trimap,
            "refined": bool(sample.get("refined", False)), "rearranged": zoom or extra}
