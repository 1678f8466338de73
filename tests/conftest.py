"""Shared fixtures: small generated images and videos, and a quiet TensorFlow."""

import contextlib
import io
import os
import subprocess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from humanmatting.io import sample_image_path  # noqa: E402


def run_cli(*args, cwd, stdin=None):
    """`humanmatting ARGS` in this process, as a finished process (returncode, stdout,
    stderr): a new interpreter would import TensorFlow again for every call (about 5 s each,
    minutes over the suite). With `stdin` (bytes) the command reads them from a binary
    stdin and its stdout and stderr come back as bytes, as from a pipe. `test_list` and the
    `--watch`, `bench` and one pipe test run the real entry point in a subprocess
    (`tests/test_cli.py`)."""
    import sys
    from unittest import mock

    from humanmatting.cli.main import main

    out, err = io.BytesIO(), io.StringIO()
    text_out = io.TextIOWrapper(out, write_through=True)
    fake_in = io.TextIOWrapper(io.BytesIO(stdin or b""))
    argv = [str(a) for a in args]
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with mock.patch.object(sys, "stdin", fake_in), contextlib.redirect_stdout(text_out), \
                contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as stop:   # argparse's usage errors, --version
                code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            text_out.flush()
    finally:
        os.chdir(here)
    if stdin is None:
        return subprocess.CompletedProcess(argv, code, out.getvalue().decode(), err.getvalue())
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue().encode())


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global seeds (Python, NumPy and the Keras backend), so a
    model built with random initial weights is the same model on every run."""
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture
def sample_path():
    return sample_image_path()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def make_person_image(height, width, seed=0):
    """A synthetic 'person': a bright ellipse body and a round head on a textured background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
    cx = width // 2
    cv2.ellipse(image, (cx, int(height * 0.75)), (width // 4, height // 3), 0, 0, 360,
                (200, 120, 90), -1)
    cv2.circle(image, (cx, int(height * 0.3)), max(2, min(height, width) // 8), (230, 190, 160),
               -1)
    return image


def write_video(path, frames=12, size=(160, 96), fps=12.0):
    """Writes a small MJPG video with `frames` frames of a moving disc; returns its path."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((height, width, 3), 10 * i, np.uint8)
        cv2.circle(frame, (20 + 8 * i, height // 2), height // 4, (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def count_frames(path):
    cap = cv2.VideoCapture(str(path))
    frames = 0
    while cap.read()[0]:
        frames += 1
    info = (cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    return frames, info


def randomize_batchnorm(model, seed=0):
    """Gives every BatchNorm random gamma, beta and moving statistics (fusion must fold them)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        name = weight.path.rsplit("/", 1)[-1]
        if name == "moving_mean":
            weight.assign(rng.normal(0.0, 0.5, weight.shape))
        elif name == "moving_variance":
            weight.assign(rng.uniform(0.5, 2.0, weight.shape))
        elif name == "gamma":
            weight.assign(rng.normal(1.0, 0.3, weight.shape))
        elif name == "beta":
            weight.assign(rng.normal(0.0, 0.3, weight.shape))


def make_folder_dataset(root, count=6, shape=(96, 72), soft=False, seed=0):
    """A folder dataset of synthetic people: images/ + masks/ (or alphas/ when soft)."""
    import pathlib

    root = pathlib.Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    target_dir = root / ("alphas" if soft else "masks")
    target_dir.mkdir(exist_ok=True)
    for i in range(count):
        image = make_person_image(*shape, seed=seed + i)
        mask = ((image[..., 0] > 150) * 255).astype(np.uint8)
        if soft:
            mask = cv2.GaussianBlur(mask, (5, 5), 0)
        cv2.imwrite(str(root / "images" / f"p{i:03d}.jpg"), image[..., ::-1])
        cv2.imwrite(str(target_dir / f"p{i:03d}.png"), mask)
    return root


def fixed_size_peer(path):
    """A tiny fixed-size (1, 64, 64, 3) -> (1, 64, 64, 1) TFLite file, like MediaPipe Selfie."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((64, 64, 3), batch_size=1)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs))
    path.write_bytes(converter.convert())
    return path
