"""demo.py end to end, as a user runs it: images, --gray, video, no camera, bad files."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import count_frames, make_person_image, write_video

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo.py"


def run_demo(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run([sys.executable, str(DEMO), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_image_to_rgba_png_at_full_size(tmp_path, sample_path):
    out = tmp_path / "cutout.png"
    result = run_demo(sample_path, "--no-display", "--output", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rgba = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (512, 512, 4)
    assert rgba[..., 3].min() < 50 and rgba[..., 3].max() > 200
    assert "person covers" in result.stdout


@pytest.mark.slow
def test_gray_composite_on_background_image(tmp_path, sample_path):
    bg = tmp_path / "bg.png"
    cv2.imwrite(str(bg), np.full((30, 40, 3), (255, 0, 0), np.uint8))  # BGR blue
    out = tmp_path / "composite.jpg"
    result = run_demo("--gray", sample_path, "--no-display", "--output", out, "--background",
                      bg, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(out))
    assert image.shape == (512, 512, 3)
    assert image[:40, :40, 0].mean() > 200  # top-left corner is background: blue


@pytest.mark.slow
def test_video_keeps_frames_fps_and_size(tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=12, size=(160, 96), fps=12.0)
    out = tmp_path / "matted.mp4"
    result = run_demo(video, "--no-display", "--output", out, "--background", "blue",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    frames, (fps, width, height) = count_frames(out)
    assert (frames, fps, width, height) == (12, 12.0, 160, 96)
    assert "12 frame(s)" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "matted.mp4"]


@pytest.mark.slow
def test_video_with_the_int8_night_lite(tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=6, size=(128, 96), fps=6.0)
    out = tmp_path / "matted.avi"
    result = run_demo(video, "--no-display", "--output", out, "--model", "likeunet_night_lite",
                      "--backend", "tflite", "--quantize", "int8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no released int8 file" not in result.stderr      # the shipped file ran
    frames, (fps, width, height) = count_frames(out)
    assert (frames, fps, width, height) == (6, 6.0, 128, 96)


def test_no_camera(tmp_path):
    assert_one_line_error(run_demo("0", "--no-display", cwd=tmp_path),
                          "camera 0 could not be opened")


@pytest.mark.parametrize("name, content, problem", [
    ("missing.jpg", None, "no such file"),
    ("empty.jpg", b"", "file is empty"),
    ("corrupt.png", b"\x89PNG\r\n\x1a\n broken", "not a readable image"),
    ("corrupt.mp4", b"\x00\x00\x00\x18ftypmp42 broken", "not a readable video"),
    ("notes.txt", b"hello", "unknown file type"),
])
def test_bad_files(tmp_path, name, content, problem):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    assert_one_line_error(run_demo(name, "--no-display", cwd=tmp_path), name, problem)


def test_no_screen_without_no_display(tmp_path, sample_path):
    assert_one_line_error(run_demo(sample_path, cwd=tmp_path), "no display", "--no-display")


def test_bad_options(tmp_path, sample_path):
    assert_one_line_error(run_demo(sample_path, "--no-display", "--background", "mauve",
                                   cwd=tmp_path), "--background", "mauve")
    assert_one_line_error(run_demo(sample_path, "--no-display", "--gray", "--model",
                                   "likeunet_night", cwd=tmp_path), "--gray", "RGB")
    assert_one_line_error(run_demo(sample_path, "--no-display", "--output",
                                   tmp_path / "x.jpg", cwd=tmp_path), ".png")
    # output names the result cannot take fail before the model loads, and write nothing
    assert_one_line_error(run_demo(sample_path, "--no-display", "--background", "white",
                                   "--output", tmp_path / "x.xyz", cwd=tmp_path),
                          "x.xyz", "image output must be one of")
    video = write_video(tmp_path / "clip.avi", frames=2, size=(64, 32), fps=2.0)
    assert_one_line_error(run_demo(video, "--no-display", "--output", tmp_path / "x.png",
                                   cwd=tmp_path), "x.png", "video output must be one of")
    assert not list(tmp_path.glob("x.*"))
    assert_one_line_error(run_demo(sample_path, "--no-display", "--quantize", "int8",
                                   cwd=tmp_path), "--quantize int8 needs --backend tflite")
    photo = tmp_path / "photo.png"
    photo.write_bytes(cv2.imencode(".png", make_person_image(48, 32))[1].tobytes())
    before = photo.read_bytes()
    assert_one_line_error(run_demo(photo, "--no-display", "--output", "photo.png",
                                   cwd=tmp_path), "photo.png", "is the input file")
    assert photo.read_bytes() == before


@pytest.mark.slow
def test_trimap_and_auto_matting(tmp_path, capsys):
    from humanmatting.specs import make_trimap

    photo = tmp_path / "photo.png"
    image = make_person_image(96, 64)
    cv2.imwrite(str(photo), image)
    trimap = make_trimap(image.max(axis=2) > 100, erode=3, dilate=3)   # the bright person
    cv2.imwrite(str(tmp_path / "trimap.png"), trimap)
    out = tmp_path / "cut.png"
    result = run_demo(photo, "--no-display", "--model", "indexnet_mobilenetv2", "--trimap",
                      tmp_path / "trimap.png", "--output", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    alpha = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., 3]
    assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()
    result = run_demo(photo, "--no-display", "--model", "auto", "--output", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(auto," in result.stdout
    bad = tmp_path / "bad.png"
    cv2.imwrite(str(bad), np.full((96, 64), 77, np.uint8))
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), trimap[:50])
    video = write_video(tmp_path / "clip.avi", frames=2, size=(64, 32), fps=2.0)
    from humanmatting.cli import demo

    for args, fragments in [   # in-process: each fails before a model loads
            ((photo, "--model", "indexnet_mobilenetv2"), ("give --trimap", "--model auto")),
            ((photo, "--trimap", tmp_path / "trimap.png"), ("takes no trimap",)),
            ((photo, "--model", "auto", "--gray"), ("--gray", "RGB")),
            ((video, "--model", "auto", "--trimap", tmp_path / "trimap.png"),
             ("still image",)),
            ((photo, "--model", "auto", "--trimap", tmp_path / "nope.png"),
             ("--trimap", "nope.png", "no such file")),
            ((photo, "--model", "auto", "--trimap", bad), ("bad.png", "must be 0")),
            ((photo, "--model", "auto", "--trimap", small), ("small.png", "size"))]:
        assert demo.main([*map(str, args), "--no-display"]) == 1
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and error.startswith("error: "), error
        for fragment in fragments:
            assert fragment in error, error


def test_fps_meter_overlay_is_smoothed_and_summary_is_the_mean(monkeypatch):
    from humanmatting.cli import demo

    clock = iter([0.0, 0.1, 0.3])
    monkeypatch.setattr(demo.time, "perf_counter", lambda: next(clock))
    meter = demo.FPSMeter(smoothing=0.9)
    assert meter.tick() is None and meter.mean is None        # one frame: no rate yet
    assert meter.tick() == pytest.approx(10.0)                 # 1 / 0.1 s
    assert meter.tick() == pytest.approx(0.9 * 10 + 0.1 * 5)   # then 1 / 0.2 s, smoothed
    assert meter.mean == pytest.approx(2 / 0.3)                # 2 intervals in 0.3 s
