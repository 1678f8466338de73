"""The `humanmatting` command line on tiny files."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import humanmatting
from conftest import fixed_size_peer, make_folder_dataset, make_person_image, run_cli


def run_cli_process(*args, cwd):
    return subprocess.run([sys.executable, "-m", "humanmatting", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_list(tmp_path):
    result = run_cli_process("list", cwd=tmp_path)   # the real entry point, its start quiet
    assert result.returncode == 0, result.stderr
    assert "likeunet_dark_light_original" in result.stdout
    assert "likeunet_night_lite" in result.stdout
    night = next(line for line in result.stdout.splitlines() if " likeunet_night " in line)
    assert "weights + zoom" in night   # its zoom weights are released beside it
    assert result.stderr == ""
    result = run_cli_process("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == f"humanmatting {humanmatting.__version__}\n"


@pytest.mark.slow
def test_predict_folder_goes_on_past_bad_files(tmp_path):
    data = tmp_path / "in"
    (data / "sub").mkdir(parents=True)
    cv2.imwrite(str(data / "a.jpg"), make_person_image(64, 48))
    cv2.imwrite(str(data / "sub" / "b.png"), make_person_image(40, 90))
    (data / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (data / "sub" / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    result = run_cli("predict", data, tmp_path / "missing.jpg", "--output", out,
                     cwd=tmp_path)
    assert result.returncode == 1
    assert cv2.imread(str(out / "a.png"), cv2.IMREAD_UNCHANGED).shape == (64, 48)
    assert cv2.imread(str(out / "sub" / "b.png"), cv2.IMREAD_UNCHANGED).shape == (40, 90)
    tail = result.stderr[result.stderr.index("3 input(s) failed"):]
    assert "broken.jpg: not a readable image" in tail
    assert "empty.png: file is empty" in tail
    assert "missing.jpg: no such file" in tail
    assert "4/4" not in result.stderr and "it/s" not in result.stderr   # no bar in a log


def test_output_names_never_collide():
    from pathlib import Path

    from humanmatting.cli.main import output_names

    rels = [Path(r) for r in ("frame.0001.jpg", "frame.0002.jpg", "x.jpg", "x.png", "sub/x.jpg",
                              "x.jpg", "X.JPG", "x.jpg.png", "y.jpeg")]
    names, renamed = output_names(rels)
    assert [n.as_posix() for n in names] == [
        "frame.0001.png", "frame.0002.png",       # only the last extension is replaced
        "x.jpg.png", "x.png.png", "sub/x.png",    # x.jpg and x.png would clash; sub/ would not
        "x.jpg-2.png", "X.JPG-3.png",             # the same name from another input, any case
        "x.jpg-4.png",                            # a file really named x.jpg.png comes after
        "y.png"]
    assert renamed == 5
    assert len({n.as_posix().casefold() for n in names}) == len(names)


@pytest.mark.slow
def test_predict_never_overwrites_an_input_or_another_output(tmp_path):
    data = tmp_path / "in"
    (data / "sub").mkdir(parents=True)
    shapes = {"x.jpg": (64, 48), "x.png": (40, 90), "sub/x.jpg": (50, 50), "f.001.png": (32, 64),
              "f.002.png": (48, 32)}
    for rel, (h, w) in shapes.items():
        cv2.imwrite(str(data / rel), make_person_image(h, w))
    out = tmp_path / "out"
    result = run_cli("predict", data, data / "sub" / "x.jpg", "--output", out,
                     "--scales", "1", "--no-flip", "--no-refine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 6 file(s)" in result.stdout
    assert "3 input(s) share an output name" in result.stderr
    written = {p.relative_to(out).as_posix(): cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape
               for p in out.rglob("*.png")}
    assert written == {"x.jpg.png": (64, 48), "x.png.png": (40, 90), "sub/x.png": (50, 50),
                       "f.001.png": (32, 64), "f.002.png": (48, 32), "x.jpg-2.png": (50, 50)}

    # An output folder inside the input folder: a second run leaves the first run's mattes out.
    inner = data / "mattes"
    args = ("--scales", "1", "--no-flip", "--no-refine")
    for _ in range(2):
        result = run_cli("predict", data, "--output", inner, *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "wrote 5 file(s)" in result.stdout
    assert not (inner / "mattes").exists()
    # The input folder itself as the output would overwrite its PNGs: refused, nothing written.
    before = sorted(p.stat().st_mtime_ns for p in data.rglob("*.png"))
    result = run_cli("predict", data, "--output", data, *args, cwd=tmp_path)
    assert result.returncode == 1
    assert f"--output {data}: is the input folder" in result.stderr
    result = run_cli("predict", data / "x.png", "--output", data / "x.png", *args, cwd=tmp_path)
    assert result.returncode == 1
    assert "is the input image" in result.stderr
    assert sorted(p.stat().st_mtime_ns for p in data.rglob("*.png")) == before


@pytest.mark.slow
@pytest.mark.parametrize("fmt, channels", [("rgba", 4), ("composite", 3)])
def test_predict_single_file_formats(tmp_path, sample_path, fmt, channels):
    out = tmp_path / "result.png"
    result = run_cli("predict", sample_path, "--output", out, "--format", fmt,
                     "--background", "#00ff00", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert image.shape == (512, 512, channels)
    if fmt == "composite":
        # The top-left corner is background: (almost) pure green.
        np.testing.assert_allclose(image[:8, :8].mean(axis=(0, 1)), [0, 255, 0], atol=20)


def test_predict_errors(tmp_path, sample_path):
    result = run_cli("predict", sample_path, "--output", tmp_path / "a.jpg", cwd=tmp_path)
    assert result.returncode == 1 and "must be a .png" in result.stderr
    result = run_cli("predict", sample_path, "--output", tmp_path / "a.xyz", "--format",
                     "composite", cwd=tmp_path)
    assert result.returncode == 1 and "a.xyz: composite output must be one of" in result.stderr
    result = run_cli("predict", sample_path, "--output", tmp_path / "o", "--model", "nope",
                     cwd=tmp_path)
    assert result.returncode == 1 and "unknown model 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    # A folder input, or several inputs, need an output folder: an image-file name (which
    # would become a folder so named) or an existing file is refused before any work.
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), make_person_image(32, 32))
    for inputs in ([folder], [sample_path, folder / "a.png"]):
        result = run_cli("predict", *inputs, "--output", tmp_path / "result.png", cwd=tmp_path)
        assert result.returncode == 1 and "names an image file" in result.stderr
        assert not (tmp_path / "result.png").exists()
    (tmp_path / "notes.txt").write_text("keep me")
    result = run_cli("predict", folder, "--output", tmp_path / "notes.txt", cwd=tmp_path)
    assert result.returncode == 1 and "notes.txt: is a file" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
@pytest.mark.parametrize("flag, flip", [(None, True), ("--no-flip", False)])
def test_predict_flip_matches_the_python_api(tmp_path, sample_path, flag, flip):
    from humanmatting.inference import Matter

    # a real person (the released models learnt that the synthetic ellipses are nobody)
    image = cv2.resize(cv2.imread(str(sample_path)), (72, 96), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    result = run_cli("predict", tmp_path / "p.png", "--output", tmp_path / "a.png",
                     "--model", "likeunet_dark", "--no-refine", *([flag] if flag else []),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255
    rgb = np.ascontiguousarray(image[..., ::-1])
    expected = Matter("likeunet_dark", flip=flip, refine=False).predict(rgb)
    other = Matter("likeunet_dark", flip=not flip, refine=False).predict(rgb)
    assert np.abs(expected - other).max() > 4 / 255      # the two settings differ here
    np.testing.assert_allclose(got, expected, atol=1 / 255 + 1e-6)


def test_predict_min_region(tmp_path, sample_path):
    # the astronaut is one large region (~19 % of the photo at 96x72 with Night-Lite in one
    # pass): --min-region 0.9 removes him
    image = cv2.resize(cv2.imread(str(sample_path)), (72, 96), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    fast = ["--model", "likeunet_night_lite", "--no-refine", "--no-flip", "--scales", "1",
            "--no-zoom"]
    for value, name in (("0", "keep.png"), ("0.9", "drop.png")):
        result = run_cli("predict", tmp_path / "p.png", "--output", tmp_path / name, *fast,
                         "--min-region", value, "--min-confidence", "0", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    keep = cv2.imread(str(tmp_path / "keep.png"), cv2.IMREAD_UNCHANGED)
    drop = cv2.imread(str(tmp_path / "drop.png"), cv2.IMREAD_UNCHANGED)
    assert (keep >= 128).mean() > 0.1 and (drop >= 128).sum() == 0
    for bad in ("1", "-0.1", "x"):
        result = run_cli("predict", tmp_path / "p.png", "--output", tmp_path / "b.png",
                         "--min-region", bad, cwd=tmp_path)
        assert result.returncode == 2 and "--min-region: must be a fraction" in result.stderr
        result = run_cli("predict", tmp_path / "p.png", "--output", tmp_path / "b.png",
                         "--min-confidence", bad, cwd=tmp_path)
        assert (result.returncode == 2
                and "--min-confidence: must be a probability" in result.stderr)
    assert not (tmp_path / "b.png").exists()
    # --min-confidence 0.99: the astronaut, under 99 % sure on average, goes
    result = run_cli("predict", tmp_path / "p.png", "--output", tmp_path / "unsure.png", *fast,
                     "--min-region", "0", "--min-confidence", "0.99", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (cv2.imread(str(tmp_path / "unsure.png"), cv2.IMREAD_UNCHANGED) >= 128).sum() == 0


@pytest.mark.slow
def test_predict_scales_match_the_python_api(tmp_path, sample_path):
    from humanmatting.inference import Matter

    image = cv2.resize(cv2.imread(str(sample_path)), (72, 96), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    result = run_cli("predict", tmp_path / "p.png", "--output", tmp_path / "a.png", "--model",
                     "likeunet_dark", "--scales", "1", "--no-refine", "--no-zoom", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255
    rgb = np.ascontiguousarray(image[..., ::-1])
    expected = Matter("likeunet_dark", scales=(1.0,), refine=False, zoom=False).predict(rgb)
    default = Matter("likeunet_dark", refine=False, zoom=False).predict(rgb)   # 0.8 and 1.2
    assert np.abs(expected - default).max() > 4 / 255
    np.testing.assert_allclose(got, expected, atol=1 / 255 + 1e-6)
    # the astronaut covers under 30 % of this small photo: by default the zoom's answer
    result = run_cli("predict", tmp_path / "p.png", "--output", tmp_path / "z.png", "--model",
                     "likeunet_dark", "--no-refine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = cv2.imread(str(tmp_path / "z.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255
    zoomed = Matter("likeunet_dark", refine=False).predict(rgb)
    assert np.abs(zoomed - default).max() > 4 / 255
    np.testing.assert_allclose(got, zoomed, atol=1 / 255 + 1e-6)
    result = run_cli("predict", tmp_path / "p.png", "--output", tmp_path / "b.png",
                     "--scales", "0,1", cwd=tmp_path)
    assert result.returncode == 2 and "--scales: scales must be" in result.stderr
    assert not (tmp_path / "b.png").exists()


@pytest.mark.slow
def test_predict_and_eval_run_the_int8_backend(tmp_path):
    from humanmatting.inference import Matter

    people = make_folder_dataset(tmp_path / "people", count=3)
    image = next((people / "images").iterdir())
    result = run_cli("predict", image, "--output", tmp_path / "a.png", "--model",
                     "likeunet_night_lite", "--backend", "tflite", "--quantize", "int8",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255
    int8 = Matter("likeunet_night_lite", backend="tflite", quantize="int8")
    expected = int8.predict(str(image))
    np.testing.assert_allclose(got, expected, atol=1 / 255 + 1e-6)
    result = run_cli("eval", "--data", people, "--model", "likeunet_night_lite", "--backend",
                     "tflite", "--quantize", "int8", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["per_model"]["likeunet_night_lite"]
    from humanmatting.data.readers import read_dataset
    from humanmatting.evaluation import evaluate

    direct = evaluate({"m": int8}, read_dataset(str(people)))["per_model"]["m"]
    assert report["iou"] == pytest.approx(direct["iou"], abs=1e-6)
    result = run_cli("eval", "--data", people, "--quantize", "int8", cwd=tmp_path)
    assert result.returncode == 1 and "--quantize int8 needs --backend tflite" in result.stderr


def test_eval_scores_one_side_of_the_split_the_model_was_trained_with(tmp_path):
    from humanmatting.data.readers import read_dataset

    people = make_folder_dataset(tmp_path / "people", count=12, shape=(48, 40))
    (people / "masks" / "p003.png").unlink()   # a missing mask is listed on its side
    train, val = read_dataset(people).split(0.5)
    one = ("--scales", "1", "--no-flip", "--no-refine", "--json")
    for side, part in (("val", val), ("train", train)):
        result = run_cli("eval", "--data", people, "--model", "likeunet_night_lite", "--split",
                         side, "--val-fraction", "0.5", *one, cwd=tmp_path)
        report = json.loads(result.stdout)
        assert report["count"] == len(part) and report["split"] == f"{side} (0.5)"
        assert [path for path, _ in report["failed"]] == [path for path, _ in part.problems]
        assert result.returncode == (1 if part.problems else 0)
    assert len(val) + len(train) == 11 and val.problems + train.problems
    for bad in ("1", "0", "x"):
        result = run_cli("eval", "--data", people, "--split", "val", "--val-fraction", bad,
                         cwd=tmp_path)
        assert result.returncode == 2 and "--val-fraction" in result.stderr


def test_eval_next_to_a_peer_compares_image_by_image(tmp_path):
    people = make_folder_dataset(tmp_path / "people", count=3, shape=(80, 64))
    peer = fixed_size_peer(tmp_path / "peer.tflite")
    args = ("eval", "--data", people, "--model", "likeunet_night_lite", "--peer-tflite", peer)
    result = run_cli(*args, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["images"]) == 3
    ours, theirs = (report["per_image"][n]["iou"] for n in ("likeunet_night_lite", "peer"))
    assert np.mean(ours) == pytest.approx(report["per_model"]["likeunet_night_lite"]["iou"])
    comparison = report["comparison"]
    assert comparison["mean"] == pytest.approx(np.mean(ours) - np.mean(theirs))
    assert comparison["better"] + comparison["worse"] + comparison["equal"] == 3
    plot = tmp_path / "eval.png"
    result = run_cli(*args, "--plot", plot, "--plot-worst", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "likeunet_night_lite - peer, iou per image: mean" in result.stdout
    assert "95% bootstrap interval" in result.stdout
    assert f"wrote {plot}" in result.stdout
    picture = cv2.imread(str(plot))
    assert picture.shape[0] > 3 * 300 and picture.shape[1] >= 4 * 300   # scatter + 2 rows
    assert picture.std() > 10
    result = run_cli("eval", "--data", people, "--plot", tmp_path / "e.jpg", cwd=tmp_path)
    assert result.returncode == 1 and "--plot takes a .png" in result.stderr


def test_eval_on_people_free_images_scores_false_positives(tmp_path):
    from humanmatting.inference import Matter

    folder = tmp_path / "bg"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = [np.full((60, 80, 3), 90, np.uint8),
              cv2.GaussianBlur(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8), (9, 9), 3)]
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"scene{i}.png"), image)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    result = run_cli("eval", "--data", folder, "--kind", "backgrounds", "--model",
                     "likeunet_night_lite", "--json", cwd=tmp_path)
    assert result.returncode == 1 and "broken.jpg" in result.stderr   # listed, not fatal
    report = json.loads(result.stdout)
    assert report["count"] == 2 and report["soft_ground_truth"]
    scores = report["per_model"]["likeunet_night_lite"]
    assert {"iou", "mae", "sad"} <= set(scores)
    matter = Matter("likeunet_night_lite")
    alphas = [matter.predict(np.ascontiguousarray(image[..., ::-1])) for image in images]
    # every target is empty: MAE is the mean person alpha, IoU 1 only where none is >= 0.5
    assert scores["mae"] == pytest.approx(np.mean([a.mean() for a in alphas]), abs=1e-5)
    assert scores["iou"] == pytest.approx(np.mean([float((a < 0.5).all()) for a in alphas]))


def test_eval_where_no_pair_can_be_read_says_so(tmp_path):
    folder = tmp_path / "bad"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    (folder / "images" / "a.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cv2.imwrite(str(folder / "masks" / "a.png"), np.zeros((40, 40), np.uint8))
    result = run_cli("eval", "--data", folder, "--model", "likeunet_night_lite", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no image could be scored" in result.stdout and "a.jpg" in result.stderr


def test_bench_prints_latency_next_to_a_peer(tmp_path):
    peer = fixed_size_peer(tmp_path / "peer.tflite")
    # its own process: --threads sets TensorFlow's thread pools, once per process
    result = run_cli_process("bench", "--model", "likeunet_night_lite", "--size", "64x96",
                             "--backend", "tflite", "--threads", "1", "--runs", "3",
                             "--peer-tflite", peer, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    ours = next(r for r in rows if r[0] == "likeunet_night_lite")
    assert "64x96)" in ours
    median, p90, fps = map(float, ours[-3:])
    assert 0 < median <= p90
    # FPS is 1000 / the unrounded median; the printed median is rounded to 0.01 ms
    assert 1000 / (median + 0.005) - 0.05 <= fps <= 1000 / max(median - 0.005, 1e-9) + 0.05
    peer_row = next(r for r in rows if r and r[0] == "peer")
    assert "(64x64)" in peer_row            # the peer runs at its own fixed input size
    assert "latency ratio (ours / peer):" in result.stdout
    assert "tf.lite.Interpreter is deprecated" not in result.stderr   # TF's notice is ours


def test_bench_runs_the_released_int8_file(tmp_path):
    result = run_cli_process("bench", "--model", "likeunet_night_lite", "--size", "64x96",
                             "--backend", "tflite", "--quantize", "int8", "--threads", "1",
                             "--runs", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "likeunet_night_lite (tflite int8, 64x96)" in result.stdout
    assert "no released int8 file" not in result.stderr      # the shipped one, not a new one


@pytest.mark.parametrize("args, message", [
    (["--quantize", "int8"], "--quantize int8 needs --backend tflite"),
    (["--size", "250x256"], "250"),
    (["--size", "big"], "big"),
    (["--model", "no_such_model"], "no_such_model"),
    (["--peer-tflite", "missing.tflite"], "missing.tflite: no such file"),
    (["--peer-tflite", "empty.tflite"], "empty.tflite: file is empty"),
    (["--peer-tflite", "photo.jpg"], "photo.jpg: not a TFLite model (no TFL3 identifier"),
    (["--peer-tflite", "."], ".: not a regular file"),
    (["--runs", "0"], "argument --runs: 0 must be at least 1"),
    (["--threads", "two"], "argument --threads: 'two' is not an integer"),
])
def test_bench_rejects_bad_input(tmp_path, args, message):
    (tmp_path / "empty.tflite").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "photo.jpg"), make_person_image(32, 32))
    result = run_cli("bench", "--runs", "1", *args, cwd=tmp_path)
    usage = args[0] in ("--runs", "--threads")        # argparse's own usage errors exit 2
    assert result.returncode == (2 if usage else 1)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_failures_name_each_path_once(capsys):
    from pathlib import Path

    from humanmatting.cli.common import report_failures

    assert report_failures([], "pair(s)") == 0
    assert report_failures([(Path("d/a.jpg"), "d/a.jpg: not a readable image"),
                            ("b.png", "no mask")], "pair(s)") == 1
    assert capsys.readouterr().err.splitlines() == [
        "2 pair(s) failed:", "  d/a.jpg: not a readable image", "  b.png: no mask"]


def test_eval_of_a_training_config_prints_one_row_per_kind_of_photo(tmp_path):
    from humanmatting.data.readers import validation_by_kind
    from humanmatting.training import load_config

    people = make_folder_dataset(tmp_path / "people", count=8, shape=(64, 48))
    scenes = make_folder_dataset(tmp_path / "scenes", count=8, shape=(48, 64), seed=20)
    config = tmp_path / "c.yaml"
    config.write_text(f"model: likeunet_night_lite\ndata:\n"
                      f"  - {{path: {people}, photos: portraits, val_fraction: 0.5}}\n"
                      f"  - {{path: {scenes}, photos: scenes, val_fraction: 0.5}}\n")
    counts = {k: len(v) for k, v in validation_by_kind(load_config(config).data).items()}
    result = run_cli("eval", "--config", config, "--scales", "1", "--no-flip", "--no-refine",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "| photos | likeunet_night_lite |"
    assert [ln.split(" |")[0] for ln in lines[2:]] == [
        f"| portraits ({counts['portraits']})", f"| scenes ({counts['scenes']})",
        "| mean over kinds"]
    values = [float(ln.split("|")[2]) for ln in lines[2:]]
    assert all(0 <= v <= 1 for v in values)
    assert values[2] == pytest.approx((values[0] + values[1]) / 2, abs=1.5e-3)
    both = run_cli("eval", "--config", config, "--data", people, cwd=tmp_path)
    assert both.returncode != 0 and "--data or --config" in both.stderr


def _png(image):
    return cv2.imencode(".png", image)[1].tobytes()


def _stream_images(data):
    from humanmatting.io import iter_stream_images
    import io

    return list(iter_stream_images(io.BytesIO(data)))


def run_pipe(*args, stdin, cwd, process=False):
    """`humanmatting ARGS` with bytes on stdin, stdout as bytes; in this process unless
    `process` (the real pipes of a subprocess)."""
    if process:
        return subprocess.run([sys.executable, "-m", "humanmatting", *map(str, args)], cwd=cwd,
                              input=stdin, capture_output=True, timeout=300)
    return run_cli(*args, cwd=cwd, stdin=stdin)


@pytest.mark.slow
def test_predict_pipe_reads_images_or_raw_frames_and_writes_pngs(tmp_path):
    from humanmatting.inference import Matter

    frame = make_person_image(64, 96, seed=3)           # (H, W, 3) RGB
    plain = ["--model", "likeunet_night_lite", "--no-flip", "--scales", "1", "--no-refine"]
    expected = Matter("likeunet_night_lite", flip=False, scales=(1.0,), refine=False).render(
        frame, "alpha")
    # PNGs one after another (ffmpeg -f image2pipe -c:v png)
    result = run_pipe("predict", "-", "-o", "-", *plain, stdin=_png(frame[..., ::-1]) * 2,
                      cwd=tmp_path, process=True)
    assert result.returncode == 0, result.stderr
    outs = _stream_images(result.stdout)
    assert len(outs) == 2 and all(o.shape == (64, 96, 3) for o in outs)
    np.testing.assert_array_equal(outs[0][..., 0], expected)
    # raw RGB24 frames (ffmpeg -f rawvideo -pix_fmt rgb24), composite on a colour
    result = run_pipe("predict", "-", "-o", "-", "--raw", "96x64", "--format", "composite",
                      "--bgcolor", "0,0,255", *plain, stdin=frame.tobytes() * 3, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    outs = _stream_images(result.stdout)
    assert len(outs) == 3 and (outs[2][expected == 0] == (0, 0, 255)).all()
    # one JPEG, the same as the file path written to stdout
    jpeg = cv2.imencode(".jpg", frame[..., ::-1])[1].tobytes()
    (tmp_path / "f.jpg").write_bytes(jpeg)
    piped = run_pipe("predict", "-", "-o", "-", *plain, stdin=jpeg, cwd=tmp_path)
    named = run_pipe("predict", tmp_path / "f.jpg", "-o", "-", *plain, stdin=b"", cwd=tmp_path)
    assert piped.returncode == named.returncode == 0 and piped.stdout == named.stdout
    # a frame cut short, a broken stream, bad options: errors naming the problem
    for stdin, args, message in [
            (frame.tobytes()[:1000], ["--raw", "96x64"], "frame 0 has 1000 of its 18432"),
            (_png(frame) + b"garbage!", [], "image 1 is not a PNG"),
            (b"", [], "stdin: file is empty"),
            (frame.tobytes(), ["--raw", "96by64"], "not WIDTHxHEIGHT")]:
        result = run_pipe("predict", "-", "-o", "-", *args, *plain, stdin=stdin, cwd=tmp_path)
        assert result.returncode == 1 and message in result.stderr.decode(), result.stderr
    for args, message in [(["-", "-o", "out"], "give -o -"),
                          (["-", tmp_path / "f.jpg", "-o", "-"], "cannot be mixed"),
                          ([tmp_path / "f.jpg", "-o", "-", "--raw", "2x2"], "--raw is for"),
                          ([tmp_path, "-o", "-"], "-o - (stdout) takes one input")]:
        result = run_pipe("predict", *args, *plain, stdin=b"", cwd=tmp_path)
        assert result.returncode == 1 and message in result.stderr.decode(), (args, result)


@pytest.mark.slow
def test_predict_mask_post_process_and_alpha_matting(tmp_path, sample_path):
    from humanmatting.inference import Matter, post_process_mask

    out = tmp_path / "mask.png"
    result = run_cli("predict", sample_path, "-o", out, "--format", "mask", "--post-process",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    alpha = Matter().predict(str(sample_path))
    np.testing.assert_array_equal(mask, post_process_mask(alpha) * 255)
    assert set(np.unique(mask)) == {0, 255}
    matted = tmp_path / "matted.png"
    result = run_cli("predict", sample_path, "-o", matted, "--alpha-matting",
                     "--matting-fg-threshold", "230", "--matting-erode", "4",
                     "--model", "likeunet_night_lite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ours = cv2.imread(str(matted), cv2.IMREAD_UNCHANGED)
    expected = Matter("likeunet_night_lite", matting_trimap=(230 / 255, 10 / 255, 4)).render(
        str(sample_path), "alpha")
    np.testing.assert_array_equal(ours, expected)
    for args, message in [(["--alpha-matting", "--no-refine"], "cannot go with --no-refine"),
                          (["--matting-bg-threshold", "250"], "must be below"),
                          (["--matting-fg-threshold", "300"], "must be in 0..255")]:
        result = run_cli("predict", sample_path, "-o", out, *args, cwd=tmp_path)
        assert result.returncode == 1 and message in result.stderr, result.stderr


def test_post_process_mask_removes_specks_and_keeps_the_body():
    from humanmatting.inference import post_process_mask

    alpha = np.zeros((40, 40), np.float32)
    alpha[10:30, 10:30] = 0.9
    alpha[2, 2] = 1.0            # a one-pixel speck
    alpha[20, 31:36] = 0.8       # a one-pixel-wide spur
    mask = post_process_mask(alpha)
    assert mask[2, 2] == 0 and mask[20, 34] == 0 and mask[20, 20] == 1
    assert mask.dtype == np.float32 and set(np.unique(mask)) == {0, 1}


@pytest.mark.slow
def test_predict_watch_mattes_new_images_until_interrupted(tmp_path):
    import signal
    import time

    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    cv2.imwrite(str(inbox / "first.png"), make_person_image(48, 64, seed=1))
    proc = subprocess.Popen([sys.executable, "-m", "humanmatting", "predict", inbox, "-o", out,
                             "--watch", "--watch-interval", "0.2", "--model",
                             "likeunet_night_lite", "--no-refine"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while not (out / "first.png").exists():
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.2)
        # the broken file first: by the time sub.png is written, it has been tried (files
        # of one look go in name order, and a later file in a later look)
        (inbox / "broken.jpg").write_bytes(b"\xff\xd8 nope")
        time.sleep(0.5)
        cv2.imwrite(str(inbox / "sub.png"), make_person_image(40, 30, seed=2))
        while not (out / "sub.png").exists():
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert cv2.imread(str(out / "sub.png"), cv2.IMREAD_UNCHANGED).shape == (40, 30)
    assert "stopped watching; wrote 2 file(s)" in stdout
    assert proc.returncode == 1 and "broken.jpg" in stderr   # reported at the end
    result = run_cli("predict", tmp_path / "in" / "first.png", "-o", out / "x.png", "--watch",
                     cwd=tmp_path)
    assert result.returncode == 1 and "--watch needs an input folder" in result.stderr


def _trimap_dataset(root, count=3):
    """A folder dataset with soft alphas and given trimaps (a band around the person)."""
    from humanmatting.specs import make_trimap

    data = make_folder_dataset(root, count=count, shape=(64, 64), soft=True, seed=40)
    (data / "trimaps").mkdir()
    for alpha_path in sorted((data / "alphas").glob("*.png")):
        alpha = cv2.imread(str(alpha_path), cv2.IMREAD_GRAYSCALE) / 255.0
        cv2.imwrite(str(data / "trimaps" / alpha_path.name), make_trimap(alpha >= 0.5,
                                                                          erode=3, dilate=3))
    return data


@pytest.mark.slow
def test_predict_and_eval_with_trimaps(tmp_path):
    data = _trimap_dataset(tmp_path / "bench")
    model = ["--model", "indexnet_mobilenetv2", "--no-flip", "--scales", "1"]
    one = data / "images" / "p000.jpg"
    out = tmp_path / "one.png"
    result = run_cli("predict", one, "-o", out, "--trimap", data / "trimaps" / "p000.png",
                     *model, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    alpha = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    trimap = cv2.imread(str(data / "trimaps" / "p000.png"), cv2.IMREAD_GRAYSCALE)
    assert alpha.shape == (64, 64)
    assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()
    result = run_cli("predict", data / "images", "-o", tmp_path / "outs", "--trimap",
                     data / "trimaps", *model, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "outs").glob("*.png"))) == 3
    # automatic matting: its own trimap, or the one given
    result = run_cli("predict", data / "images", "-o", tmp_path / "auto", "--model", "auto",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "auto").glob("*.png"))) == 3
    result = run_cli("predict", one, "-o", tmp_path / "auto1.png", "--model", "auto",
                     "--trimap", data / "trimaps" / "p000.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    given = cv2.imread(str(tmp_path / "auto1.png"), cv2.IMREAD_UNCHANGED)
    assert (given[trimap == 255] == 255).all() and (given[trimap == 0] == 0).all()
    result = run_cli("predict", one, "-o", out, "--model", "nosuch", cwd=tmp_path)
    assert result.returncode == 1 and "'auto' (automatic matting)" in result.stderr
    # the trimap errors, each named
    (tmp_path / "bad.png").write_bytes(cv2.imencode(".png", np.full((64, 64), 77, np.uint8))[1])
    for args, message in [([one, "-o", out, *model], "give --trimap"),
                          ([one, "-o", out, "--trimap", tmp_path / "nope.png", *model],
                           "nope.png: no such file"),
                          ([one, "-o", out, "--trimap", tmp_path / "bad.png", *model],
                           "values must be 0 (background), 128 (unknown) or 255"),
                          ([one, "-o", out, "--trimap", data / "trimaps" / "p000.png"],
                           "takes no trimap"),
                          ([data / "images", "-o", tmp_path / "o2", "--trimap",
                            data / "trimaps" / "p000.png", *model], "--trimap FILE is for one")]:
        result = run_cli("predict", *args, cwd=tmp_path)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
    # eval prints the matting metrics over the unknown region, beside closed-form matting
    result = run_cli("eval", "--data", data, *model, "--baseline-matting", "cf", "--json",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for name in ("indexnet_mobilenetv2", "cf matting"):
        assert {"sad", "mse", "grad", "conn", "iou"} <= set(report["per_model"][name])
    from humanmatting.evaluation import TrimapSolver
    from humanmatting.io import read_image
    from humanmatting.metrics import sad

    truth = cv2.imread(str(data / "alphas" / "p000.png"), cv2.IMREAD_GRAYSCALE) / 255.0
    solved = TrimapSolver("cf").predict(read_image(one), trimap)
    # the matting metrics are taken over the trimap's unknown band only
    assert report["per_image"]["cf matting"]["sad"][0] == pytest.approx(
        sad(solved, truth, region=trimap == 128), abs=1e-6)
    result = run_cli("eval", "--data", make_folder_dataset(tmp_path / "plain", count=2),
                     "--baseline-matting", "cf", cwd=tmp_path)
    assert result.returncode == 1 and "has no trimaps/ folder" in result.stderr


@pytest.mark.slow
def test_foreground_estimation_keeps_the_old_background_out_of_soft_edges(tmp_path):
    from humanmatting.inference import Matter

    fg = np.zeros((48, 48, 3), np.uint8)
    fg[...] = (220, 180, 40)                       # the person: yellow
    bg = np.zeros_like(fg)
    bg[...] = (0, 0, 255)                          # the old background: blue
    alpha = np.zeros((48, 48), np.float32)
    alpha[8:40, 8:40] = 1.0
    alpha[8:40, 36:40] = 0.5                        # a soft (hair-like) band
    image = (alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.uint8)
    matter = Matter("likeunet_night_lite", flip=False, scales=(1.0,), refine=False)
    plain = matter.composite(image, (0, 255, 0), alpha=alpha)
    solved = matter.composite(image, (0, 255, 0), alpha=alpha, foreground="ml")
    band = (slice(10, 38), slice(36, 40))
    # without estimation the old background's blue shows through the soft band: half of the
    # photo's (40 + 255) / 2 there; the person's own blue is 40, so 20 is the right answer
    assert plain[band][..., 2].mean() == pytest.approx(74, abs=1)
    assert abs(solved[band][..., 2].mean() - 20) < 8
    np.testing.assert_array_equal(solved[alpha == 0], np.broadcast_to((0, 255, 0),
                                                                      solved[alpha == 0].shape))
    with pytest.raises(ValueError, match="foreground must be"):
        matter.composite(image, None, alpha=alpha, foreground="bayes")
