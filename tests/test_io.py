"""Image I/O helpers: colours, atomic writes."""

import numpy as np
import pytest

from humanmatting import io


def test_parse_color():
    assert io.parse_color("green") == (0, 177, 64)
    assert io.parse_color("#FF8000") == (255, 128, 0)
    assert io.parse_color("1, 2,3") == (1, 2, 3)
    for bad in ("#12345", "256,0,0", "mauve", "1,2"):
        with pytest.raises(ValueError, match="not a colour"):
            io.parse_color(bad)


def test_parse_background_image_or_error(tmp_path):
    path = tmp_path / "bg.png"
    io.write_image(path, np.full((4, 5, 3), 7, np.uint8))
    assert io.parse_background(str(path)).shape == (4, 5, 3)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        io.parse_background(str(tmp_path / "nope.jpg"))


def test_write_image_round_trip_and_rgba(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (6, 7, 4), dtype=np.uint8)
    io.write_image(tmp_path / "x.png", rgba)
    import cv2

    back = cv2.cvtColor(cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED),
                        cv2.COLOR_BGRA2RGBA)
    np.testing.assert_array_equal(back, rgba)
    rgb = rgba[..., :3].copy()
    io.write_image(tmp_path / "y.png", rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / "y.png"), rgb)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    with pytest.raises(io.ImageError, match="could not write"):
        io.write_image(tmp_path / "x.unknownext", np.zeros((2, 2, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_read_image_applies_the_exif_orientation(tmp_path):
    """Phone photos are often stored sideways with an EXIF orientation tag: they are read as
    they are shown, so the matte lines up with what the user sees."""
    from PIL import Image   # a dependency of matplotlib

    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :20] = 255                       # white band on the left as stored
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6                           # orientation 6: rotate 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    rgb = io.read_image(path)
    assert rgb.shape == (80, 40, 3)            # upright: tall, not wide
    assert rgb[:20].mean() > 200 and rgb[-20:].mean() < 50   # the band is now on top


def test_as_rgb_converts_layouts_and_rejects_bad_arrays():
    gray = np.array([[0, 128], [255, 7]], np.uint8)
    np.testing.assert_array_equal(io.as_rgb(gray), np.repeat(gray[..., None], 3, axis=2))
    rgba = np.arange(2 * 2 * 4, dtype=np.uint8).reshape(2, 2, 4)
    np.testing.assert_array_equal(io.as_rgb(rgba), rgba[..., :3])
    # floats in [0, 1] scale to 0..255; a small overshoot (interpolation) is clipped
    floats = np.array([[[0.0, 0.5, 1.0], [-0.01, 1.01, 0.2]]], np.float32)
    np.testing.assert_array_equal(io.as_rgb(floats), [[[0, 128, 255], [0, 255, 51]]])
    with pytest.raises(ValueError, match=r"values 0\.\.254; floats must be in \[0, 1\]"):
        io.as_rgb(np.array([[[0.0, 254.0, 3.0]]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        io.as_rgb(np.array([[[0.0, np.nan, 0.2]]]))
    with pytest.raises(ValueError, match="uint8 or float in \\[0, 1\\], got uint16"):
        io.as_rgb(np.zeros((2, 2, 3), np.uint16))
    with pytest.raises(ValueError, match="got shape \\(2, 2, 5\\)"):
        io.as_rgb(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError, match="is empty"):
        io.as_rgb(np.zeros((0, 2, 3), np.uint8))
