"""The benchmark scripts run end to end on tiny settings and print their tables."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fixed_size_peer, make_folder_dataset

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


@pytest.mark.slow
def test_export_parity_reports_the_released_int8_file(tmp_path):
    out = tmp_path / "parity.json"
    result = run_script("export_parity.py", "--models", "likeunet_night_lite", "--size", "128x96",
                        "--json", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["models"]["likeunet_night_lite"]
    assert "tflite int8 (released)" in rows and "tflite fp16 (released)" not in rows
    assert rows["tflite int8 (released)"]["photo"]["iou_thresholded"] > 0.9
    assert result.stdout.count(" ok") == 3            # the quantized rows are not graded


@pytest.mark.slow
def test_pipeline_benchmark_prints_both_rates_and_their_ratio(tmp_path):
    data = make_folder_dataset(tmp_path / "people", count=4, shape=(120, 90))
    result = run_script("pipeline.py", "--data", data, "--batch-size", "2", "--batches", "3",
                        "--sizes", "64x64,64x96", "--train-at", "64,96", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"data: {data} (4 images)"
    assert lines[1].startswith("sizes: 2 bucket(s), batch 2, ")
    pipe = float(lines[2].split()[1])
    train = float(lines[3].split()[2])
    assert lines[2].endswith("images/s") and lines[3].startswith("training step")
    assert pipe > 0 and train > 0
    ratio = float(lines[4].split("= ")[1].split("x")[0])
    assert ratio == pytest.approx(pipe / train, rel=0.06, abs=0.06)   # printed to 0.1
    assert [line.split()[-1] for line in lines[5:]] == ["64x64", "96x96"]
    assert all(float(line.split()[2]) > 0 for line in lines[5:])


@pytest.mark.slow
def test_pipeline_benchmark_rejects_bad_input(tmp_path):
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    for args, message in [(("--data", tmp_path / "nope"), "nope: no such folder"),
                          (("--sizes", "64x65"), "64x65 is not accepted"),
                          (("--model", "nope"), "unknown model 'nope'"),
                          (("--data", empty), "no usable"),
                          (("--batches", "0"), "0 must be at least 1")]:
        result = run_script("pipeline.py", *args, cwd=tmp_path)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_export_parity_rejects_missing_calibration(tmp_path):
    result = run_script("export_parity.py", "--calibrate", tmp_path / "nope", cwd=tmp_path)
    assert result.returncode != 0 and "nope" in result.stderr


@pytest.mark.slow
def test_compare_peers_scores_people_and_people_free_folders(tmp_path):
    import cv2
    import numpy as np

    from humanmatting.data.readers import read_dataset
    from humanmatting.evaluation import TFLitePeer, evaluate
    from humanmatting.inference import Matter

    people = make_folder_dataset(tmp_path / "people", count=3, shape=(80, 64))
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    cv2.imwrite(str(scenes / "a.png"), np.full((50, 70, 3), 200, np.uint8))
    cv2.imwrite(str(scenes / "b.png"), np.full((40, 40, 3), 20, np.uint8))
    peer = fixed_size_peer(tmp_path / "peer.tflite")
    out = tmp_path / "table.json"
    result = run_script("compare_peers.py", "--data", people, "--backgrounds", scenes,
                        "--models", "likeunet_night_lite", "--peer", peer, "--json", out,
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {(r["kind"], r["model"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {(k, m) for k in ("folder", "backgrounds")
                         for m in ("likeunet_night_lite", "peer")}
    assert rows["backgrounds", "peer"]["count"] == 2 and rows["folder", "peer"]["count"] == 3
    # the same figures as evaluate() on the same pairs (the script adds nothing of its own)
    predictors = {"likeunet_night_lite": Matter("likeunet_night_lite"),
                  "peer": TFLitePeer(peer)}
    for kind, folder in (("folder", people), ("backgrounds", scenes)):
        expected = evaluate(predictors, read_dataset(folder, kind))["per_model"]
        for name, metrics in expected.items():
            for metric in ("iou", "miou", "boundary_f", "mae"):
                assert rows[kind, name][metric] == pytest.approx(metrics[metric], abs=1e-6)
    assert "scenes (2)" in result.stdout
    # the tables by kind: IoU, boundary F and MAE, each cell the row's figure
    for metric, title in (("iou", "person IoU"), ("boundary_f", "boundary F"), ("mae", "MAE")):
        table = result.stdout.split(f"\n{title} (")[1].split("\n\n")[0]
        cells = " | ".join(f"{rows['backgrounds', m][metric]:.3f}"
                           for m in ("likeunet_night_lite", "peer"))
        assert f"| scenes (2) | {cells} |" in table, table
    # the per-image comparison with the peer: its mean is the difference of the two IoUs
    for kind in ("folder", "backgrounds"):
        vs = rows[kind, "likeunet_night_lite"]["vs_peer"]
        assert vs["mean"] == pytest.approx(rows[kind, "likeunet_night_lite"]["iou"]
                                           - rows[kind, "peer"]["iou"], abs=1e-9)
        assert vs["low"] <= vs["mean"] <= vs["high"]
    assert result.stdout.count("likeunet_night_lite - peer, iou per image: mean") == 2


def test_compare_peers_goes_on_past_bad_pairs_and_reports_them(tmp_path):
    import cv2
    import numpy as np

    people = make_folder_dataset(tmp_path / "people", count=2, shape=(80, 64))
    (people / "images" / "z.jpg").write_bytes(b"not a jpeg")   # corrupt, with its mask
    cv2.imwrite(str(people / "masks" / "z.png"), np.zeros((80, 64), np.uint8))
    broken = tmp_path / "broken"   # a folder whose only pair is unreadable
    (broken / "images").mkdir(parents=True)
    (broken / "masks").mkdir()
    (broken / "images" / "a.jpg").write_bytes(b"junk")
    cv2.imwrite(str(broken / "masks" / "a.png"), np.zeros((40, 40), np.uint8))
    out = tmp_path / "table.json"
    result = run_script("compare_peers.py", "--data", broken, people, "--models",
                        "likeunet_night_lite", "--json", out, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "broken" in result.stdout and "no image could be scored" in result.stdout
    assert "people (2)" in result.stdout            # the good pairs are still scored
    assert "skipped" in result.stderr and "z.jpg" in result.stderr and "a.jpg" in result.stderr
    table = json.loads(out.read_text())
    assert [r["count"] for r in table["rows"]] == [2]
    assert sorted(Path(path).name for path, _ in table["failed"]) == ["a.jpg", "z.jpg"]


@pytest.mark.slow
def test_compare_peers_needs_data(tmp_path):
    result = run_script("compare_peers.py", cwd=tmp_path)
    assert result.returncode == 2 and "--data and/or --backgrounds" in result.stderr
    result = run_script("compare_peers.py", "--backgrounds", tmp_path / "none", cwd=tmp_path)
    assert result.returncode == 1 and "none" in result.stderr
    (tmp_path / "bad.tflite").write_bytes(b"garbage")
    for args, message in [(("--models", "nope"), "compare_peers.py: unknown model 'nope'"),
                          (("--peer", tmp_path / "bad.tflite"), "bad.tflite: not a TFLite model"),
                          (("--limit", "0"), "0 must be at least 1"),
                          (("--val-fraction", "1"), "1.0 must be between 0 and 1")]:
        result = run_script("compare_peers.py", "--backgrounds", tmp_path, *args, cwd=tmp_path)
        assert result.returncode in (1, 2) and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_defaults_sweep_matches_matter_with_the_same_settings(tmp_path):
    from humanmatting.data.readers import validation_by_kind
    from humanmatting.evaluation import evaluate_by_kind
    from humanmatting.inference import Matter
    from humanmatting.training import load_config

    people = make_folder_dataset(tmp_path / "people", count=6, shape=(80, 64))
    scenes = make_folder_dataset(tmp_path / "scenes", count=6, shape=(64, 80), seed=30)
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  - {{path: {people}, photos: portraits, val_fraction: 0.5}}\n"
                      f"  - {{path: {scenes}, photos: scenes, val_fraction: 0.5}}\n")
    result = run_script("defaults_sweep.py", "--config", config, "--model",
                        "likeunet_night_lite", "--scales", "1", "--max-side", "0", "64",
                        "--zoom", "off", "0.9:2", "--zoom-weights", "default", "none",
                        "--min-region", "0", "0.01", "--min-confidence", "0", "0.9", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [ln.split(" | ") for ln in result.stdout.splitlines()[2:]]
    assert [tuple(r[1:6]) for r in rows] == [
        (side, zoom, weights, region, confidence) for side in ("0", "64")
        for zoom in ("off", "0.9:2") for weights in ("default", "none")
        for region in ("0", "0.01") for confidence in ("0", "0.9")]
    by_kind = validation_by_kind(load_config(config).data)
    for side, zoom, weights, region, confidence in (
            (0, "off", "default", 0.0, 0.0), (0, "off", "default", 0.01, 0.9),
            (64, "off", "default", 0.0, 0.0), (0, "0.9:2", "default", 0.0, 0.0),
            (0, "0.9:2", "none", 0.0, 0.0)):
        matter = Matter("likeunet_night_lite", scales=(1.0,), min_region=region,
                        min_confidence=confidence, max_side=side,
                        zoom=(0.9, (2.0,)) if zoom != "off" else False,
                        zoom_weights=None if weights == "none" else weights)
        expected = evaluate_by_kind({"m": matter}, by_kind)
        row = next(r for r in rows if (int(r[1]), r[2], r[3], float(r[4]), float(r[5])) ==
                   (side, zoom, weights, region, confidence))
        for k, kind in enumerate(by_kind):
            assert float(row[6 + k]) == pytest.approx(
                expected[kind]["per_model"]["m"]["iou"], abs=6e-4)


@pytest.mark.slow
def test_load_benchmark_prints_rates_beside_in_process_and_the_memory(tmp_path):
    result = run_script("load.py", "--size", "64x64", "--clients", "1", "2", "--requests", "4",
                        "--memory-requests", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("likeunet_night_lite, 64x64 PNG")
    rows = {line[:28].strip(): line[28:].split() for line in lines[2:5]}
    assert list(rows) == ["in-process Matter, 1", "HTTP, 1 client(s)", "HTTP, 2 client(s)"]
    for values in rows.values():
        assert float(values[0]) > 0 and float(values[1]) <= float(values[2]) + 1e-6
        assert values[3] == "0"
    assert lines[5].startswith("service memory: ") and "0 failed" in lines[5]
    bad = run_script("load.py", "--model", "nope", cwd=tmp_path)
    assert bad.returncode == 1 and "unknown model 'nope'" in bad.stderr


@pytest.mark.slow
def test_auto_matting_benchmark_tables_by_kind(tmp_path):
    import keras

    import humanmatting
    from humanmatting.data.readers import validation_by_kind
    from humanmatting.evaluation import evaluate_by_kind
    from humanmatting.inference import Matter
    from humanmatting.training import load_config

    keras.utils.set_random_seed(3)   # an untrained IndexNet, the same in both processes
    weights = tmp_path / "indexnet.weights.h5"
    humanmatting.create_model("indexnet_mobilenetv2", weights=None).save_weights(weights)
    people = make_folder_dataset(tmp_path / "people", count=4, shape=(80, 64))
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  - {{path: {people}, photos: portraits, val_fraction: 0.5}}\n")
    peer = fixed_size_peer(tmp_path / "peer.tflite")
    result = run_script("auto_matting.py", "--config", config, "--weights", weights,
                        "--peer", peer, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    by_kind = validation_by_kind(load_config(config).data)
    expected = evaluate_by_kind({"auto": Matter("auto", weights=weights),
                                 "night": Matter(humanmatting.DEFAULT_MODEL)}, by_kind)
    count = expected["portraits"]["count"]
    for metric, title in (("iou", "person IoU"), ("boundary_f", "boundary F"), ("mae", "MAE")):
        table = result.stdout.split(f"\n{title} (")[1].split("\n\n")[0]
        header, _, row = table.splitlines()[1:4]
        assert header.split(" | ")[1:5] == [f"{humanmatting.DEFAULT_MODEL} (+cf)", "auto",
                                            "auto trimap + cf", "peer |"]
        cells = row.split(" | ")
        assert cells[0] == f"| portraits ({count})"
        values = {name: expected["portraits"]["per_model"][name][metric]
                  for name in ("night", "auto")}
        assert float(cells[1]) == pytest.approx(values["night"], abs=6e-4)
        assert float(cells[2]) == pytest.approx(values["auto"], abs=6e-4)
        assert 0 <= float(cells[3]) <= 1
    assert "median ms per image" in result.stdout
