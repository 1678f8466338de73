"""Losses for segmentation-style matting models, as named terms.

Targets follow the pipeline's convention: y_true (B, H, W, 2) = [alpha in [0, 1], refined flag
(1 = soft alpha, 0 = rough binary mask)]; a (B, H, W, 1) target is taken as refined alpha.
Predictions are (B, H, W, 2) softmax (channel 1 = person) or (B, H, W, 1) probabilities.
"""

import cv2
import keras
import numpy as np
from keras import ops

from humanmatting import specs
from humanmatting.specs import split_matting_target, split_target

EPS = 1e-6


def person_probability(y_pred, spec=None):
    """(B, H, W) float32 person probability from a model output (`humanmatting.specs`)."""
    return ops.cast(specs.person_probability(y_pred, spec), "float32")


def bce(alpha, prob):
    """Per-pixel binary cross entropy with soft targets (2-class CE on a softmax pair)."""
    prob = ops.clip(prob, EPS, 1.0 - EPS)
    return -(alpha * ops.log(prob) + (1.0 - alpha) * ops.log(1.0 - prob))


def soft_iou_loss(alpha, prob):
    """1 - soft IoU per image: 1 - sum(a p) / sum(a + p - a p), (B,)."""
    inter = ops.sum(alpha * prob, axis=(1, 2))
    union = ops.sum(alpha + prob - alpha * prob, axis=(1, 2))
    return 1.0 - (inter + 1.0) / (union + 1.0)


def image_gradient_l1(alpha, prob):
    """Mean |d(prob - alpha)/dx| + |d(prob - alpha)/dy| (finite differences), (B,)."""
    diff = prob - alpha

    def mean(d):  # 0 (not NaN) when a side has a single pixel
        count = ops.cast(ops.shape(d)[1] * ops.shape(d)[2], "float32")
        return ops.sum(d, axis=(1, 2)) / ops.maximum(count, 1.0)

    return (mean(ops.abs(diff[:, :, 1:] - diff[:, :, :-1]))
            + mean(ops.abs(diff[:, 1:, :] - diff[:, :-1, :])))


@keras.saving.register_keras_serializable(package="humanmatting")
class MattingLoss(keras.losses.Loss):
    """Cross entropy + soft IoU, plus alpha L1 and gradient terms where the target is soft.

    total = ce_weight * CE + iou_weight * (1 - soft IoU)
            + l1_weight * |p - alpha| (refined targets only)
            + grad_weight * gradient L1 (refined targets only)

    Rough (binary) masks are trusted for the region, not for the exact edge, so the L1 and
    gradient terms that fit the transition only apply to refined targets.

    Example:
        >>> terms = MattingLoss().terms(y_true, y_pred)   # {"ce": ..., "iou": ..., "total": ...}
    """

    #: the named terms `terms` returns besides "total"
    term_names = ("ce", "iou", "alpha_l1", "gradient")

    def __init__(self, ce_weight=1.0, iou_weight=0.5, l1_weight=1.0, grad_weight=0.5,
                 name="matting_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ce_weight = ce_weight
        self.iou_weight = iou_weight
        self.l1_weight = l1_weight
        self.grad_weight = grad_weight

    def terms(self, y_true, y_pred):
        """Named loss terms, each a per-sample (B,) tensor, and their weighted `total`."""
        alpha, refined = split_target(y_true)
        prob = person_probability(y_pred)
        is_refined = ops.mean(refined, axis=(1, 2))
        out = {
            "ce": ops.mean(bce(alpha, prob), axis=(1, 2)),
            "iou": soft_iou_loss(alpha, prob),
            "alpha_l1": ops.mean(ops.abs(prob - alpha), axis=(1, 2)) * is_refined,
            "gradient": image_gradient_l1(alpha, prob) * is_refined,
        }
        out["total"] = (self.ce_weight * out["ce"] + self.iou_weight * out["iou"]
                        + self.l1_weight * out["alpha_l1"] + self.grad_weight * out["gradient"])
        return out

    def call(self, y_true, y_pred):
        return self.terms(y_true, y_pred)["total"]

    def get_config(self):
        config = super().get_config()
        config.update(ce_weight=self.ce_weight, iou_weight=self.iou_weight,
                      l1_weight=self.l1_weight, grad_weight=self.grad_weight)
        return config


@keras.saving.register_keras_serializable(package="humanmatting")
class BCELoss(keras.losses.Loss):
    """Binary cross entropy with soft targets, the U^2-Net paper's loss on each of its seven
    outputs (deep supervision: one per output, summed with weight 1)."""

    term_names = ("bce",)

    def __init__(self, name="bce_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def terms(self, y_true, y_pred):
        alpha, _ = split_target(y_true)
        out = {"bce": ops.mean(bce(alpha, person_probability(y_pred)), axis=(1, 2))}
        out["total"] = out["bce"]
        return out

    def call(self, y_true, y_pred):
        return self.terms(y_true, y_pred)["total"]


def unknown_band_kernels():
    """The structuring elements of the portrait loss's unknown band, as 0/1 float32 arrays:
    (the 11x11 ellipse the mask is dilated with, 5 times; the 3x3 square it is eroded with,
    3 times, which is one 7x7 square)."""
    return (cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11)).astype(np.float32),
            np.ones((7, 7), np.float32))


