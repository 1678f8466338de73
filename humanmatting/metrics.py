"""Matting and segmentation metrics: NumPy references and streaming Keras metrics.

Definitions, per image (datasets average the per-image values); alphas in [0, 1]:
- IoU: |P & G| / |P | G| with P = pred >= 0.5, G = gt >= 0.5; 1 when both are empty.
- mIoU: mean of the person IoU and the background IoU (P' = pred < 0.5, G' = gt < 0.5).
- boundary F (Perazzi et al., CVPR 2016, the DAVIS F measure): the boundaries of P and G
  (mask minus its 3x3 erosion) are matched within a tolerance of ceil(0.008 * image
  diagonal) pixels; F = 2 precision recall / (precision + recall); 1 when both are empty.
- MAE: mean |pred - gt|.
- SAD: sum |pred - gt| / 1000 (in thousands).
- MSE: mean (pred - gt)^2 * 1000 (x1e3).
- Grad: sum (|grad pred| - |grad gt|)^2 / 1000, gradients from first-order Gaussian
  derivative filters with sigma 1.4 (Rhemann et al., CVPR 2009; the Deep Image Matting code).
- Conn: connectivity error with threshold steps of 0.1 (Rhemann et al.): sum |phi(pred) -
  phi(gt)| / 1000 with phi = 1 - d * (d >= 0.15), d = alpha - l, l the highest threshold at
  which the pixel still belonged to the largest component of (pred >= t) & (gt >= t).

The matting metrics (SAD, MSE, Grad, Conn) are over the whole image, or with `region` (a
trimap's unknown pixels, as the matting benchmarks report them) over that region only: sums
over it, MSE its mean.
"""

import math

import cv2
import keras
import numpy as np
from keras import ops

from humanmatting.losses import person_probability
from humanmatting.specs import split_target


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


def _region(pred, region):
    return np.ones(np.shape(pred), bool) if region is None else np.asarray(region, bool)


def sad(pred, gt, region=None):
    """Sum of absolute differences (over `region`), in thousands."""
    diff = np.abs(np.asarray(pred, np.float64) - np.asarray(gt, np.float64))
    return float(np.sum(diff[_region(pred, region)]) / 1000.0)


def mse(pred, gt, region=None):
    """Mean squared error (over `region`; 0 when it is empty) x 1e3."""
    diff = (np.asarray(pred, np.float64) - np.asarray(gt, np.float64))[_region(pred, region)]
    return float(np.mean(diff * diff) * 1000.0) if diff.size else 0.0


def _boundary(mask):
    mask = mask.astype(np.uint8)
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                       borderValue=0)
    return (mask - eroded).astype(bool)


