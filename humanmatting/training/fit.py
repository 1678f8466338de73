"""`fit(config)`: train a registered model on folder datasets, resumably.

A run folder (`config.out_dir`) holds:
- `config.yaml`: the config the run was started with;
- `checkpoint.keras` + `state.json`: model, optimizer and callback state after the last
  finished epoch, written atomically (a run killed at any moment resumes from the last one);
- `best.weights.h5`: training-form weights of the best epoch by `config.monitor`;
- `history.csv`, `logs/` (TensorBoard scalars and image grids).

Resume is exact: the data of epoch e depend only on (seed, e) (see `humanmatting.data.pipeline`)
and ops run deterministically, so a resumed run ends with the same weights as one that was
never interrupted.

The same `fit` runs on every Keras backend: TensorFlow (tf.data, distribution strategies,
TensorBoard scalars and image grids, the release export at the end) and JAX or PyTorch
(a PyDataset of the same batches; for a GPU machine without TensorFlow: history.csv holds
every named loss term, and the weights it writes load, fuse and export on the TensorFlow
side).
"""

import csv
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from humanmatting.data import pipeline
from humanmatting.data.readers import merge, read_dataset, read_split
from humanmatting.fusion import fuse
from humanmatting.io import atomic_path
from humanmatting.losses import make_loss, primary_loss
from humanmatting.metrics import AlphaMAE, PersonIoU, iou, loss_term_metrics, mse, sad
from humanmatting.registry import create_model, get_preset
from humanmatting.specs import person_probability
from humanmatting.training.config import TrainConfig
from humanmatting.training.needs import make_needs
from humanmatting.training.release import average
from humanmatting.training.transfer import init_from_deploy, transfer_weights


def _on_tensorflow():
    return keras.backend.backend() == "tensorflow"


def tf_dataset_types():
    """(tf.data.Dataset,) on the TensorFlow backend, () elsewhere."""
    if not _on_tensorflow():
        return ()
    import tensorflow as tf

    return (tf.data.Dataset,)


def _has_gpu():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def choose_precision(config):
    if config.precision == "auto":
        return "mixed_float16" if _has_gpu() else "float32"
    return config.precision


def _has_depthwise(model):
    from humanmatting.layers import ACBlock

    return any(isinstance(layer, keras.layers.DepthwiseConv2D)
               or (isinstance(layer, ACBlock) and layer.depthwise) for layer in model.layers)


def choose_jit(config, strategy, model=None):
    if not _on_tensorflow():   # JAX always compiles with XLA; torch.compile is opt-in
        return config.jit_compile != "false" if keras.backend.backend() == "jax" else (
            config.jit_compile == "true")
    import tensorflow as tf

    if config.jit_compile == "auto":
        # XLA speeds the plain convnets up on CPU and GPU alike (about 1.3x on 2 CPU cores),
        # but makes a depthwise model's training step on CPU 3.7x slower (Night-Lite: 2.56 s
        # vs 0.69 s a batch of 8 at 256x256, 1 thread); under a multi-replica strategy keep
        # the default path.
        if model is not None and _has_depthwise(model) and \
                not tf.config.list_physical_devices("GPU"):
            return False
        return strategy.num_replicas_in_sync == 1
    return config.jit_compile == "true"


class _NoStrategy:
    """The default 'strategy' of the JAX and PyTorch backends: one replica, no scope."""

    num_replicas_in_sync = 1

    def scope(self):
        import contextlib

        return contextlib.nullcontext()


def make_strategy(name, devices=()):
    if not _on_tensorflow():
        if name != "default":
            raise ValueError(f"strategy {name!r} needs the TensorFlow backend (running on "
                             f"{keras.backend.backend()})")
        return _NoStrategy()
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy(list(devices) or None)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


