"""Train a registered model on an accelerator machine that has Keras 3 but no TensorFlow.

Keras 3 weights are the same on every backend, so a model of the zoo can be trained with the
JAX (or PyTorch) backend on a GPU and its `.weights.h5` loaded by the TensorFlow package for
fusion, evaluation and export. This script carries the parts of the training recipe that the
tf.data pipeline holds (`humanmatting.data.pipeline`) over to NumPy + OpenCV worker
processes: datasets mixed by weight, resized crop to a (H, W) bucket, rotation and
perspective, flip, compositing onto people-free backgrounds, colour jitter, grayscale, and
people-free negatives; the loss is `humanmatting.losses.MattingLoss`.

Two steps:

    # here (TensorFlow machine): the fixed train/val split, images shrunk for the trip
    python tools/train_device.py pack --out .devdata \\
        --data ../shared/data/flickr-portraits:0.45 ../shared/data/ccp-persons:0.47 \\
        --backgrounds ../shared/data/backgrounds:0.08

    # there (KERAS_BACKEND=jax): train, keep the best epoch by validation IoU
    python tools/train_device.py train --data .devdata --model likeunet_night \\
        --init models/likeunet_night.weights.h5 --minutes 8 --out $OUT

`train` writes `best.weights.h5` (training form; `--save-last` adds `last.weights.h5`,
`--keep-epochs` every epoch's `epN.weights.h5`), `history.csv` and `run.json`; `humanmatting
release --model NAME --weights best.weights.h5` (here) fuses them into `models/` and updates
`models/SHA256SUMS`; `humanmatting soup` averages releases and, with `--training-weights`,
epoch snapshots (stochastic weight averaging); `humanmatting carry` carries a variant.

Superseded by `humanmatting pack` + `humanmatting train` on any backend (one trainer, one
augmentation); kept while tools/hard_examples.py and tools/negative_strips.py read its packed
layout.
"""

import argparse
import collections
import csv
import json
import math
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHORT_SIDE = 288     # packed training images: short side at most this (buckets: 256)
VAL_SHORT_SIDE = 256  # validation images are scored at bucket resolution (short side 256)
JPEG_QUALITY = 75


# ----------------------------------------------------------------------------- pack (here)

def _shrink(image, short_side=SHORT_SIDE, interp=cv2.INTER_AREA):
    from humanmatting.data.pack import shrink

    return shrink(image, short_side, interp)


def _write(path, image, ext):
    # binary masks as 1-bit PNGs
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else [
        cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 9]
    ok, data = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"{path}: could not encode")
    from humanmatting.io import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.tobytes())


def pack(args):
    from humanmatting.data.readers import read_dataset
    from humanmatting.io import ImageError, load_rgb

    out = Path(args.out)
    manifest = {"datasets": [], "val_fraction": args.val_fraction, "short_side": SHORT_SIDE}
    specs = [(s, "folder") for s in args.data] + [(s, "backgrounds") for s in args.backgrounds]
    bad = []
    for spec, kind in specs:
        path, _, weight = spec.rpartition(":")
        pairs = read_dataset(path, kind)
        bad += [f"{problem}: {reason}" for problem, reason in pairs.problems]
        train, val = pairs.split(args.val_fraction)
        name = Path(path).name
        for split, subset in (("train", train), ("val", val)):
            short_side = SHORT_SIDE if split == "train" else VAL_SHORT_SIDE
            folder = out / name / split
            folder.mkdir(parents=True, exist_ok=True)
            for image_path, target_path in zip(subset.images, subset.targets):
                stem = Path(image_path).stem
                try:
                    rgb = load_rgb(image_path)
                    _write(folder / f"{stem}.jpg",
                           cv2.cvtColor(_shrink(rgb, short_side), cv2.COLOR_RGB2BGR), ".jpg")
                    if target_path:
                        mask = cv2.imread(str(target_path), cv2.IMREAD_GRAYSCALE)
                        if mask is None:
                            raise ImageError(f"{target_path}: not an image")
                        mask = cv2.resize(mask, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)
                        mask = np.where(_shrink(mask, short_side, cv2.INTER_LINEAR) > 127,
                                        255, 0).astype(np.uint8)
                        _write(folder / f"{stem}.png", mask, ".png")
                except (OSError, ValueError) as err:
                    bad.append(f"{image_path}: {err}")
        manifest["datasets"].append({"name": name, "kind": kind, "weight": float(weight),
                                     "source": path, "train": len(train), "val": len(val)})
        print(f"{name}: {len(train)} train, {len(val)} val")
    from humanmatting.io import atomic_path

    with atomic_path(out / "manifest.json") as tmp:   # written last: a killed pack has none
        Path(tmp).write_text(json.dumps(manifest, indent=1))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")
    for line in bad:
        print(f"skipped {line}", file=sys.stderr)
    return 1 if bad else 0


