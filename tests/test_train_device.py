"""tools/train_device.py: pack a dataset, augment, train a few steps (here on the TensorFlow
backend; the GPU runs use JAX or PyTorch) and release fused weights."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import make_folder_dataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import train_device  # noqa: E402


def test_augment_gives_the_bucket_size_and_a_matching_alpha():
    rng = np.random.default_rng(0)
    rgb = np.full((300, 200, 3), 90, np.uint8)
    mask = np.zeros((300, 200), np.uint8)
    mask[100:, 50:150] = 255
    rgb[mask > 0] = 200                     # the "person" is bright
    background = np.zeros((50, 80, 3), np.uint8)
    for size in [(256, 320), (384, 256)]:
        image, alpha = train_device.augment(rng, rgb, mask, size, [background],
                                            composite_p=1.0, gray_p=0.0)
        assert image.shape == (*size, 3) and image.dtype == np.uint8
        assert alpha.shape == size and alpha.dtype == np.float32
        assert 0 <= alpha.min() and alpha.max() <= 1
        if alpha.max() > 0.5 and alpha.min() < 0.5:   # image and alpha were warped together
            gray = image.mean(axis=2)
            assert gray[alpha > 0.9].mean() > gray[alpha < 0.1].mean()


def test_batches_travel_as_uint8_and_become_rough_targets():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    mask = np.zeros((120, 90), np.uint8)
    mask[40:, 20:70] = 255
    data = train_device.Packed.__new__(train_device.Packed)
    data.sets = [{"name": "people", "kind": "folder", "weight": 1.0, "items": [(rgb, mask)]}]
    data.backgrounds = []
    train_device._STATE.update(data=data, sizes=[(64, 96)], channels=1, batch=3)
    images, alphas = train_device._make_batch(7)
    assert images.shape == (3, 64, 96, 1) and images.dtype == np.uint8
    assert alphas.shape == (3, 64, 96) and alphas.dtype == np.uint8
    x, y = train_device._as_float((images, alphas), 1 / 255)
    assert x.dtype == np.float32 and x.max() <= 1
    np.testing.assert_allclose(x * 255, images, atol=1e-4)
    assert y.shape == (3, 64, 96, 2) and (y[..., 1] == 0).all()   # rough: no refined flag
    np.testing.assert_allclose(y[..., 0], alphas / 255, atol=1e-6)


def test_distil_targets_blend_the_teachers_probability():
    y = np.zeros((1, 1, 3, 2), np.float32)
    y[0, 0, :, 0] = [1.0, 0.0, 1.0]
    teacher = np.array([[[0.5, 0.25, 1.5]]], np.float32)    # 1.5: clipped to 1
    out = train_device.distil_targets(y, teacher, 0.4)
    np.testing.assert_allclose(out[0, 0, :, 0], [0.8, 0.1, 1.0])   # 0.6 a + 0.4 t
    np.testing.assert_array_equal(out[..., 1], 0)                    # still rough targets
    np.testing.assert_array_equal(y[0, 0, :, 0], [1, 0, 1])          # the input is untouched
    np.testing.assert_array_equal(train_device.distil_targets(y, teacher, 0.0), y)
    with pytest.raises(ValueError, match="distil-weight"):
        train_device.distil_targets(y, teacher, 1.5)
    with pytest.raises(ValueError, match="does not match"):
        train_device.distil_targets(y, teacher[:, :, :2], 0.5)


def test_teacher_must_read_the_students_input():
    import argparse

    from humanmatting.registry import get_preset

    args = argparse.Namespace(teacher="likeunet_dark", teacher_weights="", model="likeunet_night",
                              jit=False, distil_weight=0.5)
    with pytest.raises(ValueError, match="1-channel input .* likeunet_night reads 3"):
        train_device._teacher(args, get_preset("likeunet_night").input)
    args.teacher, args.distil_weight = "likeunet_night", -0.1   # checked before it is built
    with pytest.raises(ValueError, match=r"--distil-weight must be in \[0, 1\], got -0.1"):
        train_device._teacher(args, get_preset("likeunet_night").input)
    args.teacher = ""
    assert train_device._teacher(args, get_preset("likeunet_night").input) is None


def test_bad_distil_weight_fails_before_anything_starts(tmp_path, capsys):
    out = tmp_path / "run"
    code = train_device.main(["train", "--data", str(tmp_path / "no-data"), "--model",
                              "likeunet_night_lite", "--teacher", "likeunet_night",
                              "--distil-weight", "2", "--out", str(out)])
    assert code == 1
    assert "--distil-weight must be in [0, 1], got 2.0" in capsys.readouterr().err
    assert not out.exists()


def test_steady_rate_leaves_out_compiling_steps():
    assert train_device.steady_rate(3, 16, 2.0) == 24.0     # 48 images in 2 s
    assert train_device.steady_rate(1, 2, 3.0) == 0.7       # rounded to 0.1
    assert train_device.steady_rate(0, 16, 5.0) is None     # every step compiled a shape


def test_augment_takes_images_wider_than_the_bucket():
    """h = 53 at a 320x256 bucket: 53 x 0.8 / 0.8 rounds to 53.000000000000007 > h, which
    made the crop's offset draw fail ("high - low < 0") on wide people-free strips."""
    rng = np.random.default_rng(0)
    rgb = np.full((53, 400, 3), 90, np.uint8)
    for _ in range(20):   # area scales near 1 make the crop as tall as the image
        image, alpha = train_device.augment(rng, rgb, np.zeros((53, 400), np.uint8), (320, 256),
                                            [], min_scale=1.0)
        assert image.shape == (320, 256, 3) and alpha.shape == (320, 256) and alpha.max() == 0


