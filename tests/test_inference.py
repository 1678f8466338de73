"""Matter: sizes, input conventions, compiled calls, compositing and bad input."""

import cv2
import keras
import numpy as np
import pytest

import humanmatting
from conftest import make_person_image
from humanmatting.inference import (Matter, check_sizes, choose_size, remove_small_regions,
                                    scaled_size)
from humanmatting.io import ImageError
from humanmatting.registry import SIZES_256, check_scales


@pytest.fixture(scope="module")
def matter():
    return Matter("likeunet_dark_light_original")


def test_choose_size_nearest_aspect_ratio():
    assert choose_size(480, 640, SIZES_256) == (256, 320)     # 0.75 is nearest 0.8
    assert choose_size(1080, 1920, SIZES_256) == (256, 448)   # 0.5625: 0.571 beats 0.5
    assert choose_size(100, 100, SIZES_256) == (256, 256)
    assert choose_size(1000, 10, SIZES_256) == (512, 256)     # beyond 2:1 clamps
    assert choose_size(800, 600, SIZES_256) == (320, 256)


def test_sizes_must_be_multiples_of_divisor():
    with pytest.raises(ValueError, match="size 250x256 is not accepted.*multiples of 32"):
        check_sizes([(250, 256)], 32)
    with pytest.raises(ValueError, match="size 8192x256 is not accepted.*at most 4096"):
        check_sizes([(8192, 256)], 32)
    with pytest.raises(ValueError, match="size 250x256"):
        Matter("likeunet_dark_light_original", sizes=[(250, 256)])


@pytest.mark.parametrize("shape", [(37, 91), (512, 512), (480, 640), (1000, 300), (1, 1)])
def test_predict_returns_alpha_at_image_size(matter, shape):
    image = make_person_image(*shape)
    alpha = matter.predict(image)
    assert alpha.shape == shape and alpha.dtype == np.float32
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0


def test_predict_compiles_once_for_every_size(matter):
    for shape in ((100, 120), (300, 90), (64, 640)):
        matter.predict(make_person_image(*shape))
    assert matter._run.tracing_count == 1


def test_predict_accepts_paths_rgba_gray_and_float(matter, sample_path):
    from_path = matter.predict(sample_path)
    image = humanmatting.io.read_image(sample_path)
    np.testing.assert_array_equal(matter.predict(str(sample_path)), from_path)
    np.testing.assert_array_equal(matter.predict(image), from_path)
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(matter.predict(rgba), from_path)
    np.testing.assert_allclose(matter.predict(image / 255.0), from_path, atol=1e-6)
    assert matter.predict(image[..., 0]).shape == image.shape[:2]


def test_sample_photo_is_mostly_found(matter, sample_path):
    # The astronaut fills the lower middle of the frame; the top corners are background.
    alpha = matter.predict(sample_path)
    assert alpha[400:, 150:350].mean() > 0.8
    assert alpha[:60, :60].mean() < 0.2


