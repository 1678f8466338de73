"""Model registry: names to builders, input conventions and shipped weights.

Each registered variant is a small function that only sets architecture arguments; what goes with
it (weights file, its sha256, how images are fed in, what comes out) is data on its `Preset`.
"""

import dataclasses
import hashlib
import math
import os
import re
import sys
import warnings
from pathlib import Path

from humanmatting.specs import SIZES_256, SIZES_320, TASKS, InputSpec, OutputSpec  # noqa: F401 (re-exported)

_REGISTRY = {}

#: The model that `Matter`, `demo.py` and `humanmatting predict` use when none is named: the
#: released model with the best mean validation IoU over portraits and full-body photos
#: (likeunet_night 0.9690 / 0.9413; Dark 0.9691 / 0.9411, Dark-Light 0.9682 / 0.9405,
#: Night-Lite 0.954 / 0.933, the original release 0.967 / 0.298; see the model cards).
DEFAULT_MODEL = "likeunet_night"
#: The grayscale model that `demo.py --gray` uses: the best gray one.
DEFAULT_GRAY_MODEL = "likeunet_dark"


def check_scales(scales):
    """Validates test-time scales (positive numbers); returns them as a tuple of floats."""
    try:
        scales = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise ValueError(f"scales must be numbers, got {scales!r}") from None
    if not scales or not all(math.isfinite(s) and 0 < s <= 4 for s in scales):
        raise ValueError(f"scales must be one or more numbers in (0, 4], got {scales}")
    return scales


def check_zoom(zoom):
    """Validates `Matter`'s zoom: None / False (off) or (below, scales): below a share of the
    image in (0, 1), scales as `check_scales`. Returns None or (float, tuple of floats)."""
    if zoom is None or zoom is False:
        return None
    try:
        below, scales = zoom
        below = float(below)
    except (TypeError, ValueError):
        raise ValueError(f"zoom must be (below, scales), e.g. (0.3, (1.2, 1.8)), got "
                         f"{zoom!r}") from None
    if not 0 < below < 1:
        raise ValueError(f"zoom's share of the image must be in (0, 1), got {below}")
    return below, check_scales(scales)


def check_min_region(value, name="min_region", what="a fraction of the image"):
    """Validates a person-region threshold in [0, 1) (a minimum size as a fraction of the
    image, or a minimum mean probability: `what`); returns it as a float. `name` starts the
    error message (empty for a command-line option, which argparse names itself)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0 <= number < 1:
        raise ValueError(f"{name} must be {what} in [0, 1), got {value!r}".lstrip())
    return number


def check_max_side(value, name="max_side"):
    """Validates `Matter`'s `max_side`: 0 (run at a size from the model's table) or the
    largest long side, in pixels (>= 32), at which an image runs at its own size."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number != value and str(number) != str(value).strip():
        number = -1
    if not (number == 0 or number >= 32):
        raise ValueError(f"{name} must be 0 (the model's size table) or a long side of at "
                         f"least 32 pixels, got {value!r}".lstrip())
    return number


def check_min_confidence(value, name="min_confidence"):
    """Validates a minimum mean person probability of a region, in [0, 1)."""
    return check_min_region(value, name, what="a probability")