def test_mix_parses_and_rejects_bad_text():
    assert train_device._parse_mix("a=0.5, b=1") == {"a": 0.5, "b": 1.0}
    assert train_device._parse_mix("") == {}
    with pytest.raises(ValueError, match="NAME=WEIGHT"):
        train_device._parse_mix("a:0.5")


def test_in_thread_keeps_order_and_raises_the_producers_error():
    assert list(train_device._in_thread(iter(range(10)), ahead=2)) == list(range(10))

    def broken():
        yield 1
        raise ValueError("bad batch")

    items = train_device._in_thread(broken(), ahead=2)
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad batch"):
        next(items)


ARCH = '{"filters": [8, 8, 16, 16, 24], "depths": [1, 1, 1, 2, 2]}'


@pytest.mark.slow
def test_pack_reports_pairs_the_reader_left_out(tmp_path, capsys):
    data = make_folder_dataset(tmp_path / "people", count=3, shape=(48, 32))
    (data / "masks" / "p001.png").unlink()
    packed = tmp_path / "packed"
    assert train_device.main(["pack", "--out", str(packed), "--data", f"{data}:1"]) == 1
    assert f"skipped {data / 'masks' / 'p001.png'}: missing" in capsys.readouterr().err
    people = json.loads((packed / "manifest.json").read_text())["datasets"][0]
    assert people["train"] + people["val"] == 2
    assert not list(packed.rglob(".tmp-*"))   # every file written through a temporary
    # a folder that pack did not make is named as such
    assert train_device.main(["train", "--data", str(data), "--model", "likeunet_night",
                              "--out", str(tmp_path / "run")]) == 1
    assert f"{data}: not a packed folder (no manifest.json" in capsys.readouterr().err