def test_bad_input_is_named(matter, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.jpg: no such file"):
        matter.predict(tmp_path / "nothere.jpg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png: file is empty"):
        matter.predict(empty)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(ImageError, match="corrupt.jpg: not a readable image"):
        matter.predict(corrupt)
    with pytest.raises(ValueError, match=r"shape \(4, 4, 2\)"):
        matter.predict(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="uint8 or float"):
        matter.predict(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(ValueError, match="empty"):
        matter.predict(np.zeros((0, 4, 3), np.uint8))


def test_composite_rgba_colour_and_image(matter):
    image = make_person_image(120, 90)
    alpha = np.zeros((120, 90), np.float32)
    alpha[:, 45:] = 1.0
    alpha[:, 44] = 0.5
    rgba = matter.composite(image, alpha=alpha)
    assert rgba.shape == (120, 90, 4) and rgba.dtype == np.uint8
    np.testing.assert_array_equal(rgba[..., :3], image)
    assert rgba[0, 0, 3] == 0 and rgba[0, 89, 3] == 255 and rgba[0, 44, 3] == 128
    on_red = matter.composite(image, (255, 0, 0), alpha=alpha)
    np.testing.assert_array_equal(on_red[:, :44], np.broadcast_to([255, 0, 0], (120, 44, 3)))
    np.testing.assert_array_equal(on_red[:, 45:], image[:, 45:])
    expected = np.rint(image[:, 44] * 0.5 + np.array([255, 0, 0]) * 0.5)
    np.testing.assert_array_equal(on_red[:, 44], expected)
    # An image background of another size and aspect is scaled to cover, not stretched.
    bg = np.zeros((50, 400, 3), np.uint8)
    bg[:, 180:220] = 200
    on_bg = matter.composite(image, bg, alpha=alpha)
    assert on_bg.shape == (120, 90, 3)
    assert on_bg[0, 0].tolist() == [200, 200, 200]
    with pytest.raises(ValueError, match="must be 0-255"):
        matter.composite(image, (300, 0, 0), alpha=alpha)
    with pytest.raises(ValueError, match="does not match"):
        matter.composite(image, alpha=alpha[:10])


def test_composite_is_the_alpha_blend_rounded_half_to_even(matter):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    alpha = rng.random((48, 64)).astype(np.float32)
    alpha[:, :8] = 0.5                       # exact halves: ties round to even
    backdrop = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for background, bg in (((3, 250, 128), np.array([3, 250, 128], np.float32)),
                           (backdrop, backdrop.astype(np.float32))):
        a = alpha[..., None]
        expected = np.clip(np.rint(image.astype(np.float32) * a + bg * (1 - a)), 0, 255)
        got = matter.composite(image, background, alpha=alpha)
        np.testing.assert_array_equal(got, expected.astype(np.uint8))
    rgba = matter.composite(image, alpha=alpha)
    np.testing.assert_array_equal(rgba[..., 3], np.rint(alpha * 255).astype(np.uint8))


def test_matter_takes_a_keras_model_in_training_form():
    model = humanmatting.create_model("likeunet_night", weights=None, deploy=False)
    matter = Matter(model)
    assert humanmatting.fusion.is_deploy(matter.model)
    assert matter.input_spec.channels == 3 and matter.input_spec.scale == pytest.approx(1 / 255)
    assert matter.predict(make_person_image(50, 70)).shape == (50, 70)


def test_matter_rejects_unknown_backend_and_model():
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        Matter("likeunet_night", backend="torch")
    with pytest.raises(ValueError, match="registered name or a keras.Model"):
        Matter(42)
    with pytest.raises(ValueError, match="unknown model"):
        Matter("likeunet_bright")


def test_softmax_output_convention():
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    matter = Matter(keras.Model(inputs, outputs), output="sigmoid", sizes=[(32, 32)])
    alpha = matter.predict(np.zeros((10, 10, 3), np.uint8))
    np.testing.assert_allclose(alpha, 0.5, atol=1e-6)  # sigmoid(0): zero input, zero bias


def test_flip_averages_the_mirrored_prediction():
    image = make_person_image(70, 130, seed=3)
    plain = Matter("likeunet_night", sizes=[(64, 128)], flip=False, scales=(1.0,), refine=False,
                   min_region=0, zoom=False)
    flipped = Matter("likeunet_night", sizes=[(64, 128)], flip=True, scales=(1.0,), refine=False,
                     min_region=0, zoom=False)
    x = plain.preprocess(image)
    a = np.asarray(plain._run(x))[0]
    b = np.asarray(plain._run(np.ascontiguousarray(x[:, :, ::-1])))[0][:, ::-1]
    assert np.abs(a - b).max() > 1e-3   # the model is not mirror-symmetric: a real test
    expected = np.clip(cv2.resize((a + b) / 2, (130, 70), interpolation=cv2.INTER_LINEAR), 0, 1)
    np.testing.assert_allclose(flipped.predict(image), expected, atol=1e-6)
    # A mirrored image gives the mirrored alpha, up to the resize.
    mirrored = flipped.predict(np.ascontiguousarray(image[:, ::-1]))[:, ::-1]
    np.testing.assert_allclose(mirrored, flipped.predict(image), atol=0.02)


def test_flip_defaults_to_the_preset():
    assert Matter("likeunet_night").flip and Matter("likeunet_dark", weights=None).flip
    assert Matter("likeunet_night_lite").flip              # still images of the real-time one
    assert not Matter("likeunet_night_lite", realtime=True).flip   # its video frames: 1x
    assert Matter("likeunet_night_lite", realtime=True, flip=True).flip   # explicit wins
    assert not Matter("likeunet_night", flip=False).flip
    inputs = keras.Input((None, None, 3))
    assert not Matter(keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))).flip
    assert Matter("indexnet_mobilenetv2").flip and Matter("auto").flip   # trimap matting too


