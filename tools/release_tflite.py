"""Release a quantized TFLite file of a registered model, calibrated on training photographs.

    python tools/release_tflite.py --model likeunet_night_lite --quantize int8 \\
        --data ../shared/data/flickr-portraits ../shared/data/ccp-persons --count 48

The calibration images are `count` training-split images spread evenly over the datasets
(the validation split is never used for calibration). The quantized file is then scored
against the float32 model, one plain pass per image (as video frames run), on each dataset's
validation split: IoU against the masks for both, and the IoU of their thresholded alphas
(agreement). The file goes to `models/<model>.<quantize>.tflite` (written atomically, its
sha256 added to `models/SHA256SUMS`), where `Matter(model, backend="tflite",
quantize=...)` finds it, unless its IoU falls more than `--max-drop` below float32's on any
dataset (exit 1, nothing written).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def calibration_images(trains, count):
    """`count` image paths spread evenly over the training PairLists (round-robin)."""
    per = [count // len(trains) + (i < count % len(trains)) for i in range(len(trains))]
    out = []
    for pairs, n in zip(trains, per):
        if n > len(pairs):
            raise ValueError(f"{pairs.name}: {len(pairs)} training images, {n} asked for")
        picks = np.linspace(0, len(pairs) - 1, n).round().astype(int) if n else []
        out += [pairs.images[i] for i in picks]
    return out


class _Recorder:
    """A predictor that keeps each thresholded alpha (for the agreement of two models)."""

    def __init__(self, matter):
        self.matter, self.masks = matter, []

    def predict(self, image):
        alpha = self.matter.predict(image)
        self.masks.append(alpha >= 0.5)
        return alpha


def agreement(masks_a, masks_b):
    """Mean IoU of paired boolean masks (1 where both are empty)."""
    scores = []
    for a, b in zip(masks_a, masks_b):
        union = np.logical_or(a, b).sum()
        scores.append(1.0 if union == 0 else np.logical_and(a, b).sum() / union)
    return float(np.mean(scores)) if scores else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="registered model (its release)")
    parser.add_argument("--quantize", choices=("int8", "fp16"), default="int8")
    parser.add_argument("--data", nargs="+", required=True, help="folder datasets")
    parser.add_argument("--count", type=int, default=48, help="calibration images")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--max-drop", type=float, default=0.01,
                        help="largest IoU loss against float32 on any dataset")
    parser.add_argument("--models", default=str(ROOT / "models"), help="release folder")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        return release(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"release_tflite.py: {err}", file=sys.stderr)
        return 1


def release(args):
    from humanmatting.data.readers import read_dataset
    from humanmatting.evaluation import evaluate
    from humanmatting.export import export
    from humanmatting.inference import Matter
    from humanmatting.io import atomic_path
    from humanmatting.registry import sha256_file
    from humanmatting.training.release import update_sums

    if args.count < 1:
        raise ValueError(f"--count must be at least 1, got {args.count}")
    splits = [read_dataset(d).split(args.val_fraction) for d in args.data]
    for (train, val), folder in zip(splits, args.data):
        if not len(train) or not len(val):
            raise ValueError(f"{folder}: needs images in both the training and the "
                             f"validation split ({len(train)} / {len(val)})")
    calibration = calibration_images([s[0] for s in splits], args.count)
    name = f"{args.model}.{args.quantize}.tflite"
    with tempfile.TemporaryDirectory(prefix="humanmatting-") as tmp:
        candidate = Path(tmp) / name
        export(args.model, "tflite", candidate, quantize=args.quantize,
               representative=calibration)
        report = {"model": args.model, "quantize": args.quantize,
                  "calibration_images": len(calibration), "datasets": {}}
        worst = 0.0
        for folder, (_, val) in zip(args.data, splits):
            ref = _Recorder(Matter(args.model, realtime=True))
            got = _Recorder(Matter(args.model, backend="tflite", exported=candidate,
                                   threads=args.threads, realtime=True))
            scores = evaluate({"float32": ref, args.quantize: got}, val)
            ious = {k: v["iou"] for k, v in scores["per_model"].items()}
            row = {"images": scores["count"], "iou_float32": ious["float32"],
                   f"iou_{args.quantize}": ious[args.quantize],
                   "agreement_iou": agreement(ref.masks, got.masks)}
            report["datasets"][Path(folder).name] = row
            worst = max(worst, ious["float32"] - ious[args.quantize])
            print(f"{Path(folder).name} ({row['images']} validation images): IoU float32 "
                  f"{ious['float32']:.4f}, {args.quantize} {ious[args.quantize]:.4f}, "
                  f"agreement {row['agreement_iou']:.4f}", flush=True)
        if worst > args.max_drop:
            raise ValueError(f"{args.quantize} loses {worst:.4f} IoU against float32 (more "
                             f"than --max-drop {args.max_drop}); nothing released")
        out = Path(args.models) / name
        with atomic_path(out) as tmp_out:
            shutil.copyfile(candidate, tmp_out)
    digest = sha256_file(out)
    update_sums(args.models, name, digest)
    report.update(path=str(out), bytes=out.stat().st_size, sha256=digest)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