def test_pack_train_release(tmp_path):
    data = make_folder_dataset(tmp_path / "people", count=12, shape=(96, 72))
    backgrounds = tmp_path / "bg" / "images"
    backgrounds.mkdir(parents=True)
    cv2.imwrite(str(backgrounds / "b.jpg"), np.full((64, 64, 3), 30, np.uint8))
    packed = tmp_path / "packed"
    assert train_device.main(["pack", "--out", str(packed), "--data", f"{data}:0.9",
                              "--backgrounds", f"{backgrounds.parent}:0.1",
                              "--val-fraction", "0.3"]) == 0
    manifest = json.loads((packed / "manifest.json").read_text())
    names = [d["name"] for d in manifest["datasets"]]
    assert names == ["people", "bg"]
    people = manifest["datasets"][0]
    assert people["train"] + people["val"] == 12 and people["val"] > 0
    mask = cv2.imread(str(next((packed / "people" / "train").glob("*.png"))),
                      cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(mask)) <= {0, 255}          # binary masks stay binary

    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train_device.py"), "train", "--data",
         str(packed), "--model", "likeunet_night_lite", "--out", str(out), "--epochs", "2",
         "--steps-per-epoch", "2", "--batch", "2", "--workers", "1", "--warmup-steps", "1",
         "--sizes", "64x64,64x96", "--no-jit", "--minutes", "5", "--arch", ARCH,
         "--mix", "people=0.5,bg=0.5", "--teacher", "likeunet_night", "--distil-weight", "0.3",
         "--save-last", "--keep-epochs", "--composite-p", "0.5", "--composite-from", "bg",
         "--crop-background"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 2 and 0 <= float(rows[-1]["val_iou_mean"]) <= 1
    assert float(rows[-1]["images_per_s"]) > 0
    assert (out / "last.weights.h5").exists() and not list(out.glob("*tmp*"))
    assert sorted(p.name for p in out.glob("ep*.weights.h5")) == ["ep1.weights.h5",
                                                                  "ep2.weights.h5"]
    run = json.loads((out / "run.json").read_text())
    assert run["epochs_done"] == 2 and run["model"] == "likeunet_night_lite"
    assert run["arch"] == json.loads(ARCH)
    assert run["teacher"] == "likeunet_night" and run["distil_weight"] == 0.3
    assert "distilling from likeunet_night (weight 0.3)" in result.stdout

    models = tmp_path / "models"
    models.mkdir()
    from humanmatting.cli.main import main as humanmatting_main

    assert humanmatting_main(["release", "--model", "likeunet_night_lite", "--weights",
                              str(out / "best.weights.h5"), "--models", str(models),
                              "--arch", ARCH]) == 0
    released = models / "likeunet_night_lite.weights.h5"
    assert released.stat().st_size < 5 * 2**20
    assert released.name in (models / "SHA256SUMS").read_text()
    import humanmatting
    from humanmatting.fusion import fuse

    arch = json.loads(ARCH)
    trained = humanmatting.create_model("likeunet_night_lite", weights=out / "best.weights.h5",
                                        deploy=False, **arch)
    deployed = humanmatting.create_model("likeunet_night_lite", weights=released, **arch)
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 96, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(deployed(x)), np.asarray(fuse(trained)(x)),
                               atol=1e-5)


@pytest.mark.slow
def test_train_starts_a_gray_model_from_nights_release(tmp_path):
    import humanmatting

    data = make_folder_dataset(tmp_path / "people", count=6, shape=(96, 72))
    packed = tmp_path / "packed"
    assert train_device.main(["pack", "--out", str(packed), "--data", f"{data}:1",
                              "--val-fraction", "0.3"]) == 0
    night = tmp_path / "night.weights.h5"
    humanmatting.create_model("likeunet_night", weights=None).save_weights(night)

    def train(source_model):
        return subprocess.run(
            [sys.executable, str(ROOT / "tools" / "train_device.py"), "train", "--data",
             str(packed), "--model", "likeunet_dark", "--init-deploy", str(night),
             "--init-deploy-model", source_model, "--out", str(tmp_path / "run"), "--epochs",
             "1", "--steps-per-epoch", "1", "--batch", "2", "--workers", "1", "--sizes",
             "64x64", "--no-jit", "--freeze-bn"], capture_output=True, text=True, timeout=600)

    result = train("likeunet_night")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "initialised 18 layers from the deploy-form" in result.stdout
    assert '{"initial": {"people": ' in result.stdout      # scored before the first step
    result = train("likeunet_night_lite")             # the file is not Night-Lite's
    assert result.returncode != 0 and "night.weights.h5" in result.stderr