def test_flip_of_a_trimap_model_mirrors_the_trimap_with_the_image():
    from humanmatting.specs import make_trimap

    image = make_person_image(96, 128, seed=4)
    trimap = make_trimap((image.mean(-1) > 100).astype(np.float32), erode=4, dilate=4)
    one = dict(flip=False, scales=(1.0,), max_side=128)
    plain = Matter("indexnet_mobilenetv2", **one)
    flipped = Matter("indexnet_mobilenetv2", **{**one, "flip": True})
    a = plain.predict(image, trimap)
    b = plain.predict(np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(
        trimap[:, ::-1]))[:, ::-1]
    unknown = trimap == 128
    assert unknown.mean() > 0.05 and np.abs(a - b)[unknown].max() > 1e-3   # not symmetric
    np.testing.assert_allclose(flipped.predict(image, trimap), (a + b) / 2, atol=1e-5)


def test_scaled_size_rounds_each_side_to_the_divisor():
    assert scaled_size((320, 416), 0.8, 32) == (256, 320)    # 332.8 = 10.4 x 32 -> 320
    assert scaled_size((320, 416), 1.2, 32) == (384, 512)    # 499.2 = 15.6 x 32 -> 512
    assert scaled_size((320, 320), 1.0, 32) == (320, 320)
    assert scaled_size((64, 64), 0.1, 32) == (32, 32)        # never below one divisor


def test_scales_must_be_positive_numbers():
    assert check_scales([1, "0.5"]) == (1.0, 0.5)
    for bad in ([], [0], [-1.0], [float("nan")], [5], ["x"], None):
        with pytest.raises(ValueError, match="scales"):
            check_scales(bad)
    with pytest.raises(ValueError, match="scales"):
        Matter("likeunet_dark_light_original", scales=())


def test_scales_average_the_alphas_of_each_size():
    image = make_person_image(70, 130, seed=4)
    one = Matter("likeunet_night", sizes=[(64, 128)], flip=True, scales=(1.0,), refine=False,
                 min_region=0, zoom=False)
    two = Matter("likeunet_night", sizes=[(64, 128)], flip=True, scales=(0.5, 1.5), refine=False,
                 min_region=0, zoom=False)
    parts = []
    for h, w in ((32, 64), (96, 192)):   # 64x128 times 0.5 and 1.5
        x = two.preprocess(image, scale=(h / 64))
        assert x.shape == (1, h, w, 3)
        a = np.asarray(two._run(x))[0]
        b = np.asarray(two._run(np.ascontiguousarray(x[:, :, ::-1])))[0][:, ::-1]
        parts.append(cv2.resize((a + b) / 2, (130, 70), interpolation=cv2.INTER_LINEAR))
    expected = np.clip((parts[0] + parts[1]) / 2, 0, 1)
    np.testing.assert_allclose(two.predict(image), expected, atol=1e-6)
    assert np.abs(two.predict(image) - one.predict(image)).max() > 1e-3   # a real difference


def test_realtime_is_one_plain_pass():
    image = make_person_image(70, 130, seed=5)
    frames = Matter("likeunet_night_lite", realtime=True)
    x = frames.preprocess(image)
    expected = np.clip(cv2.resize(np.asarray(frames._run(x))[0], (130, 70),
                                  interpolation=cv2.INTER_LINEAR), 0, 1)
    expected = remove_small_regions(expected, frames.min_region,   # cheap: frames keep it
                                    min_confidence=frames.min_confidence)
    np.testing.assert_allclose(frames.predict(image), expected, atol=1e-6)
    still = Matter("likeunet_night_lite").predict(image)   # flip, scales, refinement
    assert np.abs(still - expected).max() > 1e-3