@keras.saving.register_keras_serializable(package="humanmatting")
class CosineWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then cosine decay to `peak * floor` at `total` steps."""

    def __init__(self, peak, warmup, total, floor=0.02):
        self.peak, self.warmup, self.total, self.floor = peak, warmup, total, floor

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / max(self.warmup, 1)
        progress = keras.ops.clip((step - self.warmup) / max(self.total - self.warmup, 1),
                                  0.0, 1.0)
        cosine = self.peak * (self.floor + (1 - self.floor) * 0.5 * (
            1.0 + keras.ops.cos(math.pi * progress)))
        return keras.ops.where(step < self.warmup, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total,
                "floor": self.floor}


def validation_epochs(epochs, every=1):
    """The 1-indexed epochs (Keras' `validation_freq` list) after which a run of `epochs`
    epochs validates: every `every`-th and the last."""
    if every < 1:
        raise ValueError(f"validate_every must be at least 1, got {every}")
    return [e for e in range(1, epochs + 1) if e % every == 0 or e == epochs]


class RunState(keras.callbacks.Callback):
    """Checkpoint each epoch atomically, keep the best weights, early-stop, log history.

    Its own state (best value, validated epochs without improvement) is saved with the
    checkpoint so a resumed run takes the same decisions as an uninterrupted one. An epoch
    outside `validated` (0-indexed; None: all) leaves the best epoch and the patience alone.
    """

    def __init__(self, run_dir, monitor, patience, state=None, keep_epochs=False,
                 validated=None):
        super().__init__()
        self.validated = None if validated is None else set(validated)
        self.run_dir = Path(run_dir)
        self.keep_epochs = keep_epochs
        self.monitor = monitor
        self.patience = patience
        state = state or {}
        self.sign = -1.0 if lower_is_better(monitor) else 1.0   # compare sign * value
        self.best = state.get("best", -self.sign * np.inf)
        self.best_epoch = state.get("best_epoch", -1)
        self.wait = state.get("wait", 0)
        self.train_seconds = state.get("train_seconds", 0.0)
        self._epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self.train_seconds += time.time() - (self._epoch_start or time.time())
        value = logs.get(self.monitor)
        if self.validated is not None and epoch not in self.validated:
            pass   # not validated: nothing to compare
        elif value is not None and self.sign * value > self.sign * self.best:
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            with atomic_path(self.run_dir / "best.weights.h5") as tmp:
                self.model.save_weights(tmp)
        else:
            self.wait += 1
        self._append_history(epoch, logs)
        try:   # the curves beside history.csv; a plotting problem never stops a run
            from humanmatting.plots import plot_history

            plot_history(self.run_dir / "history.csv", self.run_dir / "history.png")
        except Exception as err:  # noqa: BLE001
            print(f"history.png not written: {err}")
        if self.keep_epochs:
            (self.run_dir / "epochs").mkdir(exist_ok=True)
            with atomic_path(self.run_dir / "epochs" / f"ep{epoch:03d}.weights.h5") as tmp:
                self.model.save_weights(tmp)
        with atomic_path(self.run_dir / "checkpoint.keras") as tmp:
            self.model.save(tmp)
        state = {"epoch": epoch + 1, "best": self.best, "best_epoch": self.best_epoch,
                 "wait": self.wait, "monitor": self.monitor,
                 "train_seconds": round(self.train_seconds, 1)}
        with atomic_path(self.run_dir / "state.json") as tmp:
            tmp.write_text(json.dumps(state, indent=1))
        if self.patience and self.wait >= self.patience:
            self.model.stop_training = True

    def _append_history(self, epoch, logs):
        path = self.run_dir / "history.csv"
        rows = list(csv.DictReader(path.open())) if path.exists() else []
        rows = [r for r in rows if int(r["epoch"]) < epoch]
        rows.append({"epoch": epoch, "time": round(time.time(), 1),
                     **{k: f"{float(v):.6g}" for k, v in sorted(logs.items())}})
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(rows)


class EpochBar(keras.callbacks.Callback):
    """A bar over the run's epochs (`humanmatting.progress.bar`, on a terminal only), with
    the monitored value; Keras draws each epoch's steps."""

    def __init__(self, initial_epoch, epochs, monitor):
        super().__init__()
        from humanmatting.progress import bar

        self.bar = bar(total=epochs, unit="epoch", desc="training")
        self.bar.update(initial_epoch)
        self.monitor = monitor

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None:
            self.bar.set_postfix_str(f"{self.monitor} {float(value):.4f}", refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


class TimeLimit(keras.callbacks.Callback):
    """Stops training after the first epoch that ends past `minutes` (0: never)."""

    def __init__(self, minutes, log=print):
        super().__init__()
        self.minutes, self.log, self.start = minutes, log, time.time()

    def on_epoch_end(self, epoch, logs=None):
        if self.minutes and time.time() - self.start > 60 * self.minutes:
            self.log(f"stopping after epoch {epoch}: past max_minutes={self.minutes:g} "
                     "(--resume goes on)")
            self.model.stop_training = True


def freeze_batchnorm(model):
    """Every BatchNorm inside `model`, at any depth, in inference mode with fixed statistics
    and affine weights (Keras 3 runs a non-trainable BatchNormalization in inference mode even
    in training); returns how many."""
    frozen = 0
    for layer in model._flatten_layers(include_self=False):   # Keras's own walk, any depth
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


def distil_sources(config):
    """The indices of the datasets whose samples are distilled (None: every one)."""
    if not config.distil_photos:
        return None
    known = {d.photos for d in config.data}
    unknown = set(config.distil_photos) - known
    if unknown:
        raise ValueError(f"distil_photos: no dataset of kind {', '.join(sorted(unknown))} "
                         f"(kinds: {', '.join(sorted(known))})")
    return [i for i, d in enumerate(config.data) if d.photos in config.distil_photos]


def make_teacher(config, input_spec):
    """The teacher's predict function for distillation (None without one)."""
    if not config.teacher:
        return None
    teacher_spec = get_preset(config.teacher).input
    if (teacher_spec.model_channels, teacher_spec.normalisation) != (
            input_spec.model_channels, input_spec.normalisation):
        raise ValueError(f"teacher {config.teacher} reads {teacher_spec.model_channels}-channel "
                         f"{teacher_spec.normalisation} input; {config.model} reads "
                         f"{input_spec.model_channels}-channel {input_spec.normalisation}: "
                         "they must match")
    teacher = create_model(config.teacher, weights=config.teacher_weights)
    output = get_preset(config.teacher).output
    return lambda x: np.asarray(person_probability(
        keras.ops.convert_to_numpy(teacher(x, training=False)), output))


def kind_key(kind, metric="iou"):
    """The history column of a kind of photo: `val_<metric>_<kind>` with `-` as `_`."""
    return f"val_{metric}_" + "".join(c if c.isalnum() else "_" for c in kind.lower())


#: monitored figures where lower is better (the rest, IoU and the like, are higher-better)
LOWER_IS_BETTER = ("loss", "_mse", "_sad", "_mae")


def lower_is_better(monitor):
    """Whether a smaller value of `monitor` is a better epoch (`val_mse_mix`, `val_loss`)."""
    return any(part in monitor for part in LOWER_IS_BETTER)


class KindValidation(keras.callbacks.Callback):
    """Per kind of photo, the mean per-image person IoU on the validation split (at bucket
    resolution, as `ValBatches`), logged as `val_iou_<kind>`, and their plain mean as
    `val_iou_mix`: the figure the best epoch is chosen by, so that no one kind (the largest
    set, say) decides. A people-free image scores 1 when no pixel is taken for a person,
    else 0. For a trimap-matting model it also logs, per kind, the mean per-image MSE and SAD
    of the alpha over the validation trimap's unknown region (`val_mse_<kind>`,
    `val_sad_<kind>`, x 1e3 and / 1e3 as `humanmatting.metrics`) and the mean of the MSEs over
    the kinds, `val_mse_mix` (lower is
    better: monitor it with `monitor: val_mse_mix`). Runs before the callbacks that read the
    logs (history, TensorBoard, best epoch). Only after the epochs in `validated` (0-indexed;
    None: every epoch).
    """

    def __init__(self, store, kinds, *, input_spec, output_spec, sizes, validated=None):
        super().__init__()
        self.validated = None if validated is None else set(validated)
        self.output_spec = output_spec
        self.matting = bool(input_spec.trimap)
        self.batches = {}
        for kind in dict.fromkeys(kinds):
            members = [store.sources[k] for k, name in enumerate(kinds) if name == kind]
            indices = np.concatenate(members) if members else np.zeros(0, np.int64)
            if len(indices):
                self.batches[kind] = pipeline.ValBatches(
                    store, input_spec=input_spec, sizes=sizes, output_spec=output_spec,
                    indices=indices)

    def scores(self, metric="iou"):
        """{kind: mean per-image IoU} of the current model; `metric="all"`: {"iou": that,
        and for a trimap model "mse", "sad": {kind: mean over the unknown region}}."""
        out = {"iou": {}, "mse": {}, "sad": {}} if self.matting else {"iou": {}}
        for kind, batches in self.batches.items():
            values = {name: [] for name in out}
            for i in range(len(batches)):
                x, y = batches[i]
                if isinstance(y, dict):
                    y = y[self.output_spec.primary]
                pred = keras.tree.map_structure(keras.ops.convert_to_numpy,
                                                self.model(x, training=False))
                prob = np.asarray(person_probability(pred, self.output_spec), np.float32)
                values["iou"] += [iou(p, t) for p, t in zip(prob, y[..., 0])]
                if self.matting:   # channel 2 of a matting target: the unknown region
                    for p, t in zip(prob, np.asarray(y)):
                        region = t[..., 2] > 0.5
                        if region.any():
                            values["mse"].append(mse(p, t[..., 0], region))
                            values["sad"].append(sad(p, t[..., 0], region))
            for name, got in values.items():
                if got:
                    out[name][kind] = float(np.mean(got))
        return out if metric == "all" else out[metric]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.batches or (
                self.validated is not None and epoch not in self.validated):
            return
        scores = self.scores("all")
        for metric, per_kind in scores.items():
            for kind, value in per_kind.items():
                logs[kind_key(kind, metric)] = value
        logs["val_iou_mix"] = float(np.mean(list(scores["iou"].values())))
        if scores.get("mse"):
            logs["val_mse_mix"] = float(np.mean(list(scores["mse"].values())))


class ImageGrid(keras.callbacks.Callback):
    """Writes a TensorBoard image grid (input | target | prediction) each epoch."""

    def __init__(self, log_dir, images, targets):
        import tensorflow as tf

        super().__init__()
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "images"))
        self.images = tf.convert_to_tensor(images, tf.float32)
        self.targets = tf.convert_to_tensor(targets, tf.float32)

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        pred = self.model(self.images, training=False)
        prob = person_probability(pred)[..., None]
        image = self.images[..., :3]   # without a trimap channel
        image = image / tf.reduce_max([tf.reduce_max(image), 1.0])
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        grid = tf.concat([image, tf.image.grayscale_to_rgb(self.targets[..., :1]),
                          tf.image.grayscale_to_rgb(tf.cast(prob, tf.float32))], axis=2)
        with self.writer.as_default():
            tf.summary.image("input | target | prediction", grid, step=epoch, max_outputs=8)


