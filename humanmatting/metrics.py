"""Matting and segmentation metrics: NumPy references and streaming Keras metrics.

Definitions (per image, then averaged over images unless stated):
- IoU: |P & G| / |P | G| with P = prediction >= 0.5, G = ground truth >= 0.5; 1 when both
  are empty. mIoU: the mean of person IoU and background IoU.
- MAE: mean |alpha_pred - alpha_gt| with alphas in [0, 1].
"""

import keras
import numpy as np
from keras import ops

from humanmatting.losses import person_probability, split_target


def iou(pred, gt, threshold=0.5):
    """Person IoU of one image: pred, gt (H, W) in [0, 1]."""
    p = np.asarray(pred) >= threshold
    g = np.asarray(gt) >= threshold
    union = np.logical_or(p, g).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, g).sum() / union)


def miou(pred, gt, threshold=0.5):
    """Mean of person and background IoU of one image."""
    return 0.5 * (iou(pred, gt, threshold) + iou(1.0 - np.asarray(pred),
                                                 1.0 - np.asarray(gt), 1.0 - threshold + 1e-9))


def mae(pred, gt):
    """Mean absolute alpha error of one image, alphas in [0, 1]."""
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(gt, np.float64))))


class _MeanOverImages(keras.metrics.Metric):
    """Average of a per-image value over every image seen."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable((), initializer="zeros", name="total")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def per_image(self, alpha, prob):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        alpha, _ = split_target(y_true)
        values = self.per_image(alpha, person_probability(y_pred))
        self.total.assign_add(ops.sum(values))
        self.count.assign_add(ops.cast(ops.shape(values)[0], "float32"))

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package="humanmatting")
class PersonIoU(_MeanOverImages):
    """Streaming `iou` (threshold 0.5), averaged over images."""

    def __init__(self, name="iou", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_image(self, alpha, prob):
        p = ops.cast(prob >= 0.5, "float32")
        g = ops.cast(alpha >= 0.5, "float32")
        inter = ops.sum(p * g, axis=(1, 2))
        union = ops.sum(ops.maximum(p, g), axis=(1, 2))
        return ops.where(union > 0, inter / ops.maximum(union, 1.0), 1.0)


@keras.saving.register_keras_serializable(package="humanmatting")
class AlphaMAE(_MeanOverImages):
    """Streaming `mae`, averaged over images."""

    def __init__(self, name="mae", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_image(self, alpha, prob):
        return ops.mean(ops.abs(prob - alpha), axis=(1, 2))