def test_zoom_runs_images_of_small_people_again_at_its_scales(sample_path):
    from humanmatting.registry import check_zoom

    image = humanmatting.io.read_image(sample_path)
    plain = dict(flip=False, refine=False, min_region=0, sizes=[(320, 256)])
    first = Matter("likeunet_night", scales=(1.0,), zoom=False, **plain)
    share = float((first.predict(image) >= 0.5).mean())
    assert 0.05 < share < 0.95
    larger = Matter("likeunet_night", scales=(1.5,), zoom=False, **plain).predict(image)
    assert np.abs(larger - first.predict(image)).max() > 0.1
    # people under `below` of the image: the answer of the larger scales replaces the first
    # (with the model's own weights: `zoom_weights` has its own test below)
    small = Matter("likeunet_night", scales=(1.0,), zoom=(share + 0.01, (1.5,)),
                   zoom_weights=None, **plain)
    np.testing.assert_array_equal(small.predict(image), larger)
    # people over it, or a still frame of video: the first passes stand
    for matter in (Matter("likeunet_night", scales=(1.0,), zoom=(share - 0.01, (1.5,)),
                          **plain),
                   Matter("likeunet_night", realtime=True, sizes=[(320, 256)], min_region=0)):
        np.testing.assert_array_equal(matter.predict(image), first.predict(image))
    # nobody at all: no second look (a people-free scene keeps its one pass)
    assert Matter("likeunet_night", zoom=(0.3, (1.2, 1.8)), **plain).zoom == (0.3, (1.2, 1.8))
    empty = np.zeros((96, 128, 3), np.uint8)
    none = Matter("likeunet_night_lite", scales=(1.0,), zoom=(0.5, (2.0,)), **plain)
    assert not (none.predict(empty) >= 0.5).any()
    np.testing.assert_array_equal(
        none.predict(empty), Matter("likeunet_night_lite", scales=(1.0,), zoom=False,
                                    **plain).predict(empty))
    for bad, message in [((0, (1.5,)), "share of the image must be in"),
                         ((1.0, (1.5,)), "share of the image must be in"),
                         ((0.3, ()), "scales must be one or more"), (0.3, "zoom must be")]:
        with pytest.raises(ValueError, match=message):
            check_zoom(bad)
    assert check_zoom(None) is None and check_zoom(False) is None


