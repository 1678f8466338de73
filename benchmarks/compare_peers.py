"""Our models against peer TFLite models (MediaPipe Selfie) on the same images, side by side.

    python benchmarks/compare_peers.py --data ../shared/data/flickr-portraits --split val \\
        --peer ../shared/peers/mediapipe/selfie_segmentation.tflite \\
        [--models likeunet_night likeunet_dark_light_original] [--limit N]

Every image is scored at its own size: each model through `Matter` (its own input convention and
size table), each peer the way its authors run it (stretched to its input size, [0, 1] RGB).
Prints IoU, mIoU, boundary F, MAE and the median latency per image (pre/post-processing
included, 2 threads), and each model's IoU relative to the first peer.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from humanmatting.data.readers import read_dataset  # noqa: E402
from humanmatting.evaluation import TFLitePeer, evaluate  # noqa: E402
from humanmatting.inference import Matter  # noqa: E402
from humanmatting.registry import DEFAULT_MODEL  # noqa: E402

METRICS = ("iou", "miou", "boundary_f", "mae")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, nargs="+", help="folder datasets")
    parser.add_argument("--split", choices=("all", "val"), default="all",
                        help="val: only the fixed 10%% validation split the trainer holds back")
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL])
    parser.add_argument("--peer", nargs="*", default=[], help="TFLite peer files")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="score at most N images per set")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    predictors = {name: Matter(name) for name in args.models}
    peers = {Path(p).stem: TFLitePeer(p, threads=args.threads) for p in args.peer}
    predictors.update(peers)
    print(f"{'data':24s} {'model':32s} " + " ".join(f"{m:>10s}" for m in METRICS)
          + f" {'ms/image':>9s} {'IoU vs peer':>11s}")
    for data in args.data:
        pairs = read_dataset(data)
        if args.split == "val":
            pairs = pairs.split(0.1)[1]
        if args.limit:
            pairs.images, pairs.targets = pairs.images[:args.limit], pairs.targets[:args.limit]
        result = evaluate(predictors, pairs)
        reference = result["per_model"][next(iter(peers))]["iou"] if peers else None
        label = f"{Path(data).name} ({result['count']})"
        for name, metrics in result["per_model"].items():
            ratio = f"{metrics['iou'] / reference:11.3f}" if reference else ""
            print(f"{label:24s} {name:32s} "
                  + " ".join(f"{metrics[m]:10.4f}" for m in METRICS)
                  + f" {result['latency_ms'][name]:9.1f} {ratio}")
        for path, reason in result["failed"]:
            print(f"  skipped {path}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