def build_data(config, log=print):
    """Reads and splits the datasets.

    Returns:
        (train store, weights, val store, val kinds, backgrounds): `val kinds` names the kind
        of photo (`DataSource.photos`) of each of the val store's sources; `backgrounds`
        (people-free images to paste people onto) are `config.backgrounds` and the training
        part of every people-free dataset of the mix.
    """
    train_lists, val_lists, weights, kinds, backdrops = [], [], [], [], []
    for source in config.data:
        pairs, train, val = read_split(source, config.val_fraction)
        log(f"{source.path}: {len(train)} train, {len(val)} val pairs ({source.photos})"
            + (f", {len(pairs.problems)} left out" if pairs.problems else ""))
        train_lists.append(train)
        val_lists.append(val)
        weights.append(source.weight)
        kinds.append(source.photos)
        if source.kind == "backgrounds":
            backdrops.append(train)
    train_store = pipeline.ImageStore(train_lists, short_side=config.image_cache_short_side)
    val_store = pipeline.ImageStore(val_lists, short_side=config.image_cache_short_side)
    for path, reason in train_store.problems + val_store.problems:
        log(f"left out {path}: {reason}")
    if config.backgrounds and all(Path(config.backgrounds).resolve() !=
                                  Path(s.path).resolve() for s in config.data
                                  if s.kind == "backgrounds"):
        backdrops.insert(0, read_dataset(config.backgrounds, "backgrounds").split(
            config.val_fraction)[0])
    backgrounds = pipeline.load_backgrounds(merge(backdrops)) if backdrops else None
    return train_store, weights, val_store, kinds, backgrounds