# ------------------------------------------------------------------------ loader (there)

def _manifest(root):
    """The manifest `pack` wrote into `root`; a clear error when `root` is not a packed folder."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root}: not a packed folder (no manifest.json; make one with "
                                "`train_device.py pack`)")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a valid manifest ({err})") from None


class Packed:
    """The packed images of one split, decoded once into memory."""

    def __init__(self, root, split):
        manifest = _manifest(root)
        self.sets = []
        for d in manifest["datasets"]:
            folder = Path(root) / d["name"] / split
            images = sorted(folder.glob("*.jpg"))
            items = []
            for f in images:
                rgb = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
                mask_path = f.with_suffix(".png")
                mask = (cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                        if mask_path.exists() else np.zeros(rgb.shape[:2], np.uint8))
                items.append((rgb, mask))
            self.sets.append({"name": d["name"], "kind": d["kind"], "weight": d["weight"],
                              "items": items})
        self.backgrounds = [rgb for s in self.sets if s["kind"] == "backgrounds"
                            for rgb, _ in s["items"]]


def _jitter(rng, rgb, gray_p):
    x = rgb.astype(np.float32)
    x = x * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)                 # contrast, brightness
    mean = x.mean(axis=2, keepdims=True)
    x = mean + (x - mean) * rng.uniform(0.6, 1.4)                         # saturation
    x = x * rng.uniform(0.9, 1.1, size=3)                                 # colour balance
    if rng.random() < gray_p:
        x = np.repeat(x @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def _fit_background(rng, bg, h, w, crop):
    """`bg` at (h, w): stretched, or (`crop`) a random window of the photo's aspect ratio
    resized, so that a 4:1 people-free band is not squashed behind a 3:4 portrait."""
    if crop:
        bh, bw = bg.shape[:2]
        ch, cw = (bh, max(1, round(bh * w / h))) if bw * h >= bh * w else \
            (max(1, round(bw * h / w)), bw)
        y0, x0 = rng.integers(bh - ch + 1), rng.integers(bw - cw + 1)
        bg = bg[y0:y0 + ch, x0:x0 + cw]
    return cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)


def augment(rng, rgb, mask, size, backgrounds, *, composite_p=0.25, gray_p=0.1,
            min_scale=0.25, max_rotation=15.0, perspective=0.06, crop_background=False):
    """One training sample: (H, W, 3) uint8 image and (H, W) float32 alpha at `size`."""
    h, w = rgb.shape[:2]
    out_h, out_w = size
    if backgrounds and rng.random() < composite_p and mask.any():
        bg = _fit_background(rng, backgrounds[rng.integers(len(backgrounds))], h, w,
                             crop_background)
        a = (mask.astype(np.float32) / 255.0)[..., None]
        a = cv2.GaussianBlur(a, (3, 3), 0)[..., None]
        rgb = (rgb * a + bg * (1 - a)).astype(np.uint8)
    # resized crop with the bucket's aspect ratio: area scale in [min_scale, 1]
    aspect = out_w / out_h
    area = h * w * rng.uniform(min_scale, 1.0)
    ch = min(h, math.sqrt(area / aspect))
    cw = min(w, ch * aspect)
    ch = cw / aspect
    # max(0, ...): ch = cw / aspect can exceed h by a rounding step (very wide images)
    y0, x0 = rng.uniform(0, max(0.0, h - ch)), rng.uniform(0, max(0.0, w - cw))
    src = np.float32([[x0, y0], [x0 + cw, y0], [x0 + cw, y0 + ch], [x0, y0 + ch]])
    src += rng.uniform(-perspective, perspective, (4, 2)).astype(np.float32) * [cw, ch]
    angle = math.radians(rng.uniform(-max_rotation, max_rotation))
    centre = src.mean(axis=0)
    rot = np.float32([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    src = (src - centre) @ rot.T + centre
    dst = np.float32([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]])
    matrix = cv2.getPerspectiveTransform(src, dst)
    image = cv2.warpPerspective(rgb, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101)
    alpha = cv2.warpPerspective(mask, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101).astype(np.float32) / 255.0
    if rng.random() < 0.5:
        image, alpha = image[:, ::-1], alpha[:, ::-1]
    return _jitter(rng, image, gray_p), np.ascontiguousarray(alpha)


_STATE = {}


def _worker_init(root, sizes, channels, batch, mix=None, composite=None):
    cv2.setNumThreads(1)
    data = Packed(root, "train")
    for d in data.sets:   # sampling weights other than the packed ones
        d["weight"] = (mix or {}).get(d["name"], d["weight"])
    composite = composite or {}
    if composite.get("sets"):   # composite onto these sets only (default: every people-free one)
        data.backgrounds = [rgb for d in data.sets if d["name"] in composite["sets"]
                            for rgb, _ in d["items"]]
    _STATE.update(data=data, sizes=sizes, channels=channels, batch=batch,
                  composite_p=composite.get("p", 0.25), crop=composite.get("crop", False))


def _freeze_batchnorm(model, keep=()):
    """Every BatchNorm in inference mode with its statistics and affine weights fixed, except
    those inside the top-level layers named in `keep` (new blocks that have yet to learn).

    Fine-tuning with small batches (a CPU's 8) otherwise pulls the moving statistics of a
    converged model towards noisy batch statistics; Keras 3 runs a non-trainable
    BatchNormalization in inference mode even when training.
    """
    import keras

    frozen = 0
    for top in model.layers:
        if top.name in keep:
            continue
        for layer in top._flatten_layers(include_self=True):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
                frozen += 1
    return frozen


def _prefetched(pool, seeds, ahead):
    """Batches for `seeds` in order, at most `ahead` made in advance.

    `Pool.imap` would keep its workers busy until every seed is done and hold all their
    results in memory: on a CPU, where the workers outpace training, that grew one run past
    20 GiB.
    """
    pending = collections.deque()
    for seed in seeds:
        pending.append(pool.apply_async(_make_batch, (seed,)))
        if len(pending) >= ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _in_thread(iterable, ahead):
    """Items of `iterable`, made by a background thread at most `ahead` in advance.

    Receiving and converting the next batches (NumPy, which lets go of the GIL) then overlaps
    the training step.
    """
    items = queue.Queue(maxsize=ahead)
    done = object()

    def fill():
        try:
            for item in iterable:
                items.put(item)
        except Exception as err:   # handed to the consumer, raised there
            items.put(err)
        items.put(done)

    threading.Thread(target=fill, daemon=True).start()
    while (item := items.get()) is not done:
        if isinstance(item, Exception):
            raise item
        yield item


def _make_batch(seed):
    """One batch as uint8 (B, H, W, C) images and (B, H, W) alphas (x 255).

    uint8 is a quarter of float32's bytes through the pool's pipes: float32 batches of 32 at
    256x384 (63 MB pickled) held a 16-core machine to ~230 images/s.
    """
    s = _STATE
    rng = np.random.default_rng(seed)
    sets = s["data"].sets
    weights = np.array([d["weight"] for d in sets], np.float64)
    size = s["sizes"][rng.integers(len(s["sizes"]))]
    xs, ys = [], []
    for _ in range(s["batch"]):
        d = sets[rng.choice(len(sets), p=weights / weights.sum())]
        rgb, mask = d["items"][rng.integers(len(d["items"]))]
        image, alpha = augment(rng, rgb, mask, size, s["data"].backgrounds,
                               composite_p=s.get("composite_p", 0.25),
                               crop_background=s.get("crop", False))
        xs.append(_channels(image, s["channels"]))
        ys.append(np.rint(alpha * 255).astype(np.uint8))
    return np.stack(xs), np.stack(ys)


def _as_float(batch, scale):
    """A `_make_batch` result as the model's input and `MattingLoss`'s rough targets."""
    images, alphas = batch
    y = alphas[..., None].astype(np.float32) * np.float32(1 / 255)
    return (images.astype(np.float32) * np.float32(scale),
            np.concatenate([y, np.zeros_like(y)], axis=-1))


def distil_targets(y, teacher_prob, weight):
    """Rough targets blended with a teacher's person probability (knowledge distillation).

    Args:
        y: (B, H, W, 2) float32 targets from `_as_float` ([alpha, refined flag]).
        teacher_prob: (B, H, W) the teacher's person probability on the same inputs.
        weight: the teacher's share w in [0, 1]: alpha <- (1 - w) alpha + w teacher.

    Returns:
        (B, H, W, 2) float32; the flag is kept, so `MattingLoss` stays cross entropy + soft
        IoU against the blend (the teacher's soft edges and confidence, anchored to the mask).
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"--distil-weight must be in [0, 1], got {weight}")
    teacher_prob = np.asarray(teacher_prob, np.float32)
    if teacher_prob.shape != y.shape[:3]:
        raise ValueError(f"teacher output {teacher_prob.shape} does not match the targets "
                         f"{y.shape[:3]}")
    out = np.array(y, np.float32, copy=True)
    out[..., 0] = (1.0 - weight) * out[..., 0] + weight * np.clip(teacher_prob, 0.0, 1.0)
    return out


def _check_teacher(args, spec):
    """Raises ValueError for a --distil-weight outside [0, 1] or a --teacher that reads other
    input than the student (run before the workers start, so a bad value fails at once)."""
    if not args.teacher:
        return
    if not 0.0 <= args.distil_weight <= 1.0:
        raise ValueError(f"--distil-weight must be in [0, 1], got {args.distil_weight}")
    from humanmatting.registry import get_preset

    tspec = get_preset(args.teacher).input
    if (tspec.channels, tspec.scale) != (spec.channels, spec.scale):
        raise ValueError(f"--teacher {args.teacher} reads {tspec.channels}-channel input "
                         f"scaled by {tspec.scale:g}; {args.model} reads {spec.channels} "
                         f"scaled by {spec.scale:g}: they must match")


def _teacher(args, spec):
    """(predict function (B, H, W, C) -> (B, H, W) person probability) for --teacher, or None."""
    _check_teacher(args, spec)
    if not args.teacher:
        return None
    from humanmatting.registry import create_model

    teacher = create_model(args.teacher, weights=args.teacher_weights or "default")
    teacher.compile(jit_compile=args.jit)
    print(f"distilling from {args.teacher} (weight {args.distil_weight})", flush=True)
    return lambda x: np.asarray(teacher.predict_on_batch(x))[..., 1]


def _channels(image, channels):
    """An RGB uint8 image as the model's channels (gray: (H, W, 1))."""
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)[..., None]
    return image


