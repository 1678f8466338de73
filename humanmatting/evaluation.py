"""Scoring predictors on a dataset at each image's full size, and peer models to compare with."""

import time
from pathlib import Path

import cv2
import numpy as np

from humanmatting.io import load_gray, read_image
from humanmatting.metrics import evaluate_pair, paired_difference
from humanmatting.specs import TRIMAP_UNKNOWN, check_trimap, unit_trimap


class TrimapSolver:
    """A classical matting baseline on a given trimap: pymatting's closed-form ("cf"), KNN
    ("knn") or large-kernel ("lkm") matting, or our SciPy closed form ("cf-scipy"), at most
    at `max_side` (resized back; the trimap's known regions kept at full resolution).
    `eval` scores it beside a trimap-matting model on the same trimaps."""

    task = "trimap_matting"
    METHODS = ("cf", "knn", "lkm", "cf-scipy")

    def __init__(self, method="cf", max_side=480):
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, got {method!r}")
        self.method, self.max_side = method, max_side
        self.name = f"{method} matting"

    def predict(self, image, trimap):
        from humanmatting.data.refine import solve_trimap

        return solve_trimap(image, unit_trimap(trimap), method=self.method,
                            max_side=self.max_side)


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
        from humanmatting.export import TFLiteRunner

        self.name = str(path)
        # the runner that our own exports use: with its fallback from XNNPACK to the built-in
        # kernels for files the delegate cannot prepare (e.g. some int8 peers)
        self.runner = TFLiteRunner(path, threads=threads)
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
         "count": images scored, "failed": [(path, reason)],
         "images": [the scored image paths], "per_image": {name: {metric: [value per image]}}}
    """
    values = {name: {} for name in predictors}
    times = {name: [] for name in predictors}
    failed = list(pairs.problems)
    scored = []
    trimaps = pairs.trimaps or [None] * len(pairs.images)
    for i, (image_path, target_path, trimap_path) in enumerate(
            zip(pairs.images, pairs.targets, trimaps), start=1):
        try:
            image = read_image(image_path)
            gt = read_target(target_path, pairs.alpha_channel)
            gt = np.zeros(image.shape[:2], np.float32) if gt is None else gt
            if gt.shape != image.shape[:2]:
                raise ValueError(f"{target_path}: size {gt.shape} differs from the image's")
            trimap = None
            if trimap_path is not None:
                trimap = check_trimap(load_gray(trimap_path), image.shape[:2], trimap_path)
        except (ValueError, FileNotFoundError) as err:
            failed.append((image_path, str(err)))
            continue
        region = None if trimap is None else trimap == TRIMAP_UNKNOWN
        for name, predictor in predictors.items():
            takes = trimap is not None and getattr(predictor, "task", "") == "trimap_matting"
            start = time.perf_counter()
            alpha = predictor.predict(image, trimap=trimap) if takes else \
                predictor.predict(image)
            times[name].append(time.perf_counter() - start)
            for metric, value in evaluate_pair(alpha, gt, soft=pairs.refined,
                                               region=region).items():
                values[name].setdefault(metric, []).append(float(value))
        scored.append(str(image_path))
        if progress:
            progress(i, len(pairs.images), image_path)
    return {
        "per_model": {n: {m: float(np.mean(v)) for m, v in s.items()} for n, s in values.items()},
        "latency_ms": {n: 1000 * float(np.median(t)) if t else None for n, t in times.items()},
        "count": len(scored),
        "failed": failed,
        "images": scored,
        "per_image": values,
    }


def compare(result, name, reference, *, metric="iou", worst=3, **bootstrap):
    """Per-image comparison of two predictors of one `evaluate` result.

    Args:
        result: an `evaluate` result holding both names.
        name, reference: the predictor compared, and the one it is compared with (e.g. a peer).
        metric: a per-image metric where higher is better (iou, miou, boundary_f).
        worst: how many of `name`'s largest per-image losses to list.
        **bootstrap: `metrics.paired_difference` options (samples, level, seed).

    Returns:
        `paired_difference`'s dict plus "metric" and "largest_losses": [(image, difference)].
    """
    scores = np.asarray(result["per_image"][name][metric])
    other = np.asarray(result["per_image"][reference][metric])
    out = paired_difference(scores, other, **bootstrap)
    order = np.argsort(scores - other, kind="stable")[:worst]
    out["metric"] = metric
    out["largest_losses"] = [(result["images"][i], float(scores[i] - other[i]))
                             for i in order if scores[i] < other[i]]
    return out


def describe_comparison(comparison, name, reference):
    """One line for people: the mean difference, its interval, wins / losses, worst images."""
    c = comparison
    line = (f"{name} - {reference}, {c['metric']} per image: mean {c['mean']:+.4f} "
            f"({100 * c['level']:.0f}% bootstrap interval {c['low']:+.4f} .. {c['high']:+.4f}, "
            f"{c['count']} images); better on {c['better']}, worse on {c['worse']}")
    if c["largest_losses"]:
        line += "; largest losses " + ", ".join(f"{Path(path).name} {d:+.3f}"
                                                 for path, d in c["largest_losses"])
    return line


def evaluate_by_kind(predictors, by_kind, *, progress=None):
    """`evaluate` on each kind of photo: {kind: result} (`by_kind` as
    `humanmatting.data.readers.validation_by_kind` gives)."""
    return {kind: evaluate(predictors, pairs, progress=progress)
            for kind, pairs in by_kind.items()}


def kind_table(results, names, metric="iou"):
    """A Markdown table: one row per kind of photo (with its image count), one column per
    predictor, `metric` (mean per image) in each cell, and a last row with the plain mean over
    the kinds (every kind counts the same, whatever its size)."""
    names = list(names)
    rows = [f"| photos | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    means = {n: [] for n in names}
    for kind, result in results.items():
        cells = []
        for n in names:
            value = result["per_model"].get(n, {}).get(metric)
            if value is not None:
                means[n].append(value)
            cells.append("-" if value is None else f"{value:.3f}")
        rows.append(f"| {kind} ({result['count']}) | {' | '.join(cells)} |")
    rows.append("| mean over kinds | " + " | ".join(
        f"{np.mean(means[n]):.3f}" if means[n] else "-" for n in names) + " |")
    return "\n".join(rows)