def test_freeze_batchnorm_makes_training_mode_the_inference_function():
    import humanmatting
    from conftest import randomize_batchnorm

    model = humanmatting.create_model("likeunet_dark_light", weights=None, deploy=False)
    randomize_batchnorm(model, seed=1)
    x = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 1)).astype("float32")
    assert np.abs(np.asarray(model(x, training=True)) -
                  np.asarray(model(x, training=False))).max() > 1e-3
    before = len(model.trainable_weights)
    assert train_device._freeze_batchnorm(model) == 15     # one per block (sum-form ACNet)
    assert len(model.trainable_weights) == before - 2 * 15  # gamma and beta of each
    np.testing.assert_allclose(np.asarray(model(x, training=True)),
                               np.asarray(model(x, training=False)), atol=0)


def test_negative_strips_are_the_bands_the_person_never_touches():
    import importlib.util

    spec = importlib.util.spec_from_file_location("negative_strips",
                                                  ROOT / "tools" / "negative_strips.py")
    strips = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(strips)
    mask = np.zeros((200, 300), np.uint8)
    mask[120:, 100:180] = 255                     # a person at the bottom centre
    # rows 0..109 are free (margin 10 above row 120); columns 0..89 and 190..299 too
    assert strips.free_bands(mask, margin=10, min_side=64) == [
        (0, 90, 1), (190, 110, 1), (0, 110, 0)]
    assert strips.free_bands(mask, margin=10, min_side=100) == [(190, 110, 1), (0, 110, 0)]
    assert strips.free_bands(np.full((50, 50), 255, np.uint8)) == []