def test_zoom_passes_run_with_the_released_zoom_weights(sample_path, tmp_path, monkeypatch):
    """`<name>.zoom.weights.h5` beside a release: the zoom passes (and only they) run with it."""
    import shutil

    import keras

    from humanmatting.registry import sha256_file, weights_dir
    from humanmatting.training.release import update_sums, write_release

    name = "likeunet_night_lite"
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(weights_dir() / f"{name}.weights.h5", folder)
    update_sums(folder, f"{name}.weights.h5", sha256_file(folder / f"{name}.weights.h5"))
    keras.utils.set_random_seed(3)
    other = humanmatting.create_model(name, weights=None)
    written = write_release(other, name, folder, zoom=True, log=lambda *a: None)
    zoom_file = folder / f"{name}.zoom.weights.h5"
    assert written["weights"] == str(zoom_file)
    assert f"{name}.zoom.weights.h5" in (folder / "SHA256SUMS").read_text()
    monkeypatch.setenv("HUMANMATTING_WEIGHTS", str(folder))

    image = humanmatting.io.read_image(sample_path)
    plain = dict(flip=False, refine=False, min_region=0, sizes=[(320, 256)])
    first = Matter(name, scales=(1.0,), zoom=False, **plain).predict(image)
    share = float((first >= 0.5).mean())
    zoomed = Matter(name, scales=(1.0,), zoom=(share + 0.01, (1.5,)), **plain)
    assert zoomed.zoom_weights == str(zoom_file)
    by_hand = Matter(name, weights=zoom_file, scales=(1.5,), zoom=False, **plain).predict(image)
    own = Matter(name, scales=(1.5,), zoom=False, **plain).predict(image)
    assert np.abs(by_hand - own).max() > 0.1   # the zoom weights are another network
    np.testing.assert_array_equal(zoomed.predict(image), by_hand)
    # people over the share: the release's own first passes; zoom_weights=None: no companion
    np.testing.assert_array_equal(
        Matter(name, scales=(1.0,), zoom=(share - 0.01, (1.5,)), **plain).predict(image), first)
    mine = Matter(name, scales=(1.0,), zoom=(share + 0.01, (1.5,)), zoom_weights=None, **plain)
    np.testing.assert_array_equal(mine.predict(image), own)
    # not loaded where no zoom runs (frames), nor for other weights unless asked for
    assert Matter(name, realtime=True).zoom_weights is None
    assert Matter(name, weights=zoom_file).zoom_weights is None
    assert Matter(name, backend="tflite", quantize="fp16").zoom_weights is None
    # an exported backend exports the zoom weights when an image first zooms: same answer
    onnx = Matter(name, backend="onnx", scales=(1.0,), zoom=(share + 0.01, (1.5,)), **plain)
    assert onnx.zoom_weights == str(zoom_file)
    np.testing.assert_allclose(onnx.predict(image), by_hand, atol=1e-4)
    assert Matter(name, weights=zoom_file, zoom_weights=zoom_file).zoom_weights == str(zoom_file)
    with pytest.raises(ValueError, match="needs a registered model name"):
        Matter(other, zoom=(0.3, (1.5,)), zoom_weights=zoom_file)
    zoom_file.write_bytes(zoom_file.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ValueError, match="does not match its sha256"):
        Matter(name)


def test_scales_default_to_the_preset():
    assert Matter("likeunet_night").scales == (0.8, 1.2)
    assert Matter("likeunet_dark_light", weights=None).scales == (0.8, 1.2)
    assert Matter("likeunet_night_lite").scales == (1.0, 1.25, 1.5)
    assert Matter("likeunet_night_lite", realtime=True).scales == (1.0,)   # frames: one pass
    assert Matter("likeunet_night", realtime=True, scales=[2]).scales == (2.0,)
    assert Matter("likeunet_night", scales=[1]).scales == (1.0,)
    inputs = keras.Input((None, None, 3))
    assert Matter(keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))).scales == (1.0,)


def test_refine_is_closed_form_matting_of_the_predicted_alpha(sample_path):
    from humanmatting.data.refine import refine_alpha
    from humanmatting.inference import REFINE_BAND

    image = humanmatting.io.read_image(sample_path)
    raw = Matter("likeunet_night", refine=False, min_region=0).predict(image)
    refined = Matter("likeunet_night", min_region=0).predict(image)   # the preset's "cf"
    band = max(2, round(REFINE_BAND * max(image.shape[:2])))
    expected = refine_alpha(image, raw, method="cf", erode=band, dilate=band, cf_solver="scipy")
    np.testing.assert_allclose(refined, expected, atol=1e-6)
    # pymatting's CG solve of the same problem: the same matte up to its tolerance
    by_pymatting = refine_alpha(image, raw, method="cf", erode=band, dilate=band)
    np.testing.assert_allclose(refined, by_pymatting, atol=1e-4)
    # outside the band around the 0.5 edge the alpha is exactly 0 or 1; inside it stays soft
    soft = (refined > 0.01) & (refined < 0.99)
    assert soft.any() and soft.mean() < 0.2
    assert np.abs(refined - raw).max() > 0.1                     # a real change


