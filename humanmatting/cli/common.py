"""Helpers shared by the command-line front ends."""

import argparse
import contextlib
import os
import sys
from pathlib import Path


def quiet_logs():
    """Silences TensorFlow's and OpenCV's C++ start-up chatter unless the user asked for it.

    Must run before TensorFlow or OpenCV is imported; user settings win.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    # OpenCV's bundled Qt ships no fonts and complains on every window; point it at the
    # system's fonts where there are any.
    if "QT_QPA_FONTDIR" not in os.environ and os.path.isdir("/usr/share/fonts/truetype"):
        os.environ["QT_QPA_FONTDIR"] = "/usr/share/fonts/truetype"


@contextlib.contextmanager
def quiet_stderr():
    """Sends file descriptor 2 to /dev/null for the duration (C++ libraries write there).

    TensorFlow prints absl and CUDA-probe lines while it is imported whatever
    TF_CPP_MIN_LOG_LEVEL says; the command line imports it inside this block so that what the
    user sees is the tool's own output. Python exceptions raised inside are shown as usual.
    """
    if os.environ.get("HUMANMATTING_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Imports TensorFlow and Keras without their start-up chatter on stderr."""
    with quiet_stderr():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401


def import_keras():
    """Imports Keras, and TensorFlow too when it is Keras's backend (`KERAS_BACKEND`; training
    also runs on JAX or PyTorch, without TensorFlow), without their start-up chatter."""
    with quiet_stderr():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow  # noqa: F401


def parse_arch(text):
    """--arch: builder overrides as a JSON object ("" for none)."""
    import json

    if not text:
        return {}
    try:
        arch = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--arch is not JSON ({err.msg}): {text!r}") from None
    if not isinstance(arch, dict):
        raise ValueError(f"--arch must be a JSON object of builder arguments, got {text!r}")
    return arch


def user_error(message):
    """Prints a one-line error for the user and returns the exit code 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def report_failures(failed, what):
    """Lists (path, reason) failures on stderr after a batch command; returns its exit code."""
    if not failed:
        return 0
    print(f"{len(failed)} {what} failed:", file=sys.stderr)
    for path, reason in failed:   # reasons from read_image etc. already start with the path
        print(f"  {path}: {str(reason).removeprefix(f'{path}: ')}", file=sys.stderr)
    return 1


class Progress:
    """A progress bar (`humanmatting.progress.bar`) that `update(done, note)` moves to the
    count reached; quiet when stderr is not a terminal."""

    def __init__(self, total, unit="image", stream=None):
        from humanmatting.progress import bar

        self.bar = bar(total=total, unit=unit, stream=stream)

    def update(self, done, note=""):
        self.bar.update(done - self.bar.n)
        if note:
            self.bar.set_postfix_str(str(note)[:40], refresh=False)
        if done >= self.bar.total:
            self.bar.close()

    @staticmethod
    def callback(unit="image"):
        """A `progress(done, total, path)` callable for library functions: the bar starts at
        the first call, when the total is known."""
        state = {}

        def progress(done, total, path):
            state.setdefault("bar", Progress(total, unit=unit)).update(done, Path(path).name)

        return progress

    @staticmethod
    def wrap(items, unit="image"):
        """`items` iterated with a bar."""
        from humanmatting.progress import bar

        return bar(items, unit=unit)


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def open_fraction(text):
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and 1")
    return value


def add_backend_options(p):
    """--backend and --quantize: which runtime runs the model (predict, eval, bench, demo)."""
    p.add_argument("--backend", choices=("keras", "onnx", "tflite"), default="keras",
                   help="runtime (onnx / tflite export the model first)")
    p.add_argument("--quantize", choices=("fp16", "int8"), default=None,
                   help="with --backend tflite: the model's released quantized file "
                        "(Night-Lite ships an int8 one, the fastest way to run it on a CPU), "
                        "else the model quantized on the spot")


def check_backend_options(args):
    """The --quantize / --backend combination's error message, or None."""
    if args.quantize and args.backend != "tflite":
        return f"--quantize {args.quantize} needs --backend tflite"
    return None


MATTER_OPTIONS = {"flip": "bool", "refine": "refine", "scales": "scales",
                  "min_region": float, "min_confidence": float, "person_band": float,
                  "max_side": int, "zoom_weights": str}


def parse_model_spec(text):
    """`NAME[@WEIGHTS][:OPTION=VALUE,...]` -> `Matter` keyword arguments, e.g.
    `likeunet_night@runs/x/w.weights.h5:scales=1,flip=0,min_confidence=0` (scales are
    separated by `/`: `scales=0.8/1.2`)."""
    head, _, options = text.partition(":")
    name, _, weights = head.partition("@")
    out = {"model": name, "weights": weights or "default"}
    for item in filter(None, options.split(",")):
        key, eq, value = item.partition("=")
        kind = MATTER_OPTIONS.get(key)
        if not eq or kind is None:
            raise ValueError(f"{text}: {item!r} is not OPTION=VALUE with OPTION one of "
                             f"{', '.join(MATTER_OPTIONS)}")
        try:
            if kind == "bool" or kind == "refine":
                on = value.lower() in ("1", "true", "yes", "on", "cf", "knn")
                if not on and value.lower() not in ("0", "false", "no", "off"):
                    raise ValueError(value)
                out[key] = (value.lower() if value.lower() in ("cf", "knn") else "cf") \
                    if kind == "refine" and on else on
            elif kind == "scales":
                out[key] = tuple(float(v) for v in value.split("/"))
            else:
                out[key] = kind(value)
        except ValueError:
            raise ValueError(f"{text}: bad value in {item!r}") from None
    return out
