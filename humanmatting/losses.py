"""Losses for segmentation-style matting models, as named terms.

Targets follow the pipeline's convention: y_true (B, H, W, 2) = [alpha in [0, 1], refined flag
(1 = soft alpha, 0 = rough binary mask)]; a (B, H, W, 1) target is taken as refined alpha.
Predictions are (B, H, W, 2) softmax (channel 1 = person) or (B, H, W, 1) probabilities.
"""

import keras
from keras import ops

from humanmatting import specs
from humanmatting.specs import split_target

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


def default_loss(preset, **weights):
    """The loss a preset's task trains with: MattingLoss for segmentation (one per output
    name, the same for every side output, for a dict-output model)."""
    if preset.task != "segmentation":
        raise ValueError(f"{preset.name}: no default loss for task {preset.task!r} yet")
    names = preset.output.names
    if names:
        return {name: MattingLoss(name=f"{name}_loss", **weights) for name in names}
    return MattingLoss(**weights)
