"""What a model takes and gives, as data, and the one place each convention is applied.

A preset (`humanmatting.registry.Preset`) declares an `InputSpec` (image channels and
normalisation, optionally a trimap), an `OutputSpec` (softmax2 / sigmoid / alpha; the primary
output of a dict and its side outputs) and a task. Everything downstream uses the functions
here and keeps no copy of them:

- `to_model_input(image, spec, trimap=None)`: an RGB image (and trimap) at model size -> input;
- `person_probability(output, spec)`: the person probability or alpha from any output;
- `split_target(y_true)`: the training target convention (alpha, refined flag);
- the trimap convention (uint8 0 / 128 / 255), its one maker `make_trimap` and its check.
"""

import dataclasses

import cv2
import numpy as np

#: (H, W) sizes, multiples of 32, short side 256, ratios 1:2 .. 2:1.
SIZES_256 = ((256, 512), (256, 448), (256, 384), (256, 320), (256, 256),
             (320, 256), (384, 256), (448, 256), (512, 256))
#: The same ratios at short side 320: what the models trained here run at (their training
#: crops zoom in, so people look larger in training than in a whole photo at short side 256;
#: on the validation split, 320 lifts full-body IoU by about 0.02 and costs portraits 0.002).
SIZES_320 = ((320, 640), (320, 576), (320, 480), (320, 416), (320, 320),
             (416, 320), (480, 320), (576, 320), (640, 320))

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALISATIONS = ("0-1", "0-255", "imagenet", "max-imagenet")
OUTPUT_KINDS = ("softmax2", "sigmoid", "alpha")
#: segmentation: image -> person probability, trained on masks (MattingLoss), scored by IoU;
#: trimap_matting: image + trimap -> alpha, scored by SAD / MSE / Grad / Conn.
TASKS = ("segmentation", "trimap_matting")

#: classical matting methods (pymatting's closed form, KNN and large-kernel matting) for
#: refinement (`--refine METHOD`) and as trimap baselines
REFINE_METHODS = ("cf", "knn", "lkm")

#: The trimap convention everywhere (files, arguments, model inputs before scaling).
TRIMAP_BG, TRIMAP_UNKNOWN, TRIMAP_FG = 0, 128, 255


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How an RGB uint8 image (and a trimap) becomes a model input.

    Attributes:
        channels: image channels: 3 for RGB, 1 for grayscale (ITU-R BT.601 luma, as OpenCV
            computes it).
        normalisation: "0-1" (x / 255), "0-255" (raw values), "imagenet" (x / 255, then
            ImageNet mean and std per channel) or "max-imagenet" (x / the image's own
            maximum, then ImageNet mean and std: the original U^2-Net code's).
        divisor: height and width must be multiples of this.
        sizes: preferred (H, W) sizes; an image runs at the one nearest its aspect ratio.
        trimap: the model takes a trimap as one more channel after the image's (trimap / 255:
            0, ~0.5, 1).
    """

    channels: int = 3
    normalisation: str = "0-1"
    divisor: int = 32
    sizes: tuple = SIZES_256
    trimap: bool = False

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"InputSpec: channels must be 1 or 3, got {self.channels}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"InputSpec: normalisation must be one of {NORMALISATIONS}, "
                             f"got {self.normalisation!r}")
        if self.normalisation.endswith("imagenet") and self.channels != 3:
            raise ValueError("InputSpec: ImageNet normalisation needs 3 channels")

    @property
    def scale(self):
        """The factor 0-255 values are multiplied by before any mean / std."""
        return 1.0 if self.normalisation == "0-255" else 1.0 / 255.0

    @property
    def model_channels(self):
        """Channels of the model's input tensor (image + trimap)."""
        return self.channels + int(self.trimap)


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """What a model gives.

    Attributes:
        kind: "softmax2" ((B, H, W, 2), channel 1 = person), "sigmoid" ((B, H, W, 1)
            probability) or "alpha" ((B, H, W, 1) raw alpha, clipped to [0, 1]).
        primary: for a model with a dict output, the key whose map is the alpha (e.g.
            "fused"); None for a single output.
        sides: the other keys of a dict output (deep supervision), in order.
        rescale: None, or "minmax": the probability map of each image is stretched to
            [0, 1] by its own minimum and maximum (the original U^2-Net code's output;
            `person_probability` applies it when given the spec, never in a loss).
    """

    kind: str = "softmax2"
    primary: str | None = None
    sides: tuple = ()
    rescale: str | None = None

    def __post_init__(self):
        if self.kind not in OUTPUT_KINDS:
            raise ValueError(f"OutputSpec: kind must be one of {OUTPUT_KINDS}, "
                             f"got {self.kind!r}")
        if self.rescale not in (None, "minmax"):
            raise ValueError(f"OutputSpec: rescale must be None or 'minmax', "
                             f"got {self.rescale!r}")

    @classmethod
    def of(cls, value):
        """An OutputSpec from an OutputSpec or a kind name."""
        return value if isinstance(value, cls) else cls(kind=value)

    @property
    def names(self):
        """Every output key, the primary first (empty for a single output)."""
        return ((self.primary,) + tuple(self.sides)) if self.primary else ()


