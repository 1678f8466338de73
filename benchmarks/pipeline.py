"""Training-pipeline throughput next to training-step throughput, side by side.

The pipeline must outpace training on this machine, or the accelerator (here: 2 CPU cores)
waits for data. Both are measured in one run with the same batch size and size table:

    python benchmarks/pipeline.py [--data DIR ...] [--model likeunet_night] [--batches 30]
                                  [--sizes HxW,...]

Without --data, a generated folder dataset is used (so it runs anywhere). Prints images/s of
(1) the tf.data pipeline alone (decode already cached, augmentation, bucketing), (2) the
training step alone on pre-made batches of the same shapes, and their ratio, then (3) the
training step on square batches at each side of --train-at (default 256 and 320), the figure a
training plan needs. A dict-output model (u2netp) trains with its deep-supervision loss
(--loss bce|portrait|matting, one per output).

    python benchmarks/pipeline.py --model u2netp --loss portrait --batch-size 4
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from humanmatting.bench import parse_size  # noqa: E402
from humanmatting.cli.common import positive_int  # noqa: E402
from humanmatting.data import pipeline  # noqa: E402
from humanmatting.data.readers import read_dataset  # noqa: E402
from humanmatting.inference import check_sizes  # noqa: E402
from humanmatting.losses import LOSS_KINDS, make_loss  # noqa: E402
from humanmatting.registry import SIZES_256, create_model, get_preset  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", default=[], help="folder datasets (default: a "
                        "generated one)")
    parser.add_argument("--backgrounds", default=None, help="a folder of people-free images")
    parser.add_argument("--model", default="likeunet_night")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--batches", type=positive_int, default=30)
    parser.add_argument("--sizes", default="", help="bucket sizes HxW,HxW,... (default: the "
                        f"{len(SIZES_256)} sizes of SIZES_256, 1:2 .. 2:1)")
    parser.add_argument("--loss", choices=sorted(LOSS_KINDS), default="matting")
    parser.add_argument("--train-at", default="256,320", help="square sides to time the "
                        "training step at (comma-separated; empty: none)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="humanmatting-pipeline-") as tmp:
        try:
            spec = get_preset(args.model).input
            sides = [positive_int(t) for t in args.train_at.split(",") if t.strip()]
            sizes = (check_sizes([parse_size(t) for t in args.sizes.split(",")], spec.divisor)
                     if args.sizes else SIZES_256)
            if args.data:
                lists = [read_dataset(d) for d in args.data]
            else:
                from conftest import make_folder_dataset

                lists = [read_dataset(make_folder_dataset(Path(tmp) / "d", count=64,
                                                          shape=(600, 450)))]
            store = pipeline.ImageStore(lists)
            backgrounds = None
            if args.backgrounds:
                backgrounds = pipeline.load_backgrounds(
                    read_dataset(args.backgrounds, "backgrounds"))
        except (ValueError, FileNotFoundError) as err:
            print(f"pipeline.py: {err}", file=sys.stderr)
            return 1
        for path, reason in store.problems:   # an empty store has raised above
            print(f"pipeline.py: left out {path}: {reason}", file=sys.stderr)
        return _measure(args, spec, sizes, store, [1.0] * len(lists), backgrounds, sides)


def _steps_per_second(model, batches, count):
    for x, y in batches:  # compile every shape first
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for step in range(count):
        model.train_on_batch(*batches[step % len(batches)])
    return count / (time.perf_counter() - start)


def _measure(args, spec, sizes, store, weights, backgrounds, sides):
    preset = get_preset(args.model)
    ds = pipeline.train_dataset(store, weights, input_spec=spec,
                                batch_size=args.batch_size, steps_per_epoch=args.batches + 5,
                                epochs=1, sizes=sizes, backgrounds=backgrounds,
                                output_spec=preset.output)
    it = iter(ds)
    warm = [next(it) for _ in range(5)]
    start = time.perf_counter()
    for _ in range(args.batches):
        next(it)
    pipe = args.batches * args.batch_size / (time.perf_counter() - start)

    model = create_model(args.model, weights=None, deploy=False)
    model.compile(keras.optimizers.AdamW(1e-3), make_loss(preset, {"kind": args.loss}),
                  jit_compile=True)
    shapes = {}
    for x, y in warm:
        shapes.setdefault(tuple(x.shape), (x, y))
    train = _steps_per_second(model, list(shapes.values()), args.batches) * args.batch_size
    square = {}
    for side in sides:
        x = np.random.default_rng(side).uniform(-1, 1, (args.batch_size, side, side,
                                                        spec.model_channels)).astype("float32")
        target = np.stack([(x[..., 0] > 0).astype("float32"), np.zeros_like(x[..., 0])], -1)
        y = {n: target for n in preset.output.names} if preset.output.names else target
        count = max(2, args.batches // 5)
        square[side] = _steps_per_second(model, [(x, y)], count) * args.batch_size

    print(f"data: {', '.join(args.data) or 'generated 600x450 folder'} ({len(store)} images)")
    print(f"sizes: {len(sizes)} bucket(s), batch {args.batch_size}, "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()} threads")
    print(f"pipeline      {pipe:8.1f} images/s")
    print(f"training step {train:8.1f} images/s  ({args.model}, {args.loss} loss, XLA)")
    print(f"pipeline / training = {pipe / train:.1f}x "
          f"({'pipeline keeps up' if pipe > train else 'PIPELINE IS THE BOTTLENECK'})")
    for side, rate in square.items():
        print(f"training step {rate:8.1f} images/s  at {side}x{side}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