def _initial_model(config, run_dir, resume, log, calibration_images):
    """The model to train: from the checkpoint when resuming, else built and initialised."""
    checkpoint = run_dir / "checkpoint.keras"
    if resume and checkpoint.exists():
        state = json.loads((run_dir / "state.json").read_text())
        log(f"resuming {run_dir} at epoch {state['epoch']}")
        model = keras.models.load_model(checkpoint)
        return model, state
    model = create_model(config.model, weights=None, deploy=False, **config.overrides)
    if config.init_from:   # its existence is checked by _check_inputs, before the data
        source = Path(config.init_from)
        if source.suffix == ".keras":
            src_model = keras.models.load_model(source, compile=False)
            src_name = config.init_from_model or config.model
        else:
            src_name = config.init_from_model or config.model
            # weights of the model itself have its architecture overrides (but init_grow
            # grows a release of the registered shape); another model's, its registered shape
            src_overrides = (config.overrides if src_name == config.model
                             and not config.init_grow else {})
            try:
                src_model = create_model(src_name, weights=source, deploy=False,
                                         **src_overrides)
            except ValueError as err:  # a released (fused) file: same architecture only
                if src_name != config.model and not config.init_grow:
                    raise ValueError(f"init_from: {source} is not a training-form file of "
                                     f"{src_name!r}; a deploy-form (released) file must be of "
                                     f"{config.model!r} itself") from err
                src_model = create_model(src_name, weights=source, deploy=True,
                                         **src_overrides)
                copied = init_from_deploy(src_model, model, calibration_images(),
                                          grow=config.init_grow)
                log(f"initialised {len(copied)} layers from the deploy-form {source}, "
                    "BatchNorm statistics from a few training batches"
                    + (" (new blocks near the identity)" if config.init_grow else ""))
                return model, {"epoch": 0}
        ratio = get_preset(src_name).input.scale / get_preset(config.model).input.scale
        copied = transfer_weights(src_model, model, input_scale=ratio)
        log(f"initialised {len(copied)} layers from {source} ({src_name})")
    return model, {"epoch": 0}