def _as_float_image(image):
    image = np.asarray(image)
    return image if image.dtype == np.float32 else image.astype(np.float32)


def to_model_input(image, spec, trimap=None):
    """An RGB image at model size -> the model's input, by its `InputSpec`.

    Args:
        image: (h, w, 3) or (B, h, w, 3) RGB, uint8 or float32 in 0-255.
        spec: the model's InputSpec.
        trimap: for a trimap model, (h, w) or (B, h, w) uint8 0 / 128 / 255 (or float in
            0-255) at the same size.

    Returns:
        float32 (h, w, C) or (B, h, w, C), C = `spec.model_channels`.
    """
    image = np.asarray(image)
    batched = image.ndim == 4
    if image.ndim not in (3, 4) or image.shape[-1] != 3:
        raise ValueError(f"to_model_input: expected (h, w, 3) or (B, h, w, 3) RGB, got shape "
                         f"{image.shape}")
    if spec.trimap and trimap is None:
        raise ValueError("this model takes a trimap: pass trimap=")
    if not spec.trimap and trimap is not None:
        raise ValueError("this model takes no trimap")
    images = image if batched else image[None]
    if spec.channels == 1:
        # OpenCV's BT.601 luma; on uint8 it rounds to uint8 as the released models were fed
        x = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in images])[..., None]
        x = _as_float_image(x)
    else:
        x = _as_float_image(images)
    if spec.normalisation == "max-imagenet":   # each image by its own maximum (0 stays 0)
        x = x / np.maximum(x.max(axis=(1, 2, 3), keepdims=True), np.float32(1e-6))
    else:
        x = x * np.float32(spec.scale)
    if spec.normalisation.endswith("imagenet"):
        x = (x - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    if spec.trimap:
        t = np.asarray(trimap, np.float32)
        t = t if t.ndim == x.ndim - 1 else t[None]
        if t.shape != x.shape[:-1]:
            raise ValueError(f"trimap shape {t.shape[-2:]} differs from the image's "
                             f"{x.shape[1:3]}")
        x = np.concatenate([x, t[..., None] / np.float32(255)], -1)
    x = x.astype(np.float32, copy=False)
    return x if batched else x[0]


def primary_output(output, spec=None):
    """The primary map of a dict output (the spec's `primary`, else "fused"); any other
    output as it is."""
    if isinstance(output, dict):
        key = spec.primary if spec is not None and spec.primary else "fused"
        if key not in output:
            raise ValueError(f"output has no {key!r} map; it has {sorted(output)}")
        return output[key]
    return output


def person_probability(output, spec=None):
    """(B, H, W) person probability or alpha from a model's output.

    Works on NumPy arrays and on backend tensors (losses and metrics). Without a spec the
    kind follows the channels (2: softmax2, 1: sigmoid). A spec's `rescale` is applied here.
    """
    output = primary_output(output, spec)
    kind = spec.kind if spec is not None else ("softmax2" if output.shape[-1] == 2
                                               else "sigmoid")
    prob = output[..., 1] if kind == "softmax2" else output[..., 0]
    if kind == "alpha":
        if isinstance(prob, np.ndarray):
            prob = np.clip(prob, 0.0, 1.0)
        else:
            from keras import ops

            prob = ops.clip(prob, 0.0, 1.0)
    if spec is not None and spec.rescale == "minmax":
        prob = minmax_per_image(prob)
    return prob


def minmax_per_image(prob):
    """(B, H, W) maps, each stretched to [0, 1] by its own min and max (a constant map is
    left as it is, where the original code divides by zero)."""
    if isinstance(prob, np.ndarray):
        low = prob.min(axis=(1, 2), keepdims=True)
        span = prob.max(axis=(1, 2), keepdims=True) - low
        return np.where(span > 0, (prob - low) / np.where(span > 0, span, 1), prob)
    from keras import ops

    low = ops.min(prob, axis=(1, 2), keepdims=True)
    span = ops.max(prob, axis=(1, 2), keepdims=True) - low
    return ops.where(span > 0, (prob - low) / ops.where(span > 0, span, 1.0), prob)


def make_target(alpha, refined):
    """The training target: (..., H, W, 2) float32 = [alpha in [0, 1], refined flag]."""
    alpha = np.asarray(alpha, np.float32)
    if alpha.ndim and alpha.shape[-1] == 1:
        alpha = alpha[..., 0]
    return np.stack([alpha, np.full_like(alpha, float(refined))], -1)


def split_target(y_true):
    """(alpha, refined) from a training target, each (B, H, W); a 1-channel target is taken
    as a refined alpha. The inverse of `make_target` (and the first two channels of
    `make_matting_target`), on backend tensors."""
    from keras import ops

    y_true = ops.cast(y_true, "float32")
    alpha = y_true[..., 0]
    refined = y_true[..., 1] if y_true.shape[-1] >= 2 else ops.ones_like(alpha)
    return alpha, refined


#: channels of a trimap-matting target: alpha, refined, unknown, foreground RGB, background RGB
MATTING_TARGET_CHANNELS = 9


def target_channels(input_spec):
    """Channels of the training target of a model with this input: 9 for a trimap model
    (`make_matting_target`), else 2 (`make_target`)."""
    return MATTING_TARGET_CHANNELS if input_spec.trimap else 2


def make_matting_target(alpha, refined, trimap, fg, bg):
    """A trimap-matting target (..., H, W, 9) float32: [alpha, refined flag, unknown (the
    trimap's 128 region, 0 / 1), foreground RGB / 255, background RGB / 255]; the losses of
    alpha and of the composite alpha fg + (1 - alpha) bg are taken over the unknown region."""
    base = make_target(alpha, refined)
    unknown = (np.asarray(trimap) == TRIMAP_UNKNOWN).astype(np.float32)[..., None]
    colours = [np.asarray(c, np.float32) / np.float32(255) for c in (fg, bg)]
    return np.concatenate([base, unknown, *colours], -1)


def split_matting_target(y_true):
    """(alpha, unknown, fg, bg) from a `make_matting_target` target, on backend tensors:
    (B, H, W), (B, H, W), (B, H, W, 3), (B, H, W, 3)."""
    from keras import ops

    y_true = ops.cast(y_true, "float32")
    if y_true.shape[-1] != MATTING_TARGET_CHANNELS:
        raise ValueError(f"a trimap-matting target has {MATTING_TARGET_CHANNELS} channels, "
                         f"got {y_true.shape[-1]}")
    return y_true[..., 0], y_true[..., 2], y_true[..., 3:6], y_true[..., 6:9]


def _ellipse(radius):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def make_trimap(alpha, *, erode=8, dilate=8, fg_threshold=None, bg_threshold=None):
    """The trimap of a mask or matte: 255 foreground, 0 background, 128 unknown.

    Foreground is where alpha is 1 (within 1e-3; or >= `fg_threshold`), eroded by an ellipse
    of radius `erode`; background where it is 0 (or <= `bg_threshold`), eroded by one of
    radius `dilate` (the person dilated); the rest, every soft pixel included, is unknown.
    For a band around a soft map's 0.5 edge, pass `alpha >= 0.5`; for rembg's alpha-matting
    trimap, a probability with thresholds (its defaults: 240 / 255 and 10 / 255).

    Args:
        alpha: (H, W) bool, or float in [0, 1].
        erode, dilate: band half-widths in pixels (>= 0).
        fg_threshold, bg_threshold: None, or the probability at or above which a pixel is
            foreground / at or below which it is background (bg < fg).

    Returns:
        (H, W) uint8 trimap.
    """
    if erode < 0 or dilate < 0:
        raise ValueError(f"erode and dilate must be >= 0, got {erode}, {dilate}")
    fg_at = 1.0 - 1e-3 if fg_threshold is None else float(fg_threshold)
    bg_at = 1e-3 if bg_threshold is None else float(bg_threshold)
    if not 0 <= bg_at < fg_at <= 1:
        raise ValueError(f"thresholds must satisfy 0 <= background < foreground <= 1, got "
                         f"background {bg_at:g}, foreground {fg_at:g}")
    alpha = np.asarray(alpha)
    if alpha.ndim != 2:
        raise ValueError(f"make_trimap: alpha must be (H, W), got shape {alpha.shape}")
    a = alpha.astype(np.float32)
    fg = (a >= fg_at).astype(np.uint8)
    bg = (a <= bg_at).astype(np.uint8)
    if erode:
        fg = cv2.erode(fg, _ellipse(erode))
    if dilate:
        bg = cv2.erode(bg, _ellipse(dilate), borderValue=1)
    trimap = np.full(alpha.shape, TRIMAP_UNKNOWN, np.uint8)
    trimap[fg == 1] = TRIMAP_FG
    trimap[bg == 1] = TRIMAP_BG
    return trimap


#: `person_trimap`'s band half-width as a share of the square root of each person region's
#: area (a 440x440 px person, 0.19 Mpx: 13 px; a 60x150 px one: the 2 px floor)
PERSON_BAND = 0.03


def person_trimap(prob, *, band=PERSON_BAND, least=2, most=None):
    """The trimap of automatic matting: a band around a segmentation's 0.5 edge whose width
    follows each person's size, so that a portrait's hair and a small pedestrian's outline
    both get a band that fits them.

    Each 8-connected region of `prob >= 0.5` gets the half-width
    `clip(round(band * sqrt(its area in pixels)), least, most)` on both sides of its edge
    (`make_trimap` of the region alone); the bands of all regions are unknown, the rest of
    the regions foreground, everything else background.

    Args:
        prob: (H, W) float person probability in [0, 1] (or bool mask).
        band: the share of sqrt(area); least, most: bounds in pixels (`most` None: none).

    Returns:
        (H, W) uint8 trimap 0 / 128 / 255; all 0 where there is no person.
    """
    prob = np.asarray(prob)
    if prob.ndim != 2:
        raise ValueError(f"person_trimap: prob must be (H, W), got shape {prob.shape}")
    if band < 0 or least < 0 or (most is not None and most < least):
        raise ValueError(f"person_trimap: need band >= 0 and 0 <= least <= most, got band "
                         f"{band}, least {least}, most {most}")
    mask = (prob >= 0.5).astype(np.uint8)
    height, width = mask.shape
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    fg = np.zeros(mask.shape, bool)
    unknown = np.zeros(mask.shape, bool)
    for k in range(1, count):
        x, y, w, h, area = stats[k]
        radius = max(int(least), int(round(band * np.sqrt(area))))
        radius = radius if most is None else min(radius, int(most))
        y0, y1 = max(0, y - radius - 1), min(height, y + h + radius + 1)
        x0, x1 = max(0, x - radius - 1), min(width, x + w + radius + 1)
        part = make_trimap(labels[y0:y1, x0:x1] == k, erode=radius, dilate=radius)
        unknown[y0:y1, x0:x1] |= part == TRIMAP_UNKNOWN
        fg[y0:y1, x0:x1] |= part == TRIMAP_FG
    trimap = np.zeros(mask.shape, np.uint8)
    trimap[fg] = TRIMAP_FG
    trimap[unknown] = TRIMAP_UNKNOWN   # a band wins over a neighbour's solid part
    return trimap


def unit_trimap(trimap):
    """A 0 / 128 / 255 trimap as float64 0 / 0.5 / 1 (what the matting solvers take)."""
    trimap = np.asarray(trimap)
    out = np.full(trimap.shape, 0.5)
    out[trimap == TRIMAP_FG] = 1.0
    out[trimap == TRIMAP_BG] = 0.0
    return out


def check_trimap(trimap, shape, name="trimap"):
    """Validates a user's trimap for an image of (H, W) `shape`; returns it as uint8.

    Raises ValueError naming `name` for: not 2-D, a size other than the image's, values
    other than 0 / 128 / 255, no unknown pixel, or no known pixel at all.
    """
    trimap = np.asarray(trimap)
    if trimap.ndim == 3 and trimap.shape[-1] == 1:
        trimap = trimap[..., 0]
    if trimap.ndim != 2:
        raise ValueError(f"{name}: must be one channel (H, W), got shape {trimap.shape}")
    if trimap.shape != tuple(shape):
        raise ValueError(f"{name}: size {trimap.shape[1]}x{trimap.shape[0]} differs from the "
                         f"image's {shape[1]}x{shape[0]}")
    values = set(np.unique(trimap).tolist())
    other = values - {TRIMAP_BG, TRIMAP_UNKNOWN, TRIMAP_FG}
    if other:
        raise ValueError(f"{name}: values must be 0 (background), 128 (unknown) or 255 "
                         f"(foreground), found {sorted(other)[:5]}")
    if TRIMAP_UNKNOWN not in values:
        raise ValueError(f"{name}: has no unknown (128) pixel; there is nothing to solve")
    if values == {TRIMAP_UNKNOWN}:
        raise ValueError(f"{name}: is all unknown (128); mark some foreground (255) or "
                         "background (0)")
    return trimap.astype(np.uint8)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MATTING_TARGET_CHANNELS", "PERSON_BAND",
           "REFINE_METHODS", "SIZES_256", "SIZES_320", "TASKS", "TRIMAP_BG", "TRIMAP_FG",
           "TRIMAP_UNKNOWN", "check_trimap", "InputSpec", "make_matting_target", "make_target",
           "make_trimap", "minmax_per_image", "OutputSpec", "person_probability", "person_trimap",
           "primary_output", "split_matting_target", "split_target", "target_channels",
           "to_model_input", "unit_trimap"]