@dataclasses.dataclass(frozen=True)
class Preset:
    """Everything known about a registered model besides its architecture.

    Attributes:
        name: registered name.
        builder: function(**overrides) -> keras.Model.
        input: the input convention (`humanmatting.specs.InputSpec`).
        output: what the model gives (`humanmatting.specs.OutputSpec`; a kind name is
            accepted and converted).
        task: "segmentation" or "trimap_matting": the default loss, metrics and evaluation.
        weights: file name under the weights directory, or None when none is released.
        sha256: hex digest of the weights file; when None, the digest listed for the file in
            the weights folder's SHA256SUMS (written by the release export) is checked.
        description: one line for `humanmatting list`.
        metrics: validation figures from the model card.
        flip: whether `Matter` averages each still image's alpha with its mirror image's by
            default (test-time augmentation, twice the compute; video and webcam frames in
            `demo.py` never do).
        scales: multiples of the chosen size that `Matter` runs each still image at by
            default, averaging the alphas (test-time multi-scale; video and webcam frames in
            `demo.py` run at (1.0,) alone).
        refine: None, or the matting method ("cf" closed form, "knn") with which `Matter`
            refines each still image's alpha by default: a trimap from the alpha (a thin
            unknown band around its 0.5 edge) and matting of the image inside the band.
        zoom: None, or `Matter`'s default (below, scales) for still images whose people are
            small: when the person pixels of the first passes (at `scales`) cover less than
            `below` of the image (and more than none), the image is run again at these
            larger scales and that answer replaces the first.
        min_region: `Matter`'s default for dropping person regions smaller than this
            fraction of the image (`inference.remove_small_regions`; 0 = keep every region).
        min_confidence: `Matter`'s default for dropping person regions whose mean person
            probability (the model's, before refinement) is under this (0 = keep them).
        max_side: `Matter`'s default for where still images run: 0 at the size from the
            input's table nearest each image's aspect ratio; N > 0 at the image's own size
            (each side rounded to the divisor), scaled down first to a long side of N (trimap
            matting: the detail of the band is the task).
        release_dtype: how the released weights file stores its arrays: "float32", or
            "float16" for a larger model (half the bytes; loaded back into float32 variables,
            its output moving by about 1e-3).
        foreign_loader: None, or function(training-form model, path) that loads a checkpoint
            of the family's original code (`.pth`, `.safetensors`, `.npz` state dicts) into
            it; `create_model(name, weights=that file)` then builds the training form, loads
            it and fuses it when `deploy`.
    """

    name: str
    builder: object
    input: InputSpec = InputSpec()
    output: OutputSpec = OutputSpec()
    task: str = "segmentation"
    weights: str | None = None
    sha256: str | None = None
    description: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)
    flip: bool = False
    scales: tuple = (1.0,)
    refine: str | None = None
    zoom: tuple | None = None
    min_region: float = 0.0
    min_confidence: float = 0.0
    max_side: int = 0
    release_dtype: str = "float32"
    foreign_loader: object = None

    def __post_init__(self):
        object.__setattr__(self, "output", OutputSpec.of(self.output))
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task must be one of {TASKS}, got {self.task!r}")
        object.__setattr__(self, "zoom", check_zoom(self.zoom))
        if self.release_dtype not in ("float32", "float16"):
            raise ValueError(f"{self.name}: release_dtype must be 'float32' or 'float16', "
                             f"got {self.release_dtype!r}")
        if (self.task == "trimap_matting") != self.input.trimap:
            raise ValueError(f"{self.name}: a trimap_matting model takes a trimap input and "
                             "a segmentation model none")


def weights_dir():
    """The folder of shipped weights.

    $HUMANMATTING_WEIGHTS when set; else the repository's `models/` (source checkout or
    editable install); else `<prefix>/share/humanmatting/models` (regular install).
    """
    env = os.environ.get("HUMANMATTING_WEIGHTS")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent / "models"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "humanmatting" / "models"


def register_model(fn=None, **preset_fields):
    """Registers a variant function under its own name.

    Use bare (`@register_model`) or with preset data (`@register_model(input=InputSpec(...),
    weights="file.weights.h5")`). The function takes keyword overrides and returns a Model.
    """

    def wrap(func):
        name = func.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = Preset(name=name, builder=func, **preset_fields)
        return func

    return wrap(fn) if fn is not None else wrap


def _ensure_registered():
    # Registration happens when the model modules are imported; importing them here rather
    # than at package import keeps `import humanmatting` cheap.
    import humanmatting.models  # noqa: F401


def list_models():
    """Names of all registered models, sorted."""
    _ensure_registered()
    return sorted(_REGISTRY)


def released_models():
    """Names of the registered models whose weights ship in `weights_dir()`, sorted."""
    _ensure_registered()
    return [name for name, preset in sorted(_REGISTRY.items())
            if preset.weights and (weights_dir() / preset.weights).is_file()]


def get_preset(name):
    """The `Preset` registered under `name`; ValueError naming the known ones otherwise."""
    _ensure_registered()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: "
                         f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def sha256_file(path):
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def released_sha256(folder):
    """{file name: sha256} from `folder/SHA256SUMS` (the `sha256sum` format), if present."""
    sums = Path(folder) / "SHA256SUMS"
    if not sums.is_file():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1].lstrip("*")] = parts[0]
    return out


def resolve_weights(preset, weights):
    """Path of the weights to load for `weights` ("default", None or a path), or None."""
    if weights is None:
        return None
    if weights == "default":
        if preset.weights is None:
            warnings.warn(f"model {preset.name!r} has no released weights yet; it is randomly "
                          "initialised", stacklevel=3)
            return None
        path = weights_dir() / preset.weights
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} for model {preset.name!r} is missing; "
                                    "set HUMANMATTING_WEIGHTS to the folder that holds it")
        expected = preset.sha256 or released_sha256(path.parent).get(preset.weights)
        if expected and sha256_file(path) != expected:
            raise ValueError(f"weights file {path} does not match the sha256 registered for "
                             f"{preset.name!r}; the file is corrupt or from another release")
        return path
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    return path


def _released_companion(file_name):
    """A release's optional companion file in the weights folder, checked against the
    folder's SHA256SUMS like the weights; None when there is none."""
    path = weights_dir() / file_name
    if not path.is_file():
        return None
    expected = released_sha256(path.parent).get(path.name)
    if expected and sha256_file(path) != expected:
        raise ValueError(f"{path} does not match its sha256 in SHA256SUMS; the file is corrupt "
                         "or from another release")
    return path