def _calibration_images(config, train_store, weights, input_spec, sizes, backgrounds,
                        batches=4):
    """A few augmented training batches, resized to the first one's size and stacked."""
    import cv2

    maker = pipeline.BatchMaker(
        train_store, weights, input_spec=input_spec, batch_size=config.batch_size,
        steps_per_epoch=batches, seed=config.seed + 1, sizes=sizes,
        augment=pipeline.AugmentConfig(**config.augment), backgrounds=backgrounds)
    images = [maker.batch(0, step)[0] for step in range(batches)]
    h, w = images[0].shape[1:3]
    out = [cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
           for batch in images for x in batch]
    return np.stack(out).astype(np.float32)


def _check_inputs(config, run_dir, resume, log):
    """Fails on a missing `init_from` file or backgrounds folder before minutes of image
    decoding, and says what a resume without a checkpoint, or a missing peer, will do.
    Returns whether there is a checkpoint to resume from."""
    if resume and not (run_dir / "checkpoint.keras").exists():
        log(f"no checkpoint in {run_dir} to resume from: starting from the beginning")
        resume = False
    if config.export and config.peer_tflite and not Path(config.peer_tflite).is_file():
        log(f"peer_tflite: {config.peer_tflite}: no such file; the model card will have no "
            "peer metrics")
    if config.init_from and not resume and not Path(config.init_from).is_file():
        raise FileNotFoundError(f"init_from: {config.init_from}: no such file")
    if config.backgrounds and not Path(config.backgrounds).is_dir():
        raise FileNotFoundError(f"backgrounds: {config.backgrounds}: no such folder")
    return resume


