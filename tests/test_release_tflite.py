"""tools/release_tflite.py: calibration set, agreement, release and refusal."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from conftest import make_folder_dataset
from humanmatting.data.readers import PairList

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("release_tflite", ROOT / "tools/release_tflite.py")
release_tflite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(release_tflite)


def test_calibration_images_spread_evenly_over_the_datasets():
    a = PairList([f"a{i}" for i in range(10)], [""] * 10, name="a")
    b = PairList([f"b{i}" for i in range(3)], [""] * 3, name="b")
    assert release_tflite.calibration_images([a, b], 5) == ["a0", "a4", "a9", "b0", "b2"]
    assert release_tflite.calibration_images([a, b], 1) == ["a0"]
    with pytest.raises(ValueError, match="b: 3 training images, 4 asked for"):
        release_tflite.calibration_images([a, b], 8)


def test_agreement_is_the_mean_iou_of_paired_masks():
    one = np.array([[1, 1, 0, 0]], bool)
    two = np.array([[1, 0, 0, 0]], bool)
    empty = np.zeros((1, 4), bool)
    assert release_tflite.agreement([one, empty], [two, empty]) == pytest.approx(0.75)   # (1/2+1)/2


@pytest.mark.slow
def test_release_writes_the_file_and_its_sum_or_refuses(tmp_path, capsys):
    data = [make_folder_dataset(tmp_path / name, count=30, seed=seed)
            for name, seed in (("one", 0), ("two", 100))]
    models = tmp_path / "models"
    args = ["--model", "likeunet_night_lite", "--data", *map(str, data), "--count", "6",
            "--models", str(models), "--threads", "1"]
    assert release_tflite.main([*args, "--max-drop", "-1"]) == 1   # any result is refused
    assert "nothing released" in capsys.readouterr().err and not models.exists()
    assert release_tflite.main(args) == 0
    out = capsys.readouterr().out
    path = models / "likeunet_night_lite.int8.tflite"
    assert path.is_file() and "agreement" in out
    from humanmatting.registry import released_sha256, sha256_file

    assert released_sha256(models) == {path.name: sha256_file(path)}