def test_refine_defaults_to_the_preset_and_rejects_unknown_methods():
    assert Matter("likeunet_night").refine == "cf"
    assert Matter("likeunet_dark_light", weights=None).refine == "cf"
    assert Matter("likeunet_night_lite").refine == "cf"
    assert Matter("likeunet_night_lite", realtime=True).refine is None   # video frames
    assert Matter("likeunet_night", realtime=True, refine="knn").refine == "knn"
    assert Matter("likeunet_night", refine=False).refine is None
    assert Matter("likeunet_night_lite", refine="knn").refine == "knn"
    with pytest.raises(ValueError, match="refine must be one of"):
        Matter("likeunet_night_lite", refine="guided")


def test_run_is_the_model_alone_at_its_resolution(matter):
    image = make_person_image(480, 640)
    x = matter.preprocess(image)
    assert x.shape == (1, 256, 320, 1)
    prob = matter.run(x)
    assert prob.shape == (1, 256, 320) and prob.dtype == np.float32
    expected = np.asarray(matter.model(x))[0, :, :, 1]   # softmax channel 1 = person
    np.testing.assert_allclose(prob[0], expected, atol=1e-6)
    resized = cv2.resize(prob[0], (640, 480), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(matter.predict(image), np.clip(resized, 0, 1), atol=1e-6)


def test_remove_small_regions_by_hand():
    alpha = np.zeros((100, 100), np.float32)
    alpha[10:40, 10:40] = 1.0                 # 900 solid pixels: kept
    alpha[59:66, 59:66] = 0.3                 # a halo of 0.3 ...
    alpha[60:65, 60:65] = 0.9                 # ... around 25 solid pixels: dropped, halo too
    alpha[80:90, 5:10] = 0.4                  # soft only (no pixel >= 0.5): dropped
    alpha[80:85, 80:90] = 0.8                 # exactly 50 solid pixels = 0.5 % of 10,000: kept
    alpha[10:15, 60:65] = 1.0                 # 25 solid pixels joined to the big block by ...
    alpha[12:13, 40:60] = 0.2                 # ... a soft bridge (> 0.1): one region, kept
    alpha[95, 95] = 0.05                      # under the support: not a region at all
    out = remove_small_regions(alpha, 0.005)
    expected = alpha.copy()
    expected[59:66, 59:66] = 0.0
    expected[80:90, 5:10] = 0.0
    np.testing.assert_array_equal(out, expected)
    assert out is not alpha and alpha[62, 62] == 0.9            # the input is left alone
    np.testing.assert_array_equal(remove_small_regions(alpha, 0.0), alpha)
    # 51 pixels needed: the 50-pixel region goes too
    assert remove_small_regions(alpha, 0.0051)[82, 85] == 0.0
    # diagonal neighbours are connected (8-neighbourhood): two 25-pixel blocks touching at a
    # corner make one region of 50
    corner = np.zeros((100, 100), np.float32)
    corner[0:5, 0:5] = corner[5:10, 5:10] = 1.0
    np.testing.assert_array_equal(remove_small_regions(corner, 0.005), corner)
    np.testing.assert_array_equal(remove_small_regions(np.zeros((8, 8)), 0.5), 0.0)
    with pytest.raises(ValueError, match="alpha must be"):
        remove_small_regions(np.zeros((4, 4, 1)), 0.01)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="min_area"):
            remove_small_regions(alpha, bad)


