"""Typed training configuration, read from YAML with `key=value` overrides."""

import dataclasses
import typing
from pathlib import Path

from humanmatting.registry import SIZES_256


@dataclasses.dataclass
class DataSource:
    """One dataset of the training mix.

    Attributes:
        path: dataset folder or list file.
        kind: "folder", "aisegment", "list" or "backgrounds" (people-free images, all
            background: negatives; their training part is also pasted behind people).
        weight: sampling weight in the mix.
        photos: the kind of photo it holds, for per-kind validation and reports
            ("portraits", "full-body", "scenes", "groups", "people-free"; default: the
            folder's name). Validation reports each kind and picks the best epoch by their
            mean, so no one kind decides.
        val_fraction: this dataset's share held back (default: the config's).
        val_groups: split by sequence instead: the stem prefixes (before the first "_")
            that are validation (video frames, as CamVid's).
    """

    path: str
    kind: str = "folder"
    weight: float = 1.0
    photos: str = ""
    val_fraction: typing.Optional[float] = None
    val_groups: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.weight < 0:
            raise ValueError(f"{self.path}: weight must be >= 0, got {self.weight}")
        if self.val_fraction is not None and not 0 <= self.val_fraction < 1:
            raise ValueError(f"{self.path}: val_fraction must be in [0, 1), got "
                             f"{self.val_fraction}")
        self.photos = self.photos or (
            "people-free" if self.kind == "backgrounds" else Path(self.path).name)


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; saved next to its checkpoints.

    Attributes:
        model: registered model name; trained in its training form (deploy=False).
        overrides: architecture overrides for the builder.
        init_from: weights to start from: a `.keras` checkpoint, a training-form
            `.weights.h5` of `init_from_model` (layers matched by name and adapted, see
            `humanmatting.training.transfer`), or a released deploy-form `.weights.h5` of
            `model` itself (unfused, BatchNorm statistics from a few training batches).
            Weights of `model` itself are read with its `overrides` (an earlier stage of the
            same run shape), except with `init_grow`.
        init_from_model: the registered model (training form) that `init_from` weights
            belong to (default: `model`).
        data: the training mix; each dataset is split by `val_fraction` (hash of the stem).
        backgrounds: folder of people-free images to composite people onto (or "").
        val_fraction: fraction of each dataset held back for validation.
        sizes: (H, W) bucket table, multiples of 32.
        batch_size, epochs, steps_per_epoch (0: one pass over the training pairs).
        learning_rate, warmup_epochs, weight_decay: AdamW with linear warm-up, cosine decay.
        loss: `kind` (matting, the default; bce; portrait: `humanmatting.losses.make_loss`)
            and that loss's weights.
        augment: AugmentConfig fields.
        seed: everything random derives from it.
        precision: "auto" (mixed_float16 on GPU, float32 on CPU), "float32" or
            "mixed_float16".
        jit_compile: "auto" (XLA where it applies), "true" or "false".
        deterministic: TensorFlow op determinism, which makes a resumed run bit-identical to
            an uninterrupted one; TensorFlow then turns XLA off (about 1.3x slower here).
        strategy: "default", "mirrored" or "multi_worker" (TF_CONFIG names the workers).
        devices: devices for the mirrored strategy (default: every GPU, else the CPU), e.g.
            ["/cpu:0", "/cpu:1"] with two logical CPU devices.
        early_stopping_patience: validated epochs without a better monitored value before
            stopping (0 = never).
        validate_every: validate (and so choose the best epoch) after every this many epochs
            and after the last one (`fit.validation_epochs`); each validation is two passes
            over the validation split (Keras' losses, then the per-kind IoU).
        monitor: validation metric to select the best epoch by (higher is better); the
            default `val_iou_mix` is the mean over the kinds of photo of each kind's mean
            per-image IoU (`fit.KindValidation`).
        out_dir: run folder: checkpoints, logs, best model.
        export: after training, fuse the best model and write it to `export_dir` with a card.
        export_dir: where released weights go.
        peer_tflite: MediaPipe-style TFLite file to score on the same validation images for
            the model card ("" to skip).
        image_cache_short_side: images are held in memory with at most this short side.
        threads: TensorFlow intra-op threads (0: TensorFlow's default, all cores); set it
            when several runs share a machine.
        workers: threads making training batches (PyDataset path; the tf.data map is
            parallel by itself).
        init_grow: with a deploy-form `init_from` of fewer blocks (Night-Lite's depths),
            start the new residual blocks near the identity (`transfer.init_from_deploy`).
        teacher: a registered model whose person probability on each training input is
            blended into the target (knowledge distillation; "" for none);
            teacher_weights: its deploy-form weights ("default": its release);
            distil_weight: the teacher's share w: alpha <- (1 - w) alpha + w teacher;
            distil_photos: only samples of these kinds of photo (`DataSource.photos`) are
            blended (empty: all), e.g. the kinds the teacher is already good at; then frames
            rearranged by zoom-out or pasted people are not blended either.
        freeze_batchnorm: every BatchNorm in inference mode with fixed statistics (fine-tuning
            a converged model with small batches).
        keep_epochs: also keep every epoch's training-form weights, `epochs/epNNN.weights.h5`
            (for `humanmatting soup --training-weights`, weight averaging).
        max_minutes: stop after the first epoch that ends past this many minutes of this
            session's training (0: no limit); `--resume` goes on from there.
        release_epochs: [first, last]: the release is the average of these kept epochs
            (inclusive, `keep_epochs`; stochastic weight averaging; [k, k]: epoch k alone)
            instead of the best epoch.
        release_mix: deploy-form files averaged with that, one ingredient each (a file listed
            twice counts twice), e.g. the starting release to keep what it already does well.
            `humanmatting release --config` and `export: true` release what these two say
            (`fit.release_model`), so a config is the whole recipe.
        release_zoom: the run makes the model's zoom weights (`<name>.zoom.weights.h5`: what
            `Matter`'s second look at photos of small people runs with), not its weights.
        needs: steps made before training when their output is missing: the earlier stages
            a fine-tune starts from (`{train: CONFIG, output: FILE}`), pseudo alphas
            (`{refine_masks: DATA, out: FOLDER}`), a file from the repository's history
            (`{git: REV:PATH, output: FILE}`), so that one command reproduces a multi-stage
            release (`humanmatting.training.needs`).
    """

    model: str = "likeunet_night"
    overrides: dict = dataclasses.field(default_factory=dict)
    init_from: str = ""
    init_from_model: str = ""
    data: list = dataclasses.field(default_factory=list)
    backgrounds: str = ""
    val_fraction: float = 0.1
    sizes: list = dataclasses.field(default_factory=lambda: [list(s) for s in SIZES_256])
    batch_size: int = 8
    epochs: int = 20
    steps_per_epoch: int = 0
    learning_rate: float = 2e-3
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-4
    loss: dict = dataclasses.field(default_factory=dict)
    augment: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    precision: str = "auto"
    jit_compile: str = "auto"
    deterministic: bool = True
    strategy: str = "default"
    devices: list = dataclasses.field(default_factory=list)
    early_stopping_patience: int = 0
    validate_every: int = 1
    monitor: str = "val_iou_mix"
    out_dir: str = "runs/likeunet_night"
    export: bool = False
    export_dir: str = "models"
    peer_tflite: str = ""
    image_cache_short_side: int = 384
    threads: int = 0
    workers: int = 2
    init_grow: bool = False
    teacher: str = ""
    teacher_weights: str = "default"
    distil_weight: float = 0.5
    distil_photos: list = dataclasses.field(default_factory=list)
    freeze_batchnorm: bool = False
    keep_epochs: bool = False
    max_minutes: float = 0.0
    release_epochs: list = dataclasses.field(default_factory=list)
    release_mix: list = dataclasses.field(default_factory=list)
    release_zoom: bool = False
    needs: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.data = [d if isinstance(d, DataSource) else DataSource(**d) for d in self.data]
        self.sizes = [list(map(int, s)) for s in self.sizes]
        for name, allowed in (("precision", ("auto", "float32", "mixed_float16")),
                              ("jit_compile", ("auto", "true", "false")),
                              ("strategy", ("default", "mirrored", "multi_worker"))):
            if str(getattr(self, name)) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not self.sizes:
            raise ValueError("sizes must list at least one [height, width]")
        for h, w in self.sizes:
            if h <= 0 or w <= 0 or h % 32 or w % 32:
                raise ValueError(f"size {h}x{w} is not accepted: positive multiples of 32 only")
        for name, least, strict in _RANGES:
            value = getattr(self, name)
            kind = int if isinstance(getattr(TrainConfig, name), int) else (int, float)
            if isinstance(value, str):   # PyYAML reads `1e-3` (no dot) as a string
                try:
                    value = _coerce(value, int if kind is int else float)
                except ValueError:
                    pass
                setattr(self, name, value)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, "
                                 f"got {value!r}")
            if value < least or (strict and value == least):
                raise ValueError(f"{name} must be {'>' if strict else '>='} {least}, "
                                 f"got {value!r}")
        if not self.val_fraction < 1:
            raise ValueError(f"val_fraction must be below 1, got {self.val_fraction!r}")
        if self.distil_weight > 1:
            raise ValueError(f"distil_weight must be in [0, 1], got {self.distil_weight!r}")
        epochs = self.release_epochs
        if epochs and not (len(epochs) == 2 and all(
                isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in epochs)
                and epochs[0] <= epochs[1]):
            raise ValueError("release_epochs must be [first, last], two epoch numbers from 0 "
                             f"with first <= last, got {epochs!r}")
        if epochs and not self.keep_epochs:
            raise ValueError("release_epochs needs keep_epochs: true (the epochs' weights)")
        if not all(isinstance(f, str) and f for f in self.release_mix):
            raise ValueError(f"release_mix must list weights files, got {self.release_mix!r}")
        from humanmatting.training.needs import check_step

        if not isinstance(self.needs, list):
            raise ValueError(f"needs must be a list of steps, got {self.needs!r}")
        for step in self.needs:
            check_step(step)

    def to_dict(self):
        return dataclasses.asdict(self)


# (field, least value, whether the least value itself is refused)
_RANGES = (("val_fraction", 0, True), ("batch_size", 1, False), ("epochs", 1, False),
           ("steps_per_epoch", 0, False), ("learning_rate", 0, True),
           ("warmup_epochs", 0, False), ("weight_decay", 0, False), ("seed", 0, False),
           ("early_stopping_patience", 0, False), ("image_cache_short_side", 32, False),
           ("threads", 0, False), ("workers", 1, False), ("distil_weight", 0, False),
           ("max_minutes", 0, False), ("validate_every", 1, False))


def _coerce(value, annotation):
    """Parses a `key=value` string into the field's type."""
    import yaml

    if annotation in (int, "int"):
        return int(value)
    if annotation in (float, "float"):
        return float(value)
    if annotation in (bool, "bool"):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if annotation in (str, "str"):
        return value
    return yaml.safe_load(value)


def load_config(path=None, overrides=()):
    """Reads a YAML config (or the defaults) and applies `key=value` overrides.

    Dotted keys reach into dict fields: `loss.iou_weight=1.0`, `augment.rotation=10`.

    Raises:
        FileNotFoundError: the config file is missing.
        ValueError: an unknown key or a value of the wrong type.
    """
    import yaml

    raw = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a text file (a YAML config is expected)") from None
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of config keys")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    unknown = set(raw) - set(fields)
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        top, _, sub = key.partition(".")
        if top not in fields:
            raise ValueError(f"unknown config key {top!r}")
        if sub:
            raw.setdefault(top, {})[sub] = yaml.safe_load(value)
        else:
            try:
                raw[top] = _coerce(value, hints[top])
            except ValueError as err:
                raise ValueError(f"{key}: {err}") from None
    return TrainConfig(**raw)
