"""Automatic matting against the default model's own closed-form refinement, per kind of photo.

    python benchmarks/auto_matting.py --config configs/likeunet_night_people.yaml \\
        [--weights INDEXNET.weights.h5] [--peer selfie_segmentation.tflite] [--limit N] \\
        [--max-side 640] [--person-band 0.03]

On the validation split of every dataset of a training config (each image at its own size),
four predictors side by side: the default segmentation model with its still-image defaults
(closed-form refinement in a thin band), `Matter("auto")` (its person probability -> the
person trimap -> IndexNet), the same person trimap solved by closed-form matting instead of
IndexNet (which of the two matting steps does the work), and the peer (MediaPipe Selfie).
Prints tables by kind of photo of person IoU, boundary F and MAE (mean per image; people-free
images: IoU is the share with no person pixel, MAE the mean alpha). Unreadable pairs are
skipped and listed at the end (exit 1).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from humanmatting.cli.common import positive_int  # noqa: E402
from humanmatting.data.readers import validation_by_kind  # noqa: E402
from humanmatting.evaluation import (  # noqa: E402
    TFLitePeer, TrimapSolver, evaluate_by_kind, kind_table)
from humanmatting.inference import AUTO, Matter  # noqa: E402
from humanmatting.registry import DEFAULT_MODEL  # noqa: E402

TABLES = {"iou": "person IoU (higher is better)", "boundary_f": "boundary F (higher is better)",
          "mae": "MAE (lower is better)"}


class AutoTrimapSolved:
    """`Matter("auto")`'s person trimap solved by classical matting instead of its model."""

    def __init__(self, auto, method="cf"):
        self.auto, self.solver = auto, TrimapSolver(method)
        self.name = f"auto trimap + {method}"

    def predict(self, image):
        trimap = self.auto.auto_trimap(image)
        if trimap is None:   # no person
            return np.zeros(image.shape[:2], np.float32)
        return self.solver.predict(image, trimap)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True,
                        help="a training config: its validation split, by kind of photo")
    parser.add_argument("--weights", default="default", help="the matting model's weights")
    parser.add_argument("--peer", default="", help="a TFLite peer (MediaPipe Selfie)")
    parser.add_argument("--max-side", type=int, default=None,
                        help="the matting model's max_side (default: its preset's)")
    parser.add_argument("--person-band", type=float, default=None,
                        help="person_trimap's band (default: PERSON_BAND)")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="score at most N images per kind")
    args = parser.parse_args()

    from humanmatting.training import load_config

    try:
        config = load_config(args.config)
        by_kind = validation_by_kind(config.data, config.val_fraction)
        auto = Matter(AUTO, weights=args.weights, max_side=args.max_side,
                      person_band=args.person_band)
        predictors = {f"{DEFAULT_MODEL} (+cf)": Matter(DEFAULT_MODEL), "auto": auto,
                      "auto trimap + cf": AutoTrimapSolved(auto)}
        if args.peer:
            predictors["peer"] = TFLitePeer(args.peer)
    except (ValueError, FileNotFoundError) as err:
        print(f"auto_matting.py: {err}", file=sys.stderr)
        return 1
    if args.limit:
        for pairs in by_kind.values():
            pairs.images, pairs.targets = pairs.images[:args.limit], pairs.targets[:args.limit]
    results = evaluate_by_kind(predictors, by_kind)
    for metric, title in TABLES.items():
        print(f"\n{title}, mean per image")
        print(kind_table(results, list(predictors), metric))
    print("\nmedian ms per image: " + ", ".join(
        f"{name} {np.median([r['latency_ms'][name] for r in results.values()]):.0f}"
        for name in predictors))
    failed = [f for r in results.values() for f in r["failed"]]
    for path, reason in failed:
        print(f"auto_matting.py: skipped {path}: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