def test_remove_unsure_regions_by_hand():
    alpha = np.zeros((100, 100), np.float32)
    alpha[0:30, 0:30] = 1.0                   # 900 solid pixels, the model 0.95 sure: kept
    alpha[50:80, 50:80] = 1.0                 # 900 solid pixels, the model 0.7 sure: dropped
    alpha[49:81, 49:81][alpha[49:81, 49:81] == 0] = 0.3   # ... with its halo
    alpha[0:10, 90:100] = 1.0                 # 100 pixels: half 0.9, half 0.6 -> mean 0.75
    prob = np.zeros_like(alpha)
    prob[0:30, 0:30] = 0.95
    prob[50:80, 50:80] = 0.7
    prob[0:10, 90:95], prob[0:10, 95:100] = 0.9, 0.6
    prob[49:81, 49:81][prob[49:81, 49:81] == 0] = 0.05   # the halo's own probability: unread
    out = remove_small_regions(alpha, 0.0, prob=prob, min_confidence=0.75)
    expected = alpha.copy()
    expected[49:81, 49:81] = 0.0
    np.testing.assert_array_equal(out, expected)        # 0.75 exactly is kept
    assert remove_small_regions(alpha, 0.0, prob=prob, min_confidence=0.76)[5, 95] == 0.0
    # with both tests: a region goes when it fails either
    both = remove_small_regions(alpha, 0.05, prob=prob, min_confidence=0.75)
    assert both[5, 95] == 0.0 and both[10, 10] == 1.0 and both[60, 60] == 0.0
    # prob defaults to the alpha itself (a model's raw output): the 1.0 blocks are sure
    np.testing.assert_array_equal(remove_small_regions(alpha, 0.0, min_confidence=0.9), alpha)
    soft = np.where(alpha > 0.5, np.float32(0.6), alpha)
    assert remove_small_regions(soft, 0.0, min_confidence=0.75).max() == 0.0
    with pytest.raises(ValueError, match="prob must have the alpha's shape"):
        remove_small_regions(alpha, 0.0, prob=prob[:50], min_confidence=0.5)
    for bad in (-0.1, 1.0, "x"):
        with pytest.raises(ValueError, match="min_confidence must be a probability"):
            remove_small_regions(alpha, 0.0, prob=prob, min_confidence=bad)


@pytest.mark.parametrize("option, default", [("min_region", 0.005), ("min_confidence", 0.0)])
def test_region_filters_default_to_the_preset(option, default):
    # min_confidence is off by default since 2026-12-04: it deleted real people in scenes
    assert getattr(Matter("likeunet_night"), option) == default
    assert getattr(Matter("likeunet_night_lite", realtime=True), option) == default  # frames
    assert getattr(Matter("likeunet_night", **{option: 0.5}), option) == 0.5
    assert getattr(Matter("likeunet_night", **{option: 0}), option) == 0.0
    assert getattr(Matter("likeunet_dark_light_original"), option) == 0.0     # as released
    inputs = keras.Input((None, None, 3))
    assert getattr(Matter(keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))), option) == 0
    with pytest.raises(ValueError, match=option):
        Matter("likeunet_night", **{option: 1.5})


def test_min_confidence_reads_the_models_probability(sample_path):
    image = cv2.resize(humanmatting.io.read_image(sample_path), (192, 256))
    one = dict(flip=False, scales=(1.0,), min_region=0)
    raw = Matter("likeunet_night", refine=False, min_confidence=0, **one).predict(image)
    solid = raw >= 0.5
    sure = raw[solid].mean()              # the astronaut: one region the model is sure of
    assert 0.85 < sure < 0.99
    kept = Matter("likeunet_night", refine=False, min_confidence=sure - 0.01, **one)
    np.testing.assert_array_equal(kept.predict(image), raw)
    dropped = Matter("likeunet_night", refine=False, min_confidence=sure + 0.01, **one)
    np.testing.assert_array_equal(dropped.predict(image), remove_small_regions(
        raw, 0.0, min_confidence=sure + 0.01))
    assert (dropped.predict(image) >= 0.5).sum() < 0.05 * solid.sum()
    # with refinement the confidence is still the model's: the refined alpha is 0 / 1 and
    # would be 1.0 sure everywhere
    refined = Matter("likeunet_night", refine="cf", min_confidence=0.999, **one).predict(image)
    assert (refined >= 0.5).sum() < 0.05 * solid.sum()