def test_val_bands_are_the_longest_free_band_of_each_validation_photo(tmp_path):
    import importlib.util

    from humanmatting.data.readers import read_dataset

    spec = importlib.util.spec_from_file_location("negative_strips",
                                                  ROOT / "tools" / "negative_strips.py")
    strips = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(strips)
    data = tmp_path / "people"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        cv2.imwrite(str(data / "images" / f"{i:03d}.png"),
                    rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
        mask = np.zeros((200, 300), np.uint8)
        mask[120:, 100:180] = 255
        cv2.imwrite(str(data / "masks" / f"{i:03d}.png"), mask)
    out = tmp_path / "bands"
    assert strips.main(["--data", str(data), "--val-bands", str(out)]) == 0
    _, val = read_dataset(str(data)).split(0.1)
    assert len(val) > 0 and sorted(p.name for p in out.iterdir()) == sorted(
        f"people-{Path(p).stem}.png" for p in val.images)
    for path in val.images:   # columns 190..299: the first of the two 110-pixel bands
        band = cv2.imread(str(out / f"people-{Path(path).stem}.png"))
        np.testing.assert_array_equal(band, cv2.imread(path)[:, 190:])


def _tool(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hard_examples_select_by_both_models_scores():
    hard_examples = _tool("hard_examples")
    files = {"people": [Path(f"p{i}.jpg") for i in range(4)],
             "negatives": [Path(f"n{i}.jpg") for i in range(4)]}
    model = {"p0.jpg": 0.95, "p1.jpg": 0.80, "p2.jpg": 0.80, "p3.jpg": 0.70,
             "n0.jpg": 1.0, "n1.jpg": 0.97, "n2.jpg": 0.97, "n3.jpg": 0.999}
    peer = {"p0.jpg": 0.99,    # easy for the model: not hard
            "p1.jpg": 0.95,    # the peer does better: hard
            "p2.jpg": 0.81,    # both fail (a bad mask?): left out
            "p3.jpg": 0.72,    # exactly the margin: hard
            "n0.jpg": 1.0,     # clean, the model right
            "n1.jpg": 1.0,     # clean, the model wrong: hard negative
            "n2.jpg": 0.90,    # the peer sees a person (a passer-by): not clean
            "n3.jpg": 0.995}   # the peer's 0.5 %: still clean, and hard
    hard, clean, hard_neg = hard_examples.select(files, model, peer, {"people": 0.9},
                                                 peer_margin=0.02, peer_person=0.005)
    assert [f.name for f in hard] == ["p1.jpg", "p3.jpg"]
    assert [f.name for f in clean] == ["n0.jpg", "n1.jpg", "n3.jpg"]
    assert [f.name for f in hard_neg] == ["n1.jpg", "n3.jpg"]
    assert hard_examples.parse_thresholds("a=0.9,b-c=0.5") == {"a": 0.9, "b-c": 0.5}
    with pytest.raises(SystemExit, match="NAME=IoU"):
        hard_examples.parse_thresholds("a=x")


@pytest.mark.slow
def test_hard_examples_link_a_packed_folder_the_trainer_reads(tmp_path):
    from conftest import fixed_size_peer

    data = make_folder_dataset(tmp_path / "people", count=12, shape=(96, 72))
    packed, extended, out = tmp_path / "packed", tmp_path / "ext", tmp_path / "hard"
    assert train_device.main(["pack", "--out", str(packed), "--data", f"{data}:1",
                              "--val-fraction", "0.3"]) == 0
    assert _tool("negative_strips").main(["--data", str(data), "--pack", str(packed), "--out",
                                          str(extended), "--margin", "2",
                                          "--min-side", "8"]) == 0
    peer = fixed_size_peer(tmp_path / "peer.tflite")
    hard_examples = _tool("hard_examples")
    args = ["--data", str(extended), "--model", "likeunet_night_lite", "--peer", str(peer),
            "--out", str(out), "--iou-below", "people=1.01", "--peer-margin", "-1",
            "--peer-person", "1"]     # every photo hard, every band clean
    assert hard_examples.main(args) == 0
    scores = json.loads((out / "scores.json").read_text())
    people = sorted((packed / "people" / "train").glob("*.jpg"))
    bands = sorted((extended / "negatives" / "train").glob("*.jpg"))
    assert people and bands and len(scores["model"]) == len(people) + len(bands)
    assert all(0 <= v <= 1 for v in scores["peer"].values())
    manifest = {d["name"]: d for d in json.loads((out / "manifest.json").read_text())[
        "datasets"]}
    assert manifest["hard"]["train"] == len(people) and manifest["hard"]["kind"] == "folder"
    assert manifest["negatives_clean"]["train"] == len(bands)
    hard_bands = sum(scores["model"][str(extended.resolve() / "negatives" / "train" / b.name)]
                     < 1 for b in bands)
    assert manifest["negatives_hard"]["train"] == hard_bands
    # linked, masks with their images, and readable by the trainer
    assert sorted(p.name for p in (out / "hard" / "train").iterdir()) == sorted(
        n for p in people for n in (p.name, p.with_suffix(".png").name))
    loaded = {s["name"]: len(s["items"]) for s in train_device.Packed(out, "train").sets}
    assert loaded["hard"] == len(people) and loaded["negatives_clean"] == len(bands)
    # a second run reuses the scores and replaces the links (stricter: nothing hard)
    before = (out / "scores.json").read_bytes()
    assert hard_examples.main(args[:-6] + ["--iou-below", "people=0", "--peer-margin", "-1",
                                           "--peer-person", "1"]) == 0
    assert (out / "scores.json").read_bytes() == before
    assert list((out / "hard" / "train").iterdir()) == []
    assert (data / "images").exists() and len(list(packed.rglob("*.jpg"))) == 12


def test_freeze_batchnorm_keeps_the_named_blocks_learning():
    import humanmatting

    model = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False,
                                      depths=(1, 1, 1, 3, 5))
    total = train_device._freeze_batchnorm(model, keep=())
    model = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False,
                                      depths=(1, 1, 1, 3, 5))
    keep = ["enc5_4_dw", "enc5_4_pw"]
    # a branch-form depthwise ACBlock has three BatchNorms, a pointwise ConvBN one
    assert train_device._freeze_batchnorm(model, keep=keep) == total - 4
    assert all(w.trainable for name in keep for w in model.get_layer(name).weights
               if "gamma" in w.path or "beta" in w.path)
    assert not any(w.trainable for w in model.get_layer("enc5_3_pw").bn.weights)
    assert model.get_layer("enc5_3_pw").conv.kernel.trainable   # only BatchNorm is frozen