def _to_input(image, channels, scale):
    return _channels(image, channels).astype(np.float32) * np.float32(scale)


def _val_batches(data, spec, sizes):
    """Each validation image (people only) resized to its nearest bucket, grouped by bucket."""
    from humanmatting.inference import choose_size

    groups = {}
    for d in data.sets:
        if d["kind"] == "backgrounds":
            continue
        for rgb, mask in d["items"]:
            h, w = choose_size(*rgb.shape[:2], sizes)
            image = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR) / 255.0
            groups.setdefault((h, w), []).append(
                (_to_input(image, spec.channels, spec.scale), alpha.astype(np.float32),
                 d["name"]))
    return groups


def _val_iou(model, groups, chunk=32):
    """Mean IoU (alpha > 0.5) per dataset at bucket resolution."""
    import keras

    scores = {}
    for items in groups.values():
        for i in range(0, len(items), chunk):
            part = items[i:i + chunk]
            prob = keras.ops.convert_to_numpy(
                model(np.stack([x for x, _, _ in part]), training=False))[..., 1]
            for p, (_, alpha, name) in zip(prob, part):
                pred, true = p > 0.5, alpha > 0.5
                union = np.logical_or(pred, true).sum()
                iou = 1.0 if union == 0 else np.logical_and(pred, true).sum() / union
                scores.setdefault(name, []).append(iou)
    return {name: float(np.mean(v)) for name, v in scores.items()}


