"""Scoring predictors on a dataset at each image's full size, and peer models to compare with."""

import time

import cv2
import numpy as np

from humanmatting.io import read_image
from humanmatting.metrics import evaluate_pair


class TFLitePeer:
    """A TFLite segmentation model run the way its authors do, e.g. MediaPipe Selfie.

    The input is the RGB image stretched to the model's input size and scaled to [0, 1] (no
    mean/std: MediaPipe Selfie Segmentation's convention); the output's last channel is the
    person probability, stretched back to the image size.

    Args:
        path: the .tflite file.
        threads: interpreter threads.
    """

    def __init__(self, path, threads=2):
        from humanmatting.export import _TFLiteRunner

        self.name = str(path)
        # the runner that our own exports use: with its fallback from XNNPACK to the built-in
        # kernels for files the delegate cannot prepare (e.g. some int8 peers)
        self.runner = _TFLiteRunner(path, threads=threads)
        _, self.height, self.width, self.channels = self.runner.input["shape"]

    def run(self, batch):
        """Runs one (1, h, w, C) float32 input; returns the raw output."""
        return self.runner.raw(batch)

    def predict(self, image):
        """(H, W, 3) uint8 RGB -> (H, W) float32 person probability."""
        height, width = image.shape[:2]
        x = cv2.resize(image, (int(self.width), int(self.height)), interpolation=cv2.INTER_AREA)
        prob = self.run((x.astype(np.float32) / 255.0)[None])[0, ..., -1]
        prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip(prob, 0.0, 1.0)


def read_target(path, alpha_channel=False):
    """A mask or matte file as (H, W) float32 in [0, 1]; "" gives None (all background)."""
    if not path:
        return None
    flag = cv2.IMREAD_UNCHANGED if alpha_channel else cv2.IMREAD_GRAYSCALE
    target = cv2.imdecode(np.fromfile(path, np.uint8), flag)
    if target is None:
        raise ValueError(f"{path}: not a readable image")
    if alpha_channel:
        if target.ndim != 3 or target.shape[2] != 4:
            raise ValueError(f"{path}: has no alpha channel")
        target = target[..., 3]
    return target.astype(np.float32) / 255.0


def evaluate(predictors, pairs, *, progress=None):
    """Scores predictors on every pair at the image's own size.

    Args:
        predictors: {name: object with .predict(image) -> (H, W) alpha}.
        pairs: a PairList (its `refined` decides whether matting metrics are computed).
        progress: optional callable(done, total, note).

    Returns:
        {"per_model": {name: {metric: mean}}, "latency_ms": {name: median ms},
         "count": images scored, "failed": [(path, reason)]}
    """
    sums = {name: {} for name in predictors}
    times = {name: [] for name in predictors}
    failed = list(pairs.problems)
    count = 0
    for i, (image_path, target_path) in enumerate(zip(pairs.images, pairs.targets), start=1):
        try:
            image = read_image(image_path)
            gt = read_target(target_path, pairs.alpha_channel)
            gt = np.zeros(image.shape[:2], np.float32) if gt is None else gt
            if gt.shape != image.shape[:2]:
                raise ValueError(f"{target_path}: size {gt.shape} differs from the image's")
        except (ValueError, FileNotFoundError) as err:
            failed.append((image_path, str(err)))
            continue
        for name, predictor in predictors.items():
            start = time.perf_counter()
            alpha = predictor.predict(image)
            times[name].append(time.perf_counter() - start)
            for metric, value in evaluate_pair(alpha, gt, soft=pairs.refined).items():
                sums[name][metric] = sums[name].get(metric, 0.0) + value
        count += 1
        if progress:
            progress(i, len(pairs.images), image_path)
    return {
        "per_model": {n: {m: v / max(count, 1) for m, v in s.items()} for n, s in sums.items()},
        "latency_ms": {n: 1000 * float(np.median(t)) if t else None for n, t in times.items()},
        "count": count,
        "failed": failed,
    }
