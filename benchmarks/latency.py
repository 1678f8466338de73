"""Latency of every released model on every backend, side by side with a peer, in one process.

    python benchmarks/latency.py [--size 256x256] [--threads 2] [--runs 100] [--rounds 5] \\
        [--models NAME ...] [--backends keras onnx tflite tflite-int8] \\
        [--peer ../shared/peers/mediapipe/selfie_segmentation.tflite] [--json FILE]

`tflite-int8` / `tflite-fp16` run the model's released quantized TFLite file when it has one
(Night-Lite's int8, calibrated on training photographs), else the model quantized on the spot.
Each candidate runs on a prepared input of the given size (the peer at its own input size, as
its authors run it), with the given thread count. The candidates are timed in interleaved
rounds (every candidate once per round, `runs` calls each) so that a change in the machine's
load touches them all alike; the table gives the median and p90 over all calls, FPS, and each
candidate's median relative to the peer's (x < 1: faster than the peer).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from humanmatting.bench import parse_size  # noqa: E402
from humanmatting.cli.common import positive_int  # noqa: E402

PEER = Path(__file__).resolve().parent.parent.parent / "shared/peers/mediapipe/selfie_segmentation.tflite"


def candidates(models, backends, size, threads):
    """{label: (fn, input)} for every model x backend, each with its own prepared input."""
    from humanmatting.inference import Matter

    out = {}
    rng = np.random.default_rng(0)
    for name in models:
        for backend in backends:
            runtime, _, quantize = backend.partition("-")
            matter = Matter(name, backend=runtime, sizes=[size], threads=threads,
                            quantize=quantize or None)
            x = rng.uniform(0, 255 * matter.input_spec.scale,
                            (1, *size, matter.input_spec.channels)).astype(np.float32)
            out[f"{name} ({backend})"] = (matter.run, x)
    return out


def interleaved(runners, runs, rounds, warmup=5):
    """Per-call times in ms for each runner, timed round-robin."""
    times = {label: [] for label in runners}
    for fn, x in runners.values():
        for _ in range(warmup):
            fn(x)
    for _ in range(rounds):
        for label, (fn, x) in runners.items():
            for _ in range(runs):
                start = time.perf_counter()
                fn(x)
                times[label].append((time.perf_counter() - start) * 1000)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256x256", help="HxW input of our models")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--runs", type=positive_int, default=100,
                        help="calls per candidate per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", help="default: every released model")
    parser.add_argument("--backends", nargs="+", default=["keras", "onnx", "tflite"],
                        choices=["keras", "onnx", "tflite", "tflite-int8", "tflite-fp16"])
    parser.add_argument("--peer", default=str(PEER) if PEER.is_file() else "",
                        help="peer TFLite file (default: ../shared/peers/mediapipe, if present)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    try:
        size = parse_size(args.size)
    except ValueError as err:
        sys.exit(f"error: {err}")
    if args.peer and not Path(args.peer).is_file():
        sys.exit(f"error: peer file {args.peer} does not exist")

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from humanmatting.registry import released_models

    models = args.models or released_models()
    try:
        runners = candidates(models, args.backends, size, args.threads)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    peer_label = None
    if args.peer:
        from humanmatting.evaluation import TFLitePeer

        peer = TFLitePeer(args.peer, threads=args.threads)
        peer_label = f"peer {Path(args.peer).stem} (tflite, {peer.height}x{peer.width})"
        x = np.random.default_rng(0).uniform(
            0, 1, (1, peer.height, peer.width, peer.channels)).astype(np.float32)
        runners[peer_label] = (peer.run, x)

    times = interleaved(runners, args.runs, args.rounds)
    rows = {}
    for label, values in times.items():
        median = float(np.median(values))
        rows[label] = {"median_ms": median, "p90_ms": float(np.percentile(values, 90)),
                       "fps": 1000.0 / median}
    reference = rows[peer_label]["median_ms"] if peer_label else None
    print(f"{size[0]}x{size[1]}, {args.threads} threads, {args.rounds} rounds x {args.runs} "
          f"calls, TensorFlow {tf.__version__}")
    print(f"{'model (backend)':44s} {'median ms':>10s} {'p90 ms':>8s} {'FPS':>8s}"
          + (f" {'x peer':>7s}" if reference else ""))
    for label, row in rows.items():
        if reference:
            row["ratio_to_peer"] = row["median_ms"] / reference
        print(f"{label:44s} {row['median_ms']:10.2f} {row['p90_ms']:8.2f} {row['fps']:8.1f}"
              + (f" {row['ratio_to_peer']:7.2f}" if reference else ""))
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump({"size": list(size), "threads": args.threads, "rows": rows}, f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