def test_min_region_runs_after_refinement(sample_path):
    from humanmatting.data.refine import refine_alpha
    from humanmatting.inference import REFINE_BAND

    image = humanmatting.io.read_image(sample_path)
    one = dict(flip=False, scales=(1.0,))
    raw = Matter("likeunet_night", refine=False, min_region=0, **one).predict(image)
    # the person is one region of ~40 % of the photo: a threshold of 0.6 removes it, 0.2 not
    assert 0.2 < (raw >= 0.5).mean() < 0.6
    big = Matter("likeunet_night", refine=False, min_region=0.6, **one).predict(image)
    np.testing.assert_array_equal(big, remove_small_regions(raw, 0.6))
    assert (big >= 0.5).sum() == 0
    small = Matter("likeunet_night", refine=False, min_region=0.2, **one)
    assert (small.predict(image) >= 0.5).sum() == (remove_small_regions(raw, 0.2) >= 0.5).sum()
    assert (small.predict(image) >= 0.5).sum() > 0.2 * raw.size
    # with refinement: the edge is refined first, then the small regions removed
    band = max(2, round(REFINE_BAND * max(image.shape[:2])))
    refined = Matter("likeunet_night", refine="cf", min_region=0.2, **one).predict(image)
    expected = remove_small_regions(refine_alpha(image, raw, method="cf", erode=band,
                                                 dilate=band, cf_solver="scipy"), 0.2)
    np.testing.assert_allclose(refined, expected, atol=1e-6)


def test_auto_matting_solves_the_segmenters_person_trimap(sample_path):
    from humanmatting.specs import person_trimap

    image = humanmatting.io.read_image(sample_path)
    auto = Matter("auto", weights=None)   # IndexNet untrained: the plumbing, not the quality
    assert (auto.name, auto.task, auto.segmenter.name) == ("auto", "trimap_matting",
                                                           humanmatting.DEFAULT_MODEL)
    assert auto.segmenter.refine is None   # the trimap comes from the model's own belief
    prob = Matter(humanmatting.DEFAULT_MODEL, refine=False).predict(image)
    trimap = auto.auto_trimap(image)
    np.testing.assert_array_equal(trimap, person_trimap(prob))
    alpha = auto.predict(image)
    # IndexNet on that trimap, its known regions copied: 1 / 0 outside the band
    np.testing.assert_array_equal(alpha, auto.predict(image, trimap=trimap))
    assert (alpha[trimap == 255] == 1).all() and (alpha[trimap == 0] == 0).all()
    assert (trimap == 128).mean() > 0.05 and (trimap == 255).mean() > 0.2
    # a people-free frame: no trimap to solve, an empty matte
    assert not auto.predict(np.full((96, 128, 3), 90, np.uint8)).any()
    rgba = auto.render(image, "rgba")
    np.testing.assert_array_equal(rgba[..., 3], np.rint(alpha * 255).astype(np.uint8))


def test_auto_matting_options_are_checked():
    with pytest.raises(ValueError, match="not a segmentation model"):
        Matter("auto", weights=None, segmenter="indexnet_mobilenetv2")
    with pytest.raises(ValueError, match="person_band is a share"):
        Matter("auto", weights=None, person_band=2)
    with pytest.raises(ValueError, match=r"options of Matter\('auto'\)"):
        Matter("likeunet_night", segmenter="likeunet_dark")


def test_max_side_runs_each_image_at_its_own_size():
    image = np.zeros((100, 150, 3), np.uint8)
    table = Matter("likeunet_night_lite", weights=None, flip=False, scales=[1], refine=False)
    assert table.max_side == 0 and table.preprocess(image).shape[1:3] == (256, 384)   # the table
    own = Matter("likeunet_night_lite", weights=None, max_side=640, flip=False, scales=[1],
                 refine=False)
    assert own.preprocess(image).shape[1:3] == (96, 160)   # 100 x 150, sides to 32
    small = Matter("likeunet_night_lite", weights=None, max_side=64, refine=False)
    # 150 -> 64: 42.7 x 64 -> 32 x 64; scales still multiply it
    assert small.preprocess(image).shape[1:3] == (32, 64)
    assert small.preprocess(image, scale=2.0).shape[1:3] == (96, 128)
    alpha = own.predict(image)
    assert alpha.shape == (100, 150)
    # sizes= given: the table is what was asked for
    assert Matter("likeunet_night_lite", weights=None, max_side=640, sizes=[(64, 64)]).max_side \
        == 0
    for bad in (-1, 16, 1.5, "x"):
        with pytest.raises(ValueError, match="max_side must be 0"):
            Matter("likeunet_night_lite", weights=None, max_side=bad)
