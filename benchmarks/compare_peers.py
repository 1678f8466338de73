"""Our models against peer TFLite models (MediaPipe Selfie) on the same images, side by side.

    python benchmarks/compare_peers.py --config configs/likeunet_night_people.yaml \\
        --peer ../shared/peers/mediapipe/selfie_segmentation.tflite \\
        [--models likeunet_night "likeunet_night:min_confidence=0,min_region=0" \\
                  likeunet_night@runs/x/likeunet_night.weights.h5] [--limit N] [--json FILE]
    python benchmarks/compare_peers.py --data ../shared/data/flickr-portraits --split val \\
        --backgrounds ../shared/data/backgrounds --peer ...

`--config` scores the validation split of every dataset of a training config (its own split
rule: per-dataset fractions, CamVid by sequence), grouped by kind of photo (`photos:`), and
ends with three tables (IoU, boundary F, MAE): a row per kind, a column per model and peer, and
the mean over kinds.
A model is `NAME[@WEIGHTS][:OPTION=VALUE,...]` with `Matter`'s still-image options
(flip, scales, refine, min_region, min_confidence, person_band, max_side, zoom_weights), e.g.
`likeunet_night:scales=1,flip=0`; `auto` is automatic matting (`Matter("auto")`).

Every image is scored at its own size: each model through `Matter` (its own input convention and
size table), each peer the way its authors run it (stretched to its input size, [0, 1] RGB).
Prints IoU, mIoU, boundary F, MAE and the median latency per image (pre/post-processing
included, 2 threads), each model's IoU relative to the first peer, and the per-image
comparison with it: the mean IoU difference with a 95% paired bootstrap interval, the images
where each is better, and the model's largest losses. `--backgrounds` folders
hold people-free photos, scored with empty targets: IoU is the share of images where no pixel
is taken for a person, MAE the mean person alpha (false positives on other scenes). Unreadable
pairs are left out of every figure, listed at the end (and under "failed" in the JSON), and
make the exit status 1.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from humanmatting.cli.common import open_fraction, parse_model_spec, positive_int  # noqa: E402
from humanmatting.data.readers import read_dataset, validation_by_kind  # noqa: E402
from humanmatting.evaluation import (  # noqa: E402
    TFLitePeer, compare, describe_comparison, evaluate, kind_table)
from humanmatting.inference import Matter  # noqa: E402
from humanmatting.registry import DEFAULT_MODEL  # noqa: E402

METRICS = ("iou", "miou", "boundary_f", "mae")
#: the tables by kind of photo at the end
TABLES = {"iou": "person IoU (higher is better)",
          "boundary_f": "boundary F (higher is better)", "mae": "MAE (lower is better)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="",
                        help="a training config: its validation split, by kind of photo")
    parser.add_argument("--data", nargs="*", default=[], help="folder datasets")
    parser.add_argument("--backgrounds", nargs="*", default=[],
                        help="folders of people-free photos (every target empty)")
    parser.add_argument("--split", choices=("all", "val"), default="all",
                        help="val: only the fixed validation split the trainer holds back")
    parser.add_argument("--val-fraction", type=open_fraction, default=0.1,
                        help="with --split val: the fraction training held back (default 0.1)")
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL])
    parser.add_argument("--peer", nargs="*", default=[], help="TFLite peer files")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="score at most N images per set (default: all)")
    parser.add_argument("--json", default="", help="also write the table to this file")
    args = parser.parse_args()
    if not args.data and not args.backgrounds and not args.config:
        parser.error("give --config, or --data and/or --backgrounds folders")

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    try:
        predictors = {spec: Matter(**parse_model_spec(spec)) for spec in args.models}
        peers = {Path(p).stem: TFLitePeer(p, threads=args.threads) for p in args.peer}
    except (ValueError, FileNotFoundError) as err:
        print(f"compare_peers.py: {err}", file=sys.stderr)
        return 1
    predictors.update(peers)
    print(f"{'data':24s} {'model':32s} " + " ".join(f"{m:>10s}" for m in METRICS)
          + f" {'ms/image':>9s} {'IoU vs peer':>11s}")
    table, failed, by_kind = [], [], {}
    try:
        sets = [(d, "folder", read_dataset(d, "folder")) for d in args.data]
        sets += [(d, "backgrounds", read_dataset(d, "backgrounds")) for d in args.backgrounds]
        if args.split == "val":
            sets = [(d, kind, pairs.split(args.val_fraction)[1]) for d, kind, pairs in sets]
        if args.config:
            from humanmatting.training import load_config

            config = load_config(args.config)
            sets += [(kind, "kind", pairs) for kind, pairs in
                     validation_by_kind(config.data, config.val_fraction).items()]
    except (ValueError, FileNotFoundError) as err:
        print(f"compare_peers.py: {err}", file=sys.stderr)
        return 1
    for data, kind, pairs in sets:
        if args.limit:
            pairs.images, pairs.targets = pairs.images[:args.limit], pairs.targets[:args.limit]
        result = evaluate(predictors, pairs)
        failed.extend(result["failed"])
        if not result["count"]:   # every pair unreadable: nothing to score or compare
            print(f"{Path(data).name:24s} no image could be scored")
            continue
        peer = next(iter(peers), None)   # the first peer: the one every model is compared with
        reference = result["per_model"][peer]["iou"] if peer else None
        label = f"{Path(data).name} ({result['count']})"
        rows = {}
        for name, metrics in result["per_model"].items():
            ratio = f"{metrics['iou'] / reference:11.3f}" if reference else ""   # not / 0
            print(f"{label:24s} {name:32s} "
                  + " ".join(f"{metrics[m]:10.4f}" for m in METRICS)
                  + f" {result['latency_ms'][name]:9.1f} {ratio}")
            rows[name] = {"data": str(data), "kind": kind, "count": result["count"],
                          "model": name, **{m: metrics[m] for m in METRICS},
                          "ms_per_image": result["latency_ms"][name]}
        if peer:
            for name in args.models:
                comparison = compare(result, name, peer)
                print("  " + describe_comparison(comparison, name, peer))
                rows[name]["vs_peer"] = comparison
        table.extend(rows.values())
        by_kind[Path(data).name] = result
    if by_kind:
        for metric, title in TABLES.items():
            print(f"\n{title}, mean per image")
            print(kind_table(by_kind, list(predictors), metric))
    if args.json:
        from humanmatting.io import atomic_path

        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps({"rows": table, "failed": failed}, indent=1))
    for path, reason in failed:   # bad pairs are left out of every figure above
        print(f"compare_peers.py: skipped {path}: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