def test_grow_needs_a_file_and_a_deeper_arch(tmp_path, capsys):
    for extra in ([], ["--arch", '{"depths": [1, 1, 1, 3, 5]}'],
                  ["--init-deploy", str(tmp_path / "lite.weights.h5")]):
        assert train_device.main(["train", "--data", str(tmp_path), "--model",
                                  "likeunet_night_lite", "--out", str(tmp_path / "run"),
                                  "--grow"] + extra) == 1
        assert "--grow needs --init-deploy" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_background_is_cropped_to_the_photos_aspect_ratio_or_stretched():
    band = np.tile(np.arange(200, dtype=np.uint8), (50, 1))[..., None].repeat(3, axis=2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        cropped = train_device._fit_background(rng, band, 60, 60, crop=True)
        assert cropped.shape == (60, 60, 3)
        span = int(cropped[..., 0].max()) - int(cropped[..., 0].min())
        assert 45 <= span <= 50                       # a 50-wide window of the 200-wide band
    stretched = train_device._fit_background(rng, band, 60, 60, crop=False)
    assert int(stretched.max()) - int(stretched.min()) >= 195   # the whole band, squashed
    tall = band.transpose(1, 0, 2)                                # 200 high, 50 wide
    assert train_device._fit_background(rng, tall, 30, 90, crop=True).shape == (30, 90, 3)


def test_composite_from_picks_the_people_free_sets_and_rejects_others(tmp_path, capsys):
    data = make_folder_dataset(tmp_path / "people", count=6, shape=(64, 48))
    for name, count in [("bg", 2), ("bands", 3)]:
        folder = tmp_path / name / "images"
        folder.mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(folder / f"{name}{i}.jpg"), np.full((40, 90, 3), 30, np.uint8))
    packed = tmp_path / "packed"
    assert train_device.main(["pack", "--out", str(packed), "--data", f"{data}:0.9",
                              "--backgrounds", f"{tmp_path / 'bg'}:0.05",
                              f"{tmp_path / 'bands'}:0.05", "--val-fraction", "0"]) == 0
    train_device._worker_init(str(packed), [(64, 64)], 3, 2)
    assert len(train_device._STATE["data"].backgrounds) == 5      # default: every one
    assert train_device._STATE["composite_p"] == 0.25 and not train_device._STATE["crop"]
    train_device._worker_init(str(packed), [(64, 64)], 3, 2,
                              composite={"p": 0.6, "sets": ["bands"], "crop": True})
    assert len(train_device._STATE["data"].backgrounds) == 3
    assert train_device._STATE["composite_p"] == 0.6 and train_device._STATE["crop"]
    train_device._make_batch(0)                                   # batches still come
    for extra, message in [(["--composite-from", "people"], "not people-free"),
                           (["--composite-from", "nothing"], "not people-free"),
                           (["--composite-p", "1.5"], "--composite-p must be in [0, 1]")]:
        assert train_device.main(["train", "--data", str(packed), "--model",
                                  "likeunet_night_lite", "--out", str(tmp_path / "run")]
                                 + extra) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