def gaussian_kernel(size=9, sigma=2.5):
    """The 1-D Gaussian OpenCV's GaussianBlur uses for (size, sigma), float32."""
    return cv2.getGaussianKernel(size, sigma).astype(np.float32)[:, 0]


def _masked_mean(values, mask):
    """sum(mask * values) / sum(mask) per image, 0 (never NaN) where the mask is empty."""
    total = ops.sum(mask, axis=(1, 2))
    return ops.where(total > 0, ops.sum(mask * values, axis=(1, 2)) / ops.maximum(total, 1e-6),
                     0.0)


@keras.saving.register_keras_serializable(package="humanmatting")
class PortraitLoss(keras.losses.Loss):
    """The U^2-Net portrait fork's loss, on one output:

    total = l1_weight * L1 over `l1_mask` + details_weight * L1 over `details_mask`
            + blur_weight * MSE to the mask blurred by a 9x9 Gaussian (sigma 2.5)

    The unknown band is the mask (alpha > 0) dilated by an 11x11 ellipse 5 times, less the
    mask's certain core (alpha = 1) eroded by a 3x3 square 3 times. Rough (binary) targets
    are not trusted in the band: `l1_mask` = outside it, `details_mask` = nothing. Refined
    (soft) targets are: `l1_mask` = everywhere, `details_mask` = the band. Each masked L1 is a
    mean over its mask's pixels per image, 0 where the mask is empty (the fork's divides by
    the batch's mask sum and gives NaN on a batch without refined samples).
    Borders follow OpenCV's defaults (dilation ignores the outside, erosion treats it as
    foreground, the blur reflects without repeating the edge).
    """

    term_names = ("l1", "details", "blur_mse")

    def __init__(self, l1_weight=2.0, details_weight=3.0, blur_weight=1.0,
                 name="portrait_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.l1_weight = l1_weight
        self.details_weight = details_weight
        self.blur_weight = blur_weight

    def band(self, alpha):
        """(B, H, W) float32 0/1 unknown band of (B, H, W) targets."""
        ellipse, square = unknown_band_kernels()
        grown = ops.cast(alpha > 1e-3, "float32")[..., None]
        kernel = ops.convert_to_tensor(ellipse[:, :, None, None])
        for _ in range(5):
            grown = ops.cast(ops.conv(grown, kernel, padding="same") > 0.5, "float32")
        outside_core = ops.cast(alpha < 1.0 - 1e-3, "float32")[..., None]
        outside_core = ops.max_pool(outside_core, square.shape, strides=1, padding="same")
        core = 1.0 - outside_core
        return ops.stop_gradient(grown[..., 0] * (1.0 - core[..., 0]))

    def blurred(self, alpha):
        """(B, H, W) target blurred as cv2.GaussianBlur(alpha, (9, 9), 2.5)."""
        g = gaussian_kernel()
        pad = len(g) // 2
        x = ops.pad(alpha[..., None], [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
        x = ops.conv(x, ops.convert_to_tensor(g[:, None, None, None]), padding="valid")
        x = ops.conv(x, ops.convert_to_tensor(g[None, :, None, None]), padding="valid")
        return ops.stop_gradient(x[..., 0])

    def terms(self, y_true, y_pred):
        """Named loss terms, each a per-sample (B,) tensor, and their weighted `total`."""
        alpha, refined = split_target(y_true)
        prob = person_probability(y_pred)
        band = self.band(alpha)
        is_refined = ops.mean(refined, axis=(1, 2))[:, None, None]
        l1_mask = is_refined + (1.0 - is_refined) * (1.0 - band)
        details_mask = is_refined * band
        error = ops.abs(prob - alpha)
        out = {"l1": _masked_mean(error, l1_mask),
               "details": _masked_mean(error, details_mask),
               "blur_mse": ops.mean(ops.square(prob - self.blurred(alpha)), axis=(1, 2))}
        out["total"] = (self.l1_weight * out["l1"] + self.details_weight * out["details"]
                        + self.blur_weight * out["blur_mse"])
        return out

    def call(self, y_true, y_pred):
        return self.terms(y_true, y_pred)["total"]

    def get_config(self):
        config = super().get_config()
        config.update(l1_weight=self.l1_weight, details_weight=self.details_weight,
                      blur_weight=self.blur_weight)
        return config


def charbonnier(diff, eps=1e-6):
    """sqrt(diff^2 + eps^2): L1 that is smooth at 0."""
    return ops.sqrt(ops.square(diff) + eps * eps)


@keras.saving.register_keras_serializable(package="humanmatting")
class CompositionLoss(keras.losses.Loss):
    """IndexNet's (and Deep Image Matting's) loss for trimap matting, over the trimap's
    unknown region only:

    total = alpha_weight * Charbonnier(alpha) + composition_weight * Charbonnier(composite)

    with the composite alpha fg + (1 - alpha) bg of the predicted and of the true alpha
    (mean over RGB), each a mean over the unknown pixels of an image (0 where it has none).
    Targets: `humanmatting.specs.make_matting_target`; the prediction is a raw alpha, clipped.
    """

    term_names = ("alpha", "composition")

    def __init__(self, alpha_weight=0.5, composition_weight=0.5, eps=1e-6,
                 name="composition_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha_weight = alpha_weight
        self.composition_weight = composition_weight
        self.eps = eps

    def terms(self, y_true, y_pred):
        alpha, unknown, fg, bg = split_matting_target(y_true)
        pred = ops.clip(ops.cast(y_pred[..., 0], "float32"), 0.0, 1.0)
        composite = pred[..., None] * fg + (1.0 - pred[..., None]) * bg
        target = alpha[..., None] * fg + (1.0 - alpha[..., None]) * bg
        out = {"alpha": _masked_mean(charbonnier(pred - alpha, self.eps), unknown),
               "composition": _masked_mean(
                   ops.mean(charbonnier(composite - target, self.eps), axis=-1), unknown)}
        out["total"] = (self.alpha_weight * out["alpha"]
                        + self.composition_weight * out["composition"])
        return out

    def call(self, y_true, y_pred):
        return self.terms(y_true, y_pred)["total"]

    def get_config(self):
        config = super().get_config()
        config.update(alpha_weight=self.alpha_weight,
                      composition_weight=self.composition_weight, eps=self.eps)
        return config


#: config `loss: {kind: ...}` -> the per-output loss class
LOSS_KINDS = {"matting": MattingLoss, "bce": BCELoss, "portrait": PortraitLoss,
              "composition": CompositionLoss}
#: the loss kind a task trains with when the config names none
DEFAULT_KIND = {"segmentation": "matting", "trimap_matting": "composition"}


def make_loss(preset, config=None):
    """The loss a run trains `preset` with, from a config's `loss` dict: `kind` (matting,
    the default for segmentation; bce, the U^2-Net paper's; portrait, the U^2-Net portrait
    fork's; composition, the default for trimap matting) and that
    kind's weights. A dict-output model (deep supervision) gets one loss per output, summed
    with weight 1 as in the paper; Keras logs each as `<output>_loss`."""
    config = dict(config or {})
    kind = config.pop("kind", DEFAULT_KIND[preset.task])
    if kind not in LOSS_KINDS:
        raise ValueError(f"loss.kind must be one of {sorted(LOSS_KINDS)}, got {kind!r}")
    if (kind == "composition") != (preset.task == "trimap_matting"):
        raise ValueError(f"{preset.name}: loss.kind {kind!r} does not fit task "
                         f"{preset.task!r}")
    cls = LOSS_KINDS[kind]
    try:
        names = preset.output.names
        if names:
            return {name: cls(name=f"{name}_loss", **config) for name in names}
        return cls(**config)
    except TypeError as err:
        raise ValueError(f"loss: {err}") from None


def primary_loss(loss, preset):
    """The loss of a preset's primary output (the one whose terms are logged)."""
    return loss[preset.output.primary] if isinstance(loss, dict) else loss


def default_loss(preset, **weights):
    """The loss a preset's task trains with by default (MattingLoss for segmentation, one per
    output of a dict-output model; CompositionLoss for trimap matting), with these weights."""
    return make_loss(preset, weights)
