"""Export to SavedModel, ONNX and TFLite, and check the exported file against Keras.

- SavedModel: Keras 3 `model.export(format="tf_saved_model")`, a `serve` endpoint with batch,
  height and width dynamic.
- ONNX: `model.export(format="onnx")` (tf2onnx), height and width dynamic.
- TFLite: converted from the SavedModel; the input is resizable (shape signature
  [-1, -1, -1, C]); `quantize="fp16"` stores float16 weights, `quantize="int8"` quantizes
  weights and activations with a representative set (your images, else generated ones).

A model in training form is fused first; multi-output models export their "fused" output.

Example:
    >>> export("likeunet_night", "onnx", "night.onnx", check=True)
"""

import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from humanmatting.fusion import fuse, is_deploy
from humanmatting.io import atomic_path, check_file
from humanmatting.registry import create_model, get_preset
from humanmatting.specs import InputSpec, OutputSpec, person_probability, to_model_input

FORMATS = ("saved_model", "onnx", "tflite")
QUANTIZATIONS = (None, "fp16", "int8")


def deployable(model):
    """A registered name or a keras.Model -> (deploy-form single-output model, name)."""
    if isinstance(model, str):
        name = model
        model = create_model(model)
    else:
        name = model.name
    if not is_deploy(model):
        model = fuse(model)
    if isinstance(model.output, dict):
        try:
            key = get_preset(name).output.primary or "fused"
        except ValueError:
            key = "fused"
        model = keras.Model(model.inputs, model.output[key], name=model.name)
    # Keras' ONNX export needs a model that has been called once.
    model(np.zeros((1, 64, 64, model.input_shape[-1]), np.float32))
    return model, name


def single_output_spec(spec):
    """The OutputSpec of an exported model: its primary map alone."""
    return OutputSpec(kind=OutputSpec.of(spec).kind)


def _calibration_trimap(rgb):
    """A trimap for a calibration image of a trimap model: a band around its mid-gray edge."""
    import cv2

    from humanmatting.specs import make_trimap

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return make_trimap(gray >= np.median(gray), erode=4, dilate=4)


def _write_saved_model(model, path):
    model.export(str(path), format="tf_saved_model", verbose=False)


def _representative(images, input_spec, size=(256, 256), count=16):
    """Calibration inputs: every user image resized to `size`, topped up with smooth random
    images to at least `count`."""
    import cv2

    from humanmatting.io import load_rgb

    out = []
    for image in list(images or []):
        rgb = cv2.resize(load_rgb(image), size[::-1], interpolation=cv2.INTER_AREA)
        out.append(rgb)
    rng = np.random.default_rng(0)
    while len(out) < count:
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        out.append(cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC))
    from humanmatting.progress import bar

    for rgb in bar(out, desc="int8 calibration"):
        trimap = _calibration_trimap(rgb) if input_spec.trimap else None
        yield [to_model_input(rgb, input_spec, trimap)[None]]


def _write_tflite(model, path, quantize, representative, input_spec):
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        _write_saved_model(model, Path(tmp) / "sm")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "sm"))
        if quantize == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: _representative(
                representative, input_spec)
        data = converter.convert()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


FILE_SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite"}


def check_output(output, fmt):
    """Raises before any work is done if `output` cannot take a `fmt` export: an existing
    folder where a file goes, an existing path for a SavedModel folder, or the other format's
    file extension (`--format tflite --output model.onnx` is taken for a slip)."""
    output = Path(output)
    suffix = output.suffix.lower()
    wrong = {s for f, s in FILE_SUFFIXES.items() if f != fmt}
    if suffix in wrong:
        expected = (f"a {FILE_SUFFIXES[fmt]} file" if fmt in FILE_SUFFIXES
                    else "a folder, not a file name")
        raise ValueError(f"{output}: the {fmt} format writes {expected}, not {suffix}")
    if fmt == "saved_model" and output.exists():
        raise FileExistsError(f"{output} exists; remove it or choose another path")
    if fmt != "saved_model" and output.is_dir():
        raise FileExistsError(f"{output} is a folder; give a file path such as "
                              f"{output / ('model' + FILE_SUFFIXES[fmt])}")