def fit(config, *, resume=False, log=print, callbacks=(), command=None):
    """Trains `config.model` as configured.

    Args:
        config: a TrainConfig.
        resume: continue from `out_dir/checkpoint.keras` if there is one.
        log: function for progress lines.
        callbacks: extra Keras callbacks.
        command: the command line that started the run, recorded for the model card.

    Returns:
        dict: best epoch and value, final epoch, run folder, and the history rows.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError("fit expects a TrainConfig (see humanmatting.training.load_config)")
    if not config.data:
        raise ValueError("config.data is empty: name at least one dataset")
    run_dir = Path(config.out_dir)
    make_needs(config, log=log)
    resume = _check_inputs(config, run_dir, resume, log)
    run_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    if not resume or not (run_dir / "config.yaml").exists():
        with atomic_path(run_dir / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        if command:
            with atomic_path(run_dir / "command.txt") as tmp:
                tmp.write_text(command + "\n")
    elif command:  # a resumed run: the card lists every command that trained it
        previous = (run_dir / "command.txt").read_text() if (
            run_dir / "command.txt").exists() else ""
        with atomic_path(run_dir / "command.txt") as tmp:
            tmp.write_text(previous + command + "\n")

    keras.utils.set_random_seed(config.seed)
    if _on_tensorflow():
        import tensorflow as tf

        if config.threads:
            tf.config.threading.set_intra_op_parallelism_threads(config.threads)
            tf.config.threading.set_inter_op_parallelism_threads(config.threads)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
    precision = choose_precision(config)
    previous_policy = keras.mixed_precision.global_policy()
    strategy = make_strategy(config.strategy, config.devices)
    preset = get_preset(config.model)
    input_spec, output_spec = preset.input, preset.output
    sizes = [tuple(s) for s in config.sizes]
    train_store, weights, val_store, val_kinds, backgrounds = build_data(config, log)
    steps = config.steps_per_epoch or max(1, len(train_store) // config.batch_size)
    try:
        keras.mixed_precision.set_global_policy(precision)
        with strategy.scope():
            model, state = _initial_model(
                config, run_dir, resume, log, lambda: _calibration_images(
                    config, train_store, weights, input_spec, sizes, backgrounds))
            initial_epoch = state["epoch"]
            if config.freeze_batchnorm:
                log(f"froze {freeze_batchnorm(model)} BatchNorm layers")
            if initial_epoch == 0 or not model.optimizer:
                schedule = CosineWithWarmup(config.learning_rate,
                                            int(config.warmup_epochs * steps),
                                            config.epochs * steps)
                optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
                if precision == "mixed_float16":
                    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
                loss = make_loss(preset, config.loss)
                metrics = [PersonIoU(), AlphaMAE(),
                           *loss_term_metrics(primary_loss(loss, preset))]
                if output_spec.primary:   # logged as <primary>_iou, <primary>_loss_<term>
                    metrics = {output_spec.primary: metrics}
                model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                              jit_compile=choose_jit(config, strategy, model))
        if initial_epoch >= config.epochs:
            log(f"{run_dir}: already trained for {initial_epoch} epochs")
            return _summary(run_dir, state)
        augment = pipeline.AugmentConfig(**config.augment)
        if input_spec.trimap and not augment.trimap:   # a trimap model trains on random ones
            import dataclasses

            augment = dataclasses.replace(augment, trimap=True)
        train_ds = pipeline.train_dataset(
            train_store, weights, input_spec=input_spec, batch_size=config.batch_size,
            steps_per_epoch=steps, epochs=config.epochs, seed=config.seed, sizes=sizes,
            augment=augment, backgrounds=backgrounds, initial_epoch=initial_epoch,
            output_spec=output_spec, workers=config.workers,
            teacher=make_teacher(config, input_spec), distil_weight=config.distil_weight,
            distil_sources=distil_sources(config))
        val_batches = pipeline.ValBatches(val_store, input_spec=input_spec, sizes=sizes,
                                          output_spec=output_spec)
        val_ds = (pipeline.as_tf_dataset(val_batches, input_spec, output_spec, epochs=1)
                  if _on_tensorflow() else val_batches)
        validate = validation_epochs(config.epochs, config.validate_every)
        validated = [e - 1 for e in validate]
        callbacks = [KindValidation(val_store, val_kinds, input_spec=input_spec,
                                    output_spec=output_spec, sizes=sizes, validated=validated),
                     RunState(run_dir, config.monitor, config.early_stopping_patience, state,
                              keep_epochs=config.keep_epochs, validated=validated),
                     *callbacks, TimeLimit(config.max_minutes, log),
                     EpochBar(initial_epoch, config.epochs, config.monitor)]
        if _on_tensorflow():   # TensorBoard's writers are TensorFlow's
            grid_images, grid_targets = val_batches[0]
            if isinstance(grid_targets, dict):
                grid_targets = grid_targets[output_spec.primary]
            callbacks[2:2] = [
                keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False,
                                            update_freq="epoch"),
                ImageGrid(run_dir / "logs", grid_images[:8], grid_targets[:8])]
        log(f"training {config.model} ({precision}, {strategy.num_replicas_in_sync} replica(s)) "
            f"for epochs {initial_epoch}..{config.epochs - 1}, {steps} steps of "
            f"{config.batch_size}")
        model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                  initial_epoch=initial_epoch, validation_freq=validate,
                  steps_per_epoch=steps if isinstance(train_ds, tf_dataset_types()) else None,
                  callbacks=callbacks,
                  shuffle=False,   # the pipeline's plan orders the batches
                  verbose=2 if os.environ.get("CI") or not os.isatty(1) else 1)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    state = json.loads((run_dir / "state.json").read_text())
    summary = _summary(run_dir, state)
    summary["replicas"] = strategy.num_replicas_in_sync
    summary["precision"] = precision
    if config.export and not _on_tensorflow():
        log(f"export: skipped on the {keras.backend.backend()} backend (it needs TensorFlow); "
            f"release {run_dir / 'best.weights.h5'} with `humanmatting train` on TensorFlow "
            "and --resume, or `humanmatting export`")
    elif config.export and (run_dir / "best.weights.h5").exists():
        from humanmatting.training.export import export_release

        summary["release"] = export_release(config, log=log)
    return summary


def _summary(run_dir, state):
    history = list(csv.DictReader((run_dir / "history.csv").open())) if (
        run_dir / "history.csv").exists() else []
    return {"run_dir": str(run_dir), "epochs_done": state.get("epoch", 0),
            "best_epoch": state.get("best_epoch"), "best": state.get("best"),
            "history": history}


def release_model(config, *, log=print):
    """The deploy-form model a run releases: its best epoch or, with `release_epochs`, the
    average of those kept epochs; then averaged with the `release_mix` files, if any."""
    run_dir = Path(config.out_dir)
    if config.release_epochs:
        first, last = config.release_epochs
        training = [run_dir / "epochs" / f"ep{e:03d}.weights.h5" for e in range(first, last + 1)]
        what = f"release_epochs {first}-{last}"
    else:
        training, what = [run_dir / "best.weights.h5"], "the best epoch"
    missing = [p for p in training if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such file ({what} of {run_dir}; has the "
                                "run reached it?)")
    return average(config.model, weights=config.release_mix, training_weights=training,
                   arch=config.overrides, log=log)


def describe_release(config):
    """What `release_model` releases, in words (for cards and logs)."""
    if config.release_epochs:
        first, last = config.release_epochs
        what = (f"the average of epochs {first}-{last} (0-based)" if first < last
                else f"epoch {first} (0-based)")
    else:
        what = f"the best epoch by {config.monitor}"
    if config.release_mix:
        what += (f", averaged with {len(config.release_mix)} deploy-form file(s) "
                 f"({', '.join(config.release_mix)}), one ingredient each")
    if config.release_zoom:
        what += ", as the model's zoom weights"
    return what