def steady_rate(steps, batch, seconds):
    """Training images/s over an epoch's steps that compiled no new shape (`steps` of them,
    taking `seconds`), to 0.1; None when every step compiled (no steady-state figure)."""
    if steps <= 0:
        return None
    return round(steps * batch / max(seconds, 1e-9), 1)


def _save_weights(model, path):
    """`model.save_weights` through `atomic_path`: a run killed while saving leaves the
    previous file whole."""
    from humanmatting.io import atomic_path

    with atomic_path(path) as tmp:
        model.save_weights(tmp)


def _write_history(out, history):
    tmp = out / "history.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[-1]))
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, out / "history.csv")


def _arch(args):
    """The builder arguments given as --arch JSON (an empty dict when none)."""
    from humanmatting.cli.common import parse_arch

    return parse_arch(args.arch)


def train(args):
    import keras

    from humanmatting.losses import MattingLoss
    from humanmatting.registry import SIZES_256, create_model, get_preset

    keras.utils.set_random_seed(args.seed)
    spec = get_preset(args.model).input
    _check_teacher(args, spec)
    arch = _arch(args)
    if args.grow and not (args.init_deploy and arch):
        raise ValueError("--grow needs --init-deploy (the file to grow from) and --arch (the "
                         "deeper architecture)")
    sizes = ([tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
             if args.sizes else [tuple(s) for s in SIZES_256])
    mix = _parse_mix(args.mix)
    names = [d["name"] for d in _manifest(args.data)["datasets"]]
    if set(mix) - set(names):
        raise ValueError(f"--mix names {sorted(set(mix) - set(names))}, not among the packed "
                         f"datasets {names}")
    composite = _composite(args, Path(args.data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # workers start (spawned, not forked) before the accelerator is touched
    pool = mp.get_context("spawn").Pool(
        args.workers, initializer=_worker_init,
        initargs=(args.data, sizes, spec.channels, args.batch, mix, composite))
    model = create_model(args.model, weights=None, deploy=False, **arch)
    if args.init:
        model.load_weights(args.init)
        print(f"initialised from {args.init}", flush=True)
    elif args.init_deploy:   # a released, fused file: unfused with calibrated BatchNorm
        from humanmatting.training.transfer import init_from_deploy

        if args.init_deploy_model and args.init_deploy_model != args.model:
            # another variant's release (e.g. Night's RGB into Dark): carried across in
            # deploy form, then unfused like a release of this model
            from humanmatting.training.transfer import transfer_deploy

            src = create_model(args.model, weights=None, deploy=True, **arch)
            other = create_model(args.init_deploy_model, weights=args.init_deploy, deploy=True)
            scale = get_preset(args.init_deploy_model).input.scale / spec.scale
            copied = transfer_deploy(other, src, input_scale=scale)
            if len(copied) != len([x for x in src.layers if x.weights]):
                raise ValueError(f"{args.init_deploy} ({args.init_deploy_model}) does not fit "
                                 f"{args.model}: only {copied} carried across")
        else:   # with --grow the file is of the preset's own (shallower) architecture
            src = create_model(args.model, weights=args.init_deploy, deploy=True,
                               **({} if args.grow else arch))
        data = Packed(args.data, "train")
        rng = np.random.default_rng(args.seed)
        people = [d for d in data.sets if d["kind"] != "backgrounds"]
        images = []
        for i in range(64):
            d = people[i % len(people)]
            rgb, mask = d["items"][rng.integers(len(d["items"]))]
            image, _ = augment(rng, rgb, mask, (256, 256), data.backgrounds)
            images.append(_to_input(image, spec.channels, spec.scale))
        copied = init_from_deploy(src, model, np.stack(images), grow=args.grow)
        print(f"initialised {len(copied)} layers from the deploy-form {args.init_deploy}",
              flush=True)
        grown = [layer.name for layer in model.layers if layer.weights
                 and layer.name not in copied]
        if grown:
            print(f"new residual blocks, started near the identity: {grown}", flush=True)
    teacher = _teacher(args, spec)
    steps_per_epoch = args.steps_per_epoch
    total_steps = args.epochs * steps_per_epoch
    # the learning rate follows a cosine over the run's time budget (or its epochs, whichever
    # ends first), after a linear warm-up in steps, so a run cut by --minutes still anneals
    if args.freeze_bn:   # a grown model's new blocks keep learning their BatchNorm
        _freeze_batchnorm(model, keep=grown if args.init_deploy else ())
    model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=args.weight_decay),
                  loss=MattingLoss(), jit_compile=args.jit)

    def learning_rate(step, elapsed):
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        done = max(elapsed / (args.minutes * 60), step / total_steps)
        return args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
    val = _val_batches(Packed(args.data, "val"), spec, sizes)
    print(f"validation: {sum(len(v) for v in val.values())} images in {len(val)} buckets",
          flush=True)
    if args.init or args.init_deploy:   # the starting point, to judge the epochs by
        print(json.dumps({"initial": _val_iou(model, val)}), flush=True)
    start = time.time()
    compiling = 0.0   # seconds spent in steps that compiled a new shape: not in the schedule
    compiled = set()
    best, history, step = -1.0, [], 0
    with pool:
        seeds = iter(range(args.seed * 10**7, args.seed * 10**7 + total_steps))
        batches = _in_thread((_as_float(b, spec.scale) for b in
                              _prefetched(pool, seeds, ahead=4 * args.workers)), ahead=4)
        for epoch in range(args.epochs):
            losses, epoch_start = [], time.time()
            compiled_before, shapes_before = compiling, len(compiled)
            for _ in range(steps_per_epoch):
                x, y = next(batches)
                model.optimizer.learning_rate.assign(
                    learning_rate(step, time.time() - start - compiling))
                t0 = time.time()
                if teacher is not None:
                    y = distil_targets(y, teacher(x), args.distil_weight)
                logs = model.train_on_batch(x, y, return_dict=True)
                if x.shape not in compiled:   # the first step of a shape traces / compiles
                    compiled.add(x.shape)
                    compiling += time.time() - t0
                losses.append(logs["loss"])
                step += 1
            rate = steady_rate(steps_per_epoch - (len(compiled) - shapes_before), args.batch,
                               time.time() - epoch_start - (compiling - compiled_before))
            scores = _val_iou(model, val)
            mean = float(np.mean(list(scores.values())))
            row = {"epoch": epoch, "loss": float(np.mean(losses)), "val_iou_mean": mean,
                   **{f"val_iou_{k}": v for k, v in scores.items()},
                   "images_per_s": rate, "minutes": (time.time() - start) / 60,
                   "compiling_minutes": compiling / 60}
            history.append(row)
            print(json.dumps(row), flush=True)
            if mean > best:
                best = mean
                _save_weights(model, out / "best.weights.h5")
            if args.save_last:   # every epoch: a run stopped early keeps its latest weights
                _save_weights(model, out / "last.weights.h5")
            if args.keep_epochs:   # snapshots to average (soup --training-weights)
                _save_weights(model, out / f"ep{epoch + 1}.weights.h5")
            _write_history(out, history)
            if (time.time() - start - compiling) / 60 > args.minutes:
                print(f"stopping at the time limit after epoch {epoch}", flush=True)
                break
        pool.terminate()   # do not wait for the batches made ahead
    run = {"model": args.model, "arch": arch, "init": args.init, "teacher": args.teacher,
           "distil_weight": args.distil_weight if args.teacher else None,
           "backend": keras.backend.backend(),
           "best_val_iou_mean": best, "epochs_done": len(history), "steps_per_epoch":
           steps_per_epoch, "batch": args.batch, "lr": args.lr, "seed": args.seed,
           "minutes": (time.time() - start) / 60, "command": " ".join(sys.argv)}
    from humanmatting.io import atomic_path

    with atomic_path(out / "run.json") as tmp:
        Path(tmp).write_text(json.dumps(run, indent=1))
    return 0


def _composite(args, root):
    """--composite-p / --composite-from / --crop-background, checked against the packed data."""
    if not 0 <= args.composite_p <= 1:
        raise ValueError(f"--composite-p must be in [0, 1], got {args.composite_p}")
    sets = [n.strip() for n in args.composite_from.split(",") if n.strip()]
    kinds = {d["name"]: d["kind"] for d in _manifest(root)["datasets"]}
    free = sorted(n for n, k in kinds.items() if k == "backgrounds")
    bad = [n for n in sets if kinds.get(n) != "backgrounds"]
    if bad:
        raise ValueError(f"--composite-from {bad}: not people-free packed datasets; "
                         f"these are: {free}")
    return {"p": args.composite_p, "sets": sets, "crop": args.crop_background}


def _parse_mix(text):
    """"flickr-portraits=0.55,ccp-persons=0.37" -> {name: weight}."""
    mix = {}
    for part in filter(None, text.split(",")):
        name, sep, weight = part.partition("=")
        if not sep:
            raise ValueError(f"--mix: expected NAME=WEIGHT, got {part!r}")
        mix[name.strip()] = float(weight)
    return mix


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="split and shrink datasets for the trip")
    p.add_argument("--data", nargs="+", required=True, help="FOLDER:WEIGHT (people)")
    p.add_argument("--backgrounds", nargs="*", default=[], help="FOLDER:WEIGHT (no people)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--out", required=True)
    p.set_defaults(func=pack)
    t = sub.add_parser("train", help="train on the packed data (any Keras backend)")
    t.add_argument("--data", required=True)
    t.add_argument("--model", required=True)
    t.add_argument("--init", default="", help="training-form .weights.h5 to start from")
    t.add_argument("--arch", default="", help="architecture arguments for the builder, as "
                   "JSON (e.g. '{\"depths\": [1, 1, 2, 3, 3]}')")
    t.add_argument("--mix", default="", help="sampling weights other than the packed ones: "
                   "NAME=WEIGHT,... (dataset folder names)")
    t.add_argument("--init-deploy", default="", help="or a released (fused) .weights.h5")
    t.add_argument("--grow", action="store_true",
                   help="--arch is deeper than the --init-deploy file (likeunet_lite depths): "
                        "the new residual blocks start near the identity, the rest from the "
                        "file; with --freeze-bn their BatchNorms still learn")
    t.add_argument("--init-deploy-model", default="",
                   help="the registered model the --init-deploy file belongs to, when it is "
                        "another variant (e.g. likeunet_night's release to start likeunet_dark)")
    t.add_argument("--teacher", default="", help="a registered model whose predictions on "
                   "each training batch are blended into the targets (distillation)")
    t.add_argument("--teacher-weights", default="", help="deploy-form weights for --teacher "
                   "(default: its release)")
    t.add_argument("--distil-weight", type=float, default=0.5,
                   help="the teacher's share of each target alpha (0..1)")
    t.add_argument("--composite-p", type=float, default=0.25,
                   help="chance that a photo's person is pasted onto a people-free image")
    t.add_argument("--composite-from", default="",
                   help="people-free packed datasets to paste onto, NAME,NAME (default: all)")
    t.add_argument("--crop-background", action="store_true",
                   help="paste onto a window of the photo's aspect ratio instead of the whole "
                        "people-free image stretched")
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--steps-per-epoch", type=int, default=100)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup-steps", type=int, default=200)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    t.add_argument("--minutes", type=float, default=8.0, help="stop after the epoch that "
                   "passes this")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save-last", action="store_true", help="also write last.weights.h5 "
                   "(after every epoch, so a run stopped early keeps its latest weights)")
    t.add_argument("--keep-epochs", action="store_true", help="also write each epoch's "
                   "weights as epN.weights.h5, N from 1 (to average with soup --training-weights)")
    t.add_argument("--freeze-bn", action="store_true",
                   help="keep every BatchNorm in inference mode with its statistics fixed "
                        "(fine-tuning with small batches, e.g. on a CPU)")
    t.add_argument("--sizes", default="", help="bucket sizes HxW,HxW,... (default: the "
                   "9 sizes of SIZES_256); each new shape compiles once")
    t.add_argument("--no-jit", dest="jit", action="store_false",
                   help="no XLA / torch.compile (e.g. with KERAS_BACKEND=torch)")
    t.set_defaults(func=train)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:   # bad data folder, weights that do not fit
        print(f"train_device.py {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