def export(model, fmt, output, *, quantize=None, representative=None, check=False,
           input_spec=None):
    """Exports a model.

    Args:
        model: registered name or keras.Model.
        fmt: "saved_model", "onnx" or "tflite".
        output: destination (a folder for saved_model, a file otherwise).
        quantize: None, "fp16" or "int8" (TFLite only).
        representative: images (paths or arrays) to calibrate int8 with.
        check: run the exported file with its own runtime and compare with Keras.
        input_spec: input convention when `model` is a keras.Model (default: from the
            registry by name, else RGB [0, 1]).

    Returns:
        dict: path, format, quantize, and with check the comparison (max |diff| of the person
        probability and IoU of the thresholded alphas on a non-square input).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of fp16, int8, got {quantize!r}")
    if quantize and fmt != "tflite":
        raise ValueError("quantize applies to the tflite format only")
    check_output(output, fmt)
    keras_model, name = deployable(model)
    output_spec = None
    if input_spec is None:
        try:
            input_spec = get_preset(name).input
            output_spec = single_output_spec(get_preset(name).output)
        except ValueError:
            input_spec = InputSpec(channels=keras_model.input_shape[-1])
    output = Path(output)
    if fmt == "saved_model":
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=output.parent if str(output.parent)
                                    else "."))
        try:
            _write_saved_model(keras_model, tmp / "model")
            os.replace(tmp / "model", output)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    elif fmt == "onnx":
        with atomic_path(output) as tmp:
            keras_model.export(str(tmp), format="onnx", verbose=False)
    else:
        _write_tflite(keras_model, output, quantize, representative, input_spec)
    result = {"path": str(output), "format": fmt, "quantize": quantize}
    if check:
        result["check"] = compare_with_keras(keras_model, output, fmt, input_spec,
                                             output_spec=output_spec)
    return result


def load_runner(path, fmt, threads=None, output_spec=None):
    """A callable running an exported model on (1, H, W, C) float32 -> person probability
    (by `output_spec`, a single-output OutputSpec; by default the channels decide)."""
    def _person(output):
        return person_probability(np.asarray(output, np.float32), output_spec)

    if fmt == "saved_model":
        import tensorflow as tf

        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such SavedModel folder")
        if not Path(path).is_dir():
            raise ValueError(f"{path}: is a file; a SavedModel is a folder")
        try:
            signatures = tf.saved_model.load(str(path)).signatures
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a SavedModel ({_first_line(err)})") from None
        if "serve" not in signatures:
            raise ValueError(f"{path}: the SavedModel has no 'serve' endpoint (it has "
                             f"{sorted(signatures) or 'none'})")
        serve = signatures["serve"]
        return lambda x: _person(list(serve(tf.constant(x)).values())[0].numpy())
    if fmt == "onnx":
        import onnxruntime as ort

        check_file(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
        except Exception as err:   # onnxruntime's own classes (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{path}: not an ONNX model onnxruntime can load "
                             f"({_first_line(err)})") from None
        input_name = session.get_inputs()[0].name
        return lambda x: _person(session.run(None, {input_name: x})[0])
    if fmt == "tflite":
        return TFLiteRunner(path, threads, output_spec)
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def _first_line(err, limit=160):
    """A runtime's error text on one line, cut to `limit` characters."""
    return " ".join(str(err).split())[:limit]


class TFLiteRunner:
    """Runs a TFLite file at any input size (the input tensor is resized when it changes).

    The interpreter applies TFLite's default XNNPACK delegate. Some int8 files (seen with
    randomly initialised models: a conv whose quantisation scales XNNPACK rejects) make it fail
    to prepare; the runner then warns and goes on with TFLite's built-in kernels (slower, same
    results up to rounding) instead of failing: `delegated` says which.
    """

    def __init__(self, path, threads=None, output_spec=None):
        self.path = str(path)
        self.output_spec = output_spec
        # the interpreter's own default runs XNNPACK on one thread; up to 4 of this machine's
        # cores is what MediaPipe uses for its CPU graphs
        self.threads = threads or min(4, os.cpu_count() or 1)
        self.delegated = True
        self.interpreter = self._interpreter()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.shape = None

    def _interpreter(self):
        import warnings

        import tensorflow as tf

        check_file(self.path)
        kwargs = {} if self.delegated else {"experimental_op_resolver_type": (
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)}
        try:
            with warnings.catch_warnings():
                # tf.lite.Interpreter warns on every construction that it moves to the
                # ai-edge-litert package; the API is the same and TF's still works
                # (DESIGN.md), so the notice is ours to act on, not the user's
                warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter "
                                        r"is deprecated", category=UserWarning)
                return tf.lite.Interpreter(model_path=self.path, num_threads=self.threads,
                                           **kwargs)
        except ValueError as err:
            # TFLite's message quotes the file's first bytes, cut at the first NUL
            reason = ("no TFL3 identifier in its header" if "identifier" in str(err)
                      else _first_line(err, 120))
            raise ValueError(f"{self.path}: not a TFLite model ({reason})") from None

    def _allocate(self, shape):
        self.interpreter.resize_tensor_input(self.input["index"], shape)
        self.interpreter.allocate_tensors()

    def __call__(self, x):
        """(1, H, W, C) float32 -> (1, H, W) person probability."""
        return person_probability(np.asarray(self.raw(x), np.float32), self.output_spec)

    def raw(self, x):
        """(1, H, W, C) float32 -> the model's output as it is."""
        if self.shape != x.shape:
            try:
                self._allocate(x.shape)
            except RuntimeError as err:
                if not self.delegated or "XNNPACK" not in str(err):
                    raise
                import warnings

                warnings.warn(f"{self.path}: TFLite's XNNPACK delegate cannot prepare this "
                              f"model ({str(err).strip()}); running it with the built-in "
                              f"kernels instead (slower)", RuntimeWarning, stacklevel=2)
                self.delegated = False
                self.interpreter = self._interpreter()
                self._allocate(x.shape)
            self.shape = x.shape
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])


def compare_with_keras(model, path, fmt, input_spec, size=(96, 160), image=None,
                       output_spec=None):
    """Max |diff| of person probabilities and IoU of thresholded alphas, on a non-square
    input: `image` ((h, w, 3) uint8 RGB, e.g. a photo) resized to `size`, else smooth random
    structure."""
    import cv2

    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
        interp = cv2.INTER_CUBIC
    else:
        interp = cv2.INTER_AREA
    rgb = cv2.resize(image, size[::-1], interpolation=interp)
    trimap = _calibration_trimap(rgb) if input_spec.trimap else None
    x = to_model_input(rgb, input_spec, trimap)[None]
    ref = person_probability(np.asarray(model(x, training=False)), output_spec)
    got = load_runner(path, fmt, output_spec=output_spec)(x)
    p, g = got >= 0.5, ref >= 0.5
    union = np.logical_or(p, g).sum()
    return {"max_abs_diff": float(np.abs(got - ref).max()),
            "iou_thresholded": 1.0 if union == 0 else float(np.logical_and(p, g).sum() / union),
            "input_shape": list(x.shape)}
