"""Matter's still-image defaults compared on every kind of photo of a training config.

    python benchmarks/defaults_sweep.py --config configs/likeunet_night_people.yaml \\
        --model likeunet_night [--weights FILE] [--scales 0.8/1.2 1/1.4] [--max-side 0 640] \\
        [--zoom off 0.3:1.2/1.8] [--zoom-weights default none FILE] \\
        [--min-region 0 0.001 0.005] [--min-confidence 0 0.5 0.75] [--limit N]

For each scale set, each `max_side` (0: the size from the model's table; N: the image's
own size, its long side at most N) and each zoom (off, or BELOW:SCALES: images whose people
cover less than BELOW of the image run again at SCALES, with each of the zoom weights: the
released ones, none (the main weights) or a file), with flip and refinement as the model's
defaults, each validation image runs once (`Matter.predict_parts`); every (min_region,
min_confidence) pair is then applied to the same belief and refined alpha
(`remove_small_regions`). Prints one row per setting:
person IoU (mean per image; people-free images score 1 when no pixel is a person) for each
kind of photo and the plain mean over kinds, the figure a default is chosen by, so that no one
kind decides. Unreadable pairs are skipped and listed.
"""

import argparse
import itertools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from humanmatting.cli.common import positive_int  # noqa: E402
from humanmatting.data.readers import validation_by_kind  # noqa: E402
from humanmatting.evaluation import read_target  # noqa: E402
from humanmatting.inference import Matter, remove_small_regions  # noqa: E402
from humanmatting.io import read_image  # noqa: E402
from humanmatting.metrics import iou  # noqa: E402


def sweep(matter, by_kind, regions, confidences, limit=None):
    """{(min_region, min_confidence): {kind: mean IoU}} on one set of passes; and failures."""
    scores, failed = {}, []
    for kind, pairs in by_kind.items():
        items = list(zip(pairs.images, pairs.targets))[:limit]
        per = {key: [] for key in itertools.product(regions, confidences)}
        for image_path, target_path in items:
            try:
                image = read_image(image_path)
                gt = read_target(target_path)
                gt = np.zeros(image.shape[:2], np.float32) if gt is None else gt
            except (ValueError, FileNotFoundError) as err:
                failed.append((image_path, str(err)))
                continue
            parts = matter.predict_parts(image)
            for region, confidence in per:
                alpha = remove_small_regions(parts["alpha"], region, prob=parts["prob"],
                                             min_confidence=confidence)
                per[(region, confidence)].append(iou(alpha, gt))
        for key, values in per.items():
            scores.setdefault(key, {})[kind] = float(np.mean(values)) if values else float("nan")
    return scores, failed


def parse_scales(text):
    """'0.8/1.2' -> (0.8, 1.2)."""
    return tuple(float(v) for v in text.split("/"))


def parse_zoom(text):
    """'off' -> False; '0.3:1.2/1.8' -> (0.3, (1.2, 1.8))."""
    if text == "off":
        return False
    below, _, scales = text.partition(":")
    return float(below), parse_scales(scales)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a training config (its val split)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--weights", default="default")
    parser.add_argument("--scales", nargs="+", default=["0.8/1.2"],
                        help="scale sets, each S/S/... (default: the full-size default)")
    parser.add_argument("--max-side", nargs="+", type=int, default=[0],
                        help="0: the size from the model's table; N: each image at its own "
                             "size, its long side at most N (default: 0)")
    parser.add_argument("--zoom", nargs="+", default=["off"],
                        help="off, or BELOW:S/S/... (default: off)")
    parser.add_argument("--zoom-weights", nargs="+", default=["default"],
                        help="what the zoom passes run with: default (the released zoom "
                             "weights), none (the main weights) or a .weights.h5 file")
    parser.add_argument("--min-region", nargs="+", type=float, default=[0.0, 0.001, 0.005])
    parser.add_argument("--min-confidence", nargs="+", type=float, default=[0.0, 0.5, 0.75])
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="at most N images per kind")
    args = parser.parse_args()
    from humanmatting.training import load_config

    try:
        config = load_config(args.config)
        by_kind = validation_by_kind(config.data, config.val_fraction)
    except (ValueError, FileNotFoundError) as err:
        print(f"defaults_sweep.py: {err}", file=sys.stderr)
        return 1
    kinds = list(by_kind)
    print("| scales | max_side | zoom | zoom weights | min_region | min_confidence | "
          + " | ".join(kinds) + " | mean over kinds |")
    print("|---" * (len(kinds) + 7) + "|")
    failed = []
    for scale_text, max_side, zoom_text, zoom_weights in itertools.product(
            args.scales, args.max_side, args.zoom, args.zoom_weights):
        matter = Matter(args.model, weights=args.weights, scales=parse_scales(scale_text),
                        min_region=0, min_confidence=0, max_side=max_side,
                        zoom=parse_zoom(zoom_text),
                        zoom_weights=None if zoom_weights == "none" else zoom_weights)
        scores, bad = sweep(matter, by_kind, args.min_region, args.min_confidence, args.limit)
        failed += bad
        for (region, confidence), by in scores.items():
            cells = " | ".join(f"{by[k]:.3f}" for k in kinds)
            print(f"| {scale_text} | {max_side} | {zoom_text} | {zoom_weights} | {region:g} | "
                  f"{confidence:g} | "
                  f"{cells} | {np.mean(list(by.values())):.3f} |", flush=True)
    for path, reason in dict(failed).items():
        print(f"defaults_sweep.py: skipped {path}: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
