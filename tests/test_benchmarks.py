"""The benchmark scripts run end to end on tiny settings and print their tables."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fixed_size_peer

ROOT = Path(__file__).resolve().parent.parent


def run_script(name, *args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_latency_table_with_peer(tmp_path):
    peer = fixed_size_peer(tmp_path / "peer.tflite")
    out = tmp_path / "latency.json"
    result = run_script("latency.py", "--models", "likeunet_dark_light_original",
                        "--backends", "keras", "tflite", "--size", "64x96", "--runs", "2",
                        "--rounds", "2", "--peer", peer, "--json", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "likeunet_dark_light_original (tflite)" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 3
    peer_row = rows["peer peer (tflite, 64x64)"]
    assert peer_row["ratio_to_peer"] == pytest.approx(1.0)
    for row in rows.values():
        assert 0 < row["median_ms"] <= row["p90_ms"]
        assert row["fps"] == pytest.approx(1000 / row["median_ms"])


def test_latency_rejects_bad_size_and_missing_peer(tmp_path):
    result = run_script("latency.py", "--size", "256by256", cwd=tmp_path)
    assert result.returncode != 0 and "256by256" in result.stderr
    result = run_script("latency.py", "--peer", tmp_path / "nope.tflite", cwd=tmp_path)
    assert result.returncode != 0 and "nope.tflite" in result.stderr
    result = run_script("latency.py", "--models", "likeunet_dark_light_original", "--size",
                        "100x96", "--backends", "keras", "--peer", "", cwd=tmp_path)
    assert result.returncode != 0 and "100" in result.stderr


@pytest.mark.slow
def test_export_parity_table(tmp_path):
    out = tmp_path / "parity.json"
    result = run_script("export_parity.py", "--models", "likeunet_dark_light_original",
                        "--size", "96x64", "--json", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["models"]["likeunet_dark_light_original"]
    assert set(rows) == {"saved_model", "onnx", "tflite", "tflite fp16", "tflite int8"}
    for label in ("saved_model", "onnx", "tflite"):
        assert rows[label]["photo"]["max_abs_diff"] <= 1e-4
        assert rows[label]["photo"]["input_shape"] == [1, 96, 64, 1]
    assert rows["tflite int8"]["photo"]["iou_thresholded"] > 0.5
    assert result.stdout.count(" ok") == 3


def test_export_parity_rejects_missing_calibration(tmp_path):
    result = run_script("export_parity.py", "--calibrate", tmp_path / "nope", cwd=tmp_path)
    assert result.returncode != 0 and "nope" in result.stderr