def released_tflite(name, quantize):
    """The released TFLite file of a registered model in a quantized form, or None.

    Such files (`<name>.<quantize>.tflite` in the weights folder, e.g. Night-Lite's int8,
    calibrated on training photographs by `tools/release_tflite.py`) are checked against the
    folder's SHA256SUMS like the weights.
    """
    return _released_companion(f"{name}.{quantize}.tflite")


def zoom_weights_name(name):
    """The file name of a model's released weights for `Matter`'s second look at photos of
    small people (`zoom`)."""
    return f"{name}.zoom.weights.h5"


def released_zoom_weights(name):
    """The released weights that `Matter`'s zoom passes of a registered model run with
    (`<name>.zoom.weights.h5` in the weights folder: the same network fine-tuned for people
    small in the frame, in scenes and groups), or None: the zoom passes use the model's
    own weights. Checked against SHA256SUMS like the weights."""
    return _released_companion(zoom_weights_name(name))


#: checkpoint files of a family's original code, read by its preset's `foreign_loader`
FOREIGN_SUFFIXES = (".pth", ".pt", ".tar", ".safetensors", ".npz")   # .tar: IndexNet's .pth.tar


def create_model(name, *, weights="default", deploy=True, **overrides):
    """Builds a registered model and loads its weights.

    Args:
        name: a name from `list_models()`.
        weights: "default" for the released weights (random with a warning when none are
            released), None for random initialisation, or a path to a `.weights.h5` file saved
            from the same architecture (in either form: a training run's file is loaded into
            the training form and fused when `deploy`), or to a checkpoint of the family's original
            code (`.pth`, `.pt`, `.safetensors`, `.npz`) where the preset has a loader.
        deploy: True for the fused inference form, False for the training form.
        **overrides: architecture arguments passed to the builder.

    Returns:
        An uncompiled keras.Model. Inputs (B, H, W, C) with H and W multiples of 32.

    Example:
        >>> model = create_model("likeunet_dark_light_original")
        >>> model.predict(np.zeros((1, 256, 256, 1), "float32")).shape
        (1, 256, 256, 2)
    """
    preset = get_preset(name)
    path = resolve_weights(preset, weights)
    if path is not None and path.suffix.lower() in FOREIGN_SUFFIXES:
        if preset.foreign_loader is None:
            raise ValueError(f"{path}: {name!r} loads only .weights.h5 files (no loader for "
                             "its original code's checkpoints)")
        model = preset.builder(deploy=False, **overrides)
        preset.foreign_loader(model, path)
        if deploy:
            from humanmatting.fusion import fuse

            model = fuse(model)
        return model
    if path is not None and not deploy and weights == "default":
        raise ValueError(f"the released weights of {name!r} are in deploy form; use deploy=True, "
                         "or weights=None to train from scratch")
    model = preset.builder(deploy=deploy, **overrides)
    if path is None:
        return model
    count = _weight_count(path)
    if deploy and count != len(model.weights):   # a training run's file: load it, then fuse
        training = preset.builder(deploy=False, **overrides)
        if count == len(training.weights):
            from humanmatting.fusion import fuse

            return fuse(_load_weights(training, path, name, False))
    if count != len(model.weights):
        # Keras itself loads a file with more weights than the model without a word (a
        # training-form U^2-Net's BatchNorms are skipped by its deploy form): refuse by count
        other = "training" if deploy else "deploy"
        raise ValueError(f"weights file {path} does not fit model {name!r} (deploy={deploy}): "
                         f"it holds {count} weights, the model has {len(model.weights)}; "
                         f"is it the {other} form (deploy={not deploy}) or another variant?")
    return _load_weights(model, path, name, deploy)


def _load_weights(model, path, name, deploy):
    try:
        model.load_weights(path)
    except (ValueError, KeyError, OSError) as err:
        raise ValueError(f"weights file {path} does not fit model {name!r} "
                         f"(deploy={deploy}): {_load_error_summary(err)}") from err
    return model


def _weight_count(path):
    """How many model weights a `.weights.h5` file holds (not its optimizer's)."""
    import h5py

    found = []
    try:
        with h5py.File(path, "r") as f:   # the model's weights; a compiled model's file also
            for key in ("layers", "vars"):   # holds its optimizer's, which do not count
                if key in f:
                    f[key].visititems(lambda _, item: found.append(1)
                                      if isinstance(item, h5py.Dataset) else None)
    except OSError as err:
        raise ValueError(f"weights file {path}: not a readable .weights.h5 file ({err})") \
            from None
    return len(found)


def _load_error_summary(err):
    """Keras's load error in a line or two: its first line and, for a shape mismatch, the
    variable with both shapes (the full text holds the variable's values, kilobytes of them)."""
    text = str(err).strip()
    summary = text.splitlines()[0] if text else type(err).__name__
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    variable = re.search(r"<Variable path=([^,>]+)", text)
    if shapes:
        where = f"{variable.group(1)}: " if variable else ""
        summary += (f" ({where}the model's shape {shapes.group(1)}, the file's "
                    f"{shapes.group(2)})")
    return summary