def boundary_f(pred, gt, threshold=0.5, tolerance=0.008):
    """DAVIS boundary F measure of one image (see the module docstring)."""
    p, g = np.asarray(pred) >= threshold, np.asarray(gt) >= threshold
    bp, bg = _boundary(p), _boundary(g)
    if not bp.any() and not bg.any():
        return 1.0
    if not bp.any() or not bg.any():
        return 0.0
    radius = max(1, math.ceil(tolerance * math.hypot(*p.shape)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    near_g = cv2.dilate(bg.astype(np.uint8), disk).astype(bool)
    near_p = cv2.dilate(bp.astype(np.uint8), disk).astype(bool)
    precision = (bp & near_g).sum() / bp.sum()
    recall = (bg & near_p).sum() / bg.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall
                                                     / (precision + recall))


def _gaussian_derivative_kernels(sigma=1.4):
    """x- and y- first derivative of Gaussian filters, normalised like the DIM code."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2)))
    r = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-r ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
    dgauss = -r * gauss / sigma ** 2
    kx = np.outer(gauss, dgauss)
    kx /= np.sqrt(np.sum(np.abs(kx) * np.abs(kx)))
    return kx, kx.T


def gradient_error(pred, gt, sigma=1.4, region=None):
    """Gradient error of one image (over `region`), in thousands (see the module
    docstring)."""
    kx, ky = _gaussian_derivative_kernels(sigma)

    def magnitude(alpha):
        alpha = np.asarray(alpha, np.float64)
        gx = cv2.filter2D(alpha, -1, kx, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.filter2D(alpha, -1, ky, borderType=cv2.BORDER_REPLICATE)
        return np.sqrt(gx * gx + gy * gy)

    error = (magnitude(pred) - magnitude(gt)) ** 2
    return float(np.sum(error[_region(pred, region)]) / 1000.0)


def connectivity_error(pred, gt, step=0.1, region=None):
    """Connectivity error of one image (over `region`), in thousands (see the module
    docstring)."""
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    level = np.ones_like(pred)
    for t in np.arange(0.0, 1.0 + 1e-9, step):
        both = ((pred >= t) & (gt >= t)).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(both, connectivity=4)
        if count > 1:
            largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            kept = labels == largest
        else:
            kept = np.zeros_like(both, bool)
        lost = (level == 1) & ~kept
        level[lost] = t - step
    level[level == 1] = 1.0

    def phi(alpha):
        d = alpha - level
        return 1.0 - d * (d >= 0.15)

    return float(np.sum(np.abs(phi(pred) - phi(gt))[_region(pred, region)]) / 1000.0)


SEGMENTATION_METRICS = {"iou": iou, "miou": miou, "boundary_f": boundary_f, "mae": mae}
MATTING_METRICS = {"sad": sad, "mse": mse, "grad": gradient_error, "conn": connectivity_error}


def evaluate_pair(pred, gt, *, soft=False, region=None):
    """All metrics for one image; the matting ones only when `soft` (soft ground truth),
    over `region` (a trimap's unknown pixels) when given."""
    out = {name: fn(pred, gt) for name, fn in SEGMENTATION_METRICS.items()}
    if soft:
        out.update({name: fn(pred, gt, region=region) for name, fn in MATTING_METRICS.items()})
    return out


def paired_difference(scores, reference, *, samples=10000, level=0.95, seed=0):
    """Mean per-image difference `scores - reference` with a paired bootstrap interval.

    Two models scored on the same images differ by the mean of their per-image differences;
    the interval is the percentile bootstrap of that mean (resampling images with
    replacement, `samples` times, seeded), so it says how far the gap could move on another
    draw of images like these. An interval that holds 0 is no evidence either way.

    Args:
        scores, reference: per-image values of one metric (e.g. IoU), same images, same order.
        samples: bootstrap resamples.
        level: the interval's coverage, in (0, 1).
        seed: the resampling seed (the result is deterministic).

    Returns:
        {"mean", "low", "high", "level", "count", "better", "worse", "equal"}: better / worse
        count the images where `scores` is above / below `reference`.

    Example:
        >>> paired_difference([0.9, 0.8], [0.9, 0.7])["mean"]   # 0.05
    """
    scores = np.asarray(scores, np.float64)
    reference = np.asarray(reference, np.float64)
    if scores.ndim != 1 or scores.shape != reference.shape:
        raise ValueError(f"paired_difference needs two 1-D lists of the same length, got "
                         f"shapes {scores.shape} and {reference.shape}")
    if not len(scores):
        raise ValueError("paired_difference needs at least one image")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(samples) < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    diff = scores - reference
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, int(samples), 1000):   # bounded memory for large datasets
        count = min(1000, int(samples) - start)
        means.append(diff[rng.integers(0, len(diff), (count, len(diff)))].mean(axis=1))
    low, high = np.quantile(np.concatenate(means), [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high),
            "level": float(level), "count": int(len(diff)), "better": int((diff > 0).sum()),
            "worse": int((diff < 0).sum()), "equal": int((diff == 0).sum())}


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


@keras.saving.register_keras_serializable(package="humanmatting")
class MeanIoU(_MeanOverImages):
    """Streaming `miou`: mean of person and background IoU, averaged over images."""

    def __init__(self, name="miou", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_image(self, alpha, prob):
        ious = []
        for p, g in ((prob >= 0.5, alpha >= 0.5), (prob < 0.5, alpha < 0.5)):
            p, g = ops.cast(p, "float32"), ops.cast(g, "float32")
            inter = ops.sum(p * g, axis=(1, 2))
            union = ops.sum(ops.maximum(p, g), axis=(1, 2))
            ious.append(ops.where(union > 0, inter / ops.maximum(union, 1.0), 1.0))
        return 0.5 * (ious[0] + ious[1])


@keras.saving.register_keras_serializable(package="humanmatting")
class SAD(_MeanOverImages):
    """Streaming `sad` (thousands), averaged over images."""

    def __init__(self, name="sad", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_image(self, alpha, prob):
        return ops.sum(ops.abs(prob - alpha), axis=(1, 2)) / 1000.0


@keras.saving.register_keras_serializable(package="humanmatting")
class MSE(_MeanOverImages):
    """Streaming `mse` (x1e3), averaged over images."""

    def __init__(self, name="mse", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_image(self, alpha, prob):
        return ops.mean(ops.square(prob - alpha), axis=(1, 2)) * 1000.0


@keras.saving.register_keras_serializable(package="humanmatting")
class LossTerm(keras.metrics.Mean):
    """The mean of one named term of a loss with `terms(y_true, y_pred)` (e.g. MattingLoss's
    "ce", "iou", "alpha_l1", "gradient"), so that training logs (history.csv, TensorBoard)
    show every term, not only the weighted total. Logged as `loss_<term>`."""

    def __init__(self, loss, term, name=None, **kwargs):
        super().__init__(name=name or f"loss_{term}", **kwargs)
        self.loss = loss
        self.term = term

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(self.loss.terms(y_true, y_pred)[self.term],
                                    sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "term": self.term,
                "loss": keras.saving.serialize_keras_object(self.loss)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)


def loss_term_metrics(loss):
    """A LossTerm for every named term of `loss` but its total."""
    names = getattr(loss, "term_names", ())
    return [LossTerm(loss, name) for name in names]
