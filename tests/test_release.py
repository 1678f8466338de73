"""Releases: the one writer, `humanmatting release | soup | carry`, and `humanmatting pack`."""

import json

import cv2
import numpy as np
import pytest

from conftest import make_folder_dataset
from humanmatting.cli.main import main as run

ARCH = '{"filters": [8, 8, 16, 16, 24], "depths": [1, 1, 1, 2, 2]}'


def test_soup_averages_released_weights_tensor_by_tensor(tmp_path):
    import keras

    import humanmatting

    arch = json.loads(ARCH)
    files = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        model = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=True,
                                          **arch)
        files.append(tmp_path / f"w{seed}.weights.h5")
        model.save_weights(files[-1])
    models = tmp_path / "models"
    models.mkdir()
    assert run(["soup", "--model", "likeunet_night_lite", "--weights",
                              *map(str, files), "--models", str(models), "--arch", ARCH]) == 0
    souped = humanmatting.create_model(
        "likeunet_night_lite", weights=models / "likeunet_night_lite.weights.h5", **arch)
    a, b = (humanmatting.create_model("likeunet_night_lite", weights=f, **arch).get_weights()
            for f in files)
    assert any(np.abs(x - y).max() > 1e-3 for x, y in zip(a, b))   # two different models
    for got, x, y in zip(souped.get_weights(), a, b):
        np.testing.assert_allclose(got, (x + y) / 2, rtol=1e-6, atol=1e-7)
    assert "likeunet_night_lite.weights.h5" in (models / "SHA256SUMS").read_text()


def _training_snapshots(tmp_path, arch):
    """Two training-form files that differ in every kernel and share every BatchNorm (random,
    not the initial 0 / 1 statistics), as epochs of a run with BatchNorm frozen do."""
    import keras

    import humanmatting

    files = []
    keras.utils.set_random_seed(4)
    first = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False, **arch)
    rng = np.random.default_rng(4)
    def norms(model):
        return [layer for layer in model._flatten_layers(include_self=False)
                if isinstance(layer, keras.layers.BatchNormalization)]

    assert norms(first)
    for layer in norms(first):   # gamma, beta, moving mean, moving variance
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else
                           rng.normal(0, 0.2, w.shape) for i, w in enumerate(layer.get_weights())])
    files.append(tmp_path / "ep1.weights.h5")
    first.save_weights(files[-1])
    keras.utils.set_random_seed(5)
    second = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False, **arch)
    for a, b in zip(norms(first), norms(second), strict=True):
        b.set_weights(a.get_weights())
    files.append(tmp_path / "ep2.weights.h5")
    second.save_weights(files[-1])
    return files


def test_soup_of_training_snapshots_is_the_average_of_their_releases(tmp_path, capsys):
    import humanmatting

    arch = json.loads(ARCH)
    snapshots = _training_snapshots(tmp_path, arch)
    released = []
    for i, path in enumerate(snapshots):   # each snapshot fused on its own
        folder = tmp_path / f"rel{i}"
        folder.mkdir()
        assert run(["release", "--model", "likeunet_night_lite", "--weights",
                                  str(path), "--models", str(folder), "--arch", ARCH]) == 0
        released.append(folder / "likeunet_night_lite.weights.h5")
    a, b = (humanmatting.create_model("likeunet_night_lite", weights=f, **arch).get_weights()
            for f in released)
    assert any(np.abs(x - y).max() > 1e-3 for x, y in zip(a, b))
    # with BatchNorm shared, fusing is linear in the kernels: averaging the training form
    # and then fusing equals averaging the two releases
    models = tmp_path / "models"
    models.mkdir()
    assert run(["soup", "--model", "likeunet_night_lite", "--training-weights",
                              *map(str, snapshots), "--models", str(models),
                              "--arch", ARCH]) == 0
    assert "averaged 2 training-form files into one ingredient" in capsys.readouterr().out
    souped = humanmatting.create_model(
        "likeunet_night_lite", weights=models / "likeunet_night_lite.weights.h5", **arch)
    for got, x, y in zip(souped.get_weights(), a, b):
        np.testing.assert_allclose(got, (x + y) / 2, rtol=1e-5, atol=1e-6)
    swa = souped.get_weights()

    # the averaged snapshots count as one ingredient next to a release: (release + swa) / 2
    assert run(["soup", "--model", "likeunet_night_lite", "--weights",
                              str(released[0]), "--training-weights", *map(str, snapshots),
                              "--models", str(models), "--arch", ARCH]) == 0
    assert "averaged 2 ingredients" in capsys.readouterr().out
    mixed = humanmatting.create_model(
        "likeunet_night_lite", weights=models / "likeunet_night_lite.weights.h5", **arch)
    for got, x, s in zip(mixed.get_weights(), a, swa):
        np.testing.assert_allclose(got, (x + s) / 2, rtol=1e-5, atol=1e-6)


def test_release_of_a_config_averages_its_epochs_with_its_mix(tmp_path, capsys):
    """`release_epochs` + `release_mix` make a config the whole recipe: `humanmatting release
    --config` writes (mix + mix + SWA of the epochs) / 3, as `soup` does by hand."""
    import keras

    import humanmatting

    arch = json.loads(ARCH)
    run_dir = tmp_path / "run"
    (run_dir / "epochs").mkdir(parents=True)
    for epoch, path in zip((3, 4), _training_snapshots(tmp_path, arch)):
        path.rename(run_dir / "epochs" / f"ep{epoch:03d}.weights.h5")
    keras.utils.set_random_seed(6)
    start = tmp_path / "start.weights.h5"
    humanmatting.create_model("likeunet_night_lite", weights=None, deploy=True,
                              **arch).save_weights(start)
    config = tmp_path / "recipe.yaml"
    config.write_text(f"model: likeunet_night_lite\noverrides: {ARCH}\nout_dir: {run_dir}\n"
                      f"keep_epochs: true\nrelease_epochs: [3, 4]\n"
                      f"release_mix: [{start}, {start}]\n")
    models, by_hand = tmp_path / "models", tmp_path / "by_hand"
    assert run(["release", "--config", str(config), "--models", str(models)]) == 0
    out = capsys.readouterr().out
    assert "releasing the average of epochs 3-4 (0-based), averaged with 2" in out
    assert run(["soup", "--model", "likeunet_night_lite", "--weights", str(start), str(start),
                "--training-weights", *sorted(map(str, (run_dir / "epochs").iterdir())),
                "--models", str(by_hand), "--arch", ARCH]) == 0
    got, want, first = (humanmatting.create_model("likeunet_night_lite", weights=f, **arch)
                        for f in (models / "likeunet_night_lite.weights.h5",
                                  by_hand / "likeunet_night_lite.weights.h5", start))
    for g, w, s in zip(got.get_weights(), want.get_weights(), first.get_weights(), strict=True):
        np.testing.assert_array_equal(g, w)
    assert any(np.abs(g - s).max() > 1e-3 for g, s in zip(got.get_weights(),
                                                          first.get_weights()))

    # an epoch the run has not reached, and recipes that cannot be released
    assert run(["release", "--config", str(config), "release_epochs=[3, 5]",
                "--models", str(models)]) == 1
    assert "ep005.weights.h5: no such file (release_epochs 3-5" in capsys.readouterr().err
    for override, says in (("release_epochs=[4, 3]", "release_epochs must be [first, last]"),
                           ("keep_epochs=false", "release_epochs needs keep_epochs: true")):
        assert run(["release", "--config", str(config), override]) == 1
        assert says in capsys.readouterr().err
    assert run(["release", "--config", str(config), "--model", "likeunet_night"]) == 1
    assert "not both" in capsys.readouterr().err
    # release_zoom: the same average, as the model's zoom weights beside its release
    assert run(["release", "--config", str(config), "release_zoom=true",
                "--models", str(models)]) == 0
    assert (models / "likeunet_night_lite.zoom.weights.h5").is_file()
    zoom = humanmatting.create_model("likeunet_night_lite", **arch,
                                     weights=models / "likeunet_night_lite.zoom.weights.h5")
    for g, w in zip(zoom.get_weights(), want.get_weights(), strict=True):
        np.testing.assert_array_equal(g, w)


def test_soup_and_release_reject_bad_arguments(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    assert run(["soup", "--model", "likeunet_night_lite",
                              "--models", str(models)]) == 1
    assert "needs weights and/or training_weights" in capsys.readouterr().err
    for arch, says in (('{"filters": [8,', "--arch is not JSON"),
                       ("[8, 8]", "--arch must be a JSON object")):
        assert run(["release", "--model", "likeunet_night_lite", "--weights",
                                  str(tmp_path / "none.weights.h5"), "--arch", arch,
                                  "--models", str(models)]) == 1
        assert says in capsys.readouterr().err
    assert not list(models.iterdir())   # nothing written


def test_carry_releases_nights_weights_as_dark(tmp_path, capsys):
    import keras

    import humanmatting

    keras.utils.set_random_seed(3)
    night = humanmatting.create_model("likeunet_night", weights=None)
    night.save_weights(tmp_path / "night.weights.h5")
    models = tmp_path / "models"
    models.mkdir()
    assert run(["carry", "--model", "likeunet_dark", "--from", "likeunet_night",
                              "--weights", str(tmp_path / "night.weights.h5"),
                              "--models", str(models)]) == 0
    dark = humanmatting.create_model("likeunet_dark", weights=models / "likeunet_dark.weights.h5")
    gray = np.random.default_rng(1).uniform(0, 1, (1, 64, 96, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(dark(gray)),
                               np.asarray(night(np.repeat(gray, 3, -1))), atol=1e-5)
    assert "likeunet_dark.weights.h5" in (models / "SHA256SUMS").read_text()
    before = (models / "likeunet_dark.weights.h5").read_bytes()
    assert run(["carry", "--model", "likeunet_dark", "--from",   # another
                              "likeunet_night_lite", "--models", str(models)]) == 1  # design
    assert "does not fit" in capsys.readouterr().err
    assert (models / "likeunet_dark.weights.h5").read_bytes() == before      # left alone
    # the zoom weights: the source's released ones by default, written beside the release
    assert run(["carry", "--model", "likeunet_dark", "--from", "likeunet_night",
                "--zoom-weights", "--models", str(models)]) == 0
    zoom = humanmatting.create_model("likeunet_dark",
                                     weights=models / "likeunet_dark.zoom.weights.h5")
    released = humanmatting.registry.released_zoom_weights("likeunet_night")
    source = humanmatting.create_model("likeunet_night", weights=released)
    np.testing.assert_allclose(np.asarray(zoom(gray)),
                               np.asarray(source(np.repeat(gray, 3, -1))), atol=1e-5)
    assert "likeunet_dark.zoom.weights.h5" in (models / "SHA256SUMS").read_text()
    assert (models / "likeunet_dark.weights.h5").read_bytes() == before
    assert run(["carry", "--model", "likeunet_dark", "--from", "likeunet_dark_light_original",
                "--zoom-weights", "--models", str(models)]) == 1
    assert "has no released zoom weights" in capsys.readouterr().err




def test_float16_releases_take_half_the_bytes_and_load_into_float32(tmp_path, monkeypatch):
    import dataclasses

    import humanmatting
    from humanmatting.registry import get_preset
    from humanmatting.training import release

    model = humanmatting.create_model("likeunet_night", weights=None)
    full = release.write_release(model, "likeunet_night", tmp_path / "full", log=lambda _: None)
    half_preset = dataclasses.replace(get_preset("likeunet_night"), release_dtype="float16")
    monkeypatch.setattr(release, "get_preset", lambda name: half_preset)
    half = release.write_release(model, "likeunet_night", tmp_path / "half", log=lambda _: None)
    assert half["bytes"] < 0.6 * full["bytes"]
    # nothing staged is left behind
    assert sorted(p.name for p in (tmp_path / "half").iterdir()) == [
        "SHA256SUMS", "likeunet_night.weights.h5"]
    loaded = humanmatting.create_model("likeunet_night", weights=half["weights"])
    for ours, theirs in zip(loaded.weights, model.weights):
        assert ours.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(ours),
                                      np.asarray(theirs).astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="release_dtype must be 'float32' or 'float16'"):
        dataclasses.replace(half_preset, release_dtype="int8")


def test_write_release_refuses_a_file_over_the_limit(tmp_path, monkeypatch):
    import humanmatting
    from humanmatting.training import release

    model = humanmatting.create_model("likeunet_night", weights=None)
    monkeypatch.setattr(release, "MAX_RELEASE_BYTES", 1000)
    with pytest.raises(ValueError, match="over the 0.000953674 MiB release limit; nothing "
                                         "was written"):
        release.write_release(model, "likeunet_night", tmp_path)
    assert not list(tmp_path.iterdir())


def test_pack_keeps_stems_splits_and_targets(tmp_path, capsys):
    from humanmatting.data.readers import read_dataset
    from humanmatting.training.config import load_config

    people = make_folder_dataset(tmp_path / "people", count=10, shape=(200, 150))
    soft = make_folder_dataset(tmp_path / "soft", count=4, shape=(120, 90), soft=True, seed=20)
    bg = make_folder_dataset(tmp_path / "bg", count=3, shape=(100, 100), seed=40)
    (people / "images" / "p009.jpg").write_bytes(b"not a jpeg")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: [{{path: {people}, weight: 0.7}}, {{path: {soft}, weight: 0.2}},"
                      f" {{path: {bg}, kind: backgrounds, weight: 0.1}}]\n"
                      f"backgrounds: {bg}\nval_fraction: 0.3\nimage_cache_short_side: 64\n"
                      f"needs: [{{git: 'e8be5bf:models/x.h5', output: {tmp_path / 'x.h5'}}}]\n")
    out = tmp_path / "packed"
    assert run(["pack", "--config", str(config), "--out", str(out)]) == 1   # p009 reported
    assert "p009.jpg" in capsys.readouterr().err
    packed = load_config(out / "config.yaml")
    assert [d.path for d in packed.data] == [str(out / n) for n in ("people", "soft", "bg")]
    assert [d.weight for d in packed.data] == [0.7, 0.2, 0.1]
    assert packed.backgrounds == str(out / "bg") and packed.val_fraction == 0.3
    assert packed.needs == []   # what the needs made is packed: that machine trains this stage
    for name in ("people", "soft"):
        src, dst = (read_dataset(tmp_path / name), read_dataset(out / name))
        for a, b in zip(src.split(0.3), dst.split(0.3)):   # the same split there
            ok = [p for p in a.images if not p.endswith("p009.jpg")]
            assert sorted(map(_stem, ok)) == sorted(map(_stem, b.images))
        assert dst.refined == src.refined
    image = cv2.imread(str(out / "people" / "images" / "p000.jpg"))
    assert min(image.shape[:2]) == 64
    mask = cv2.imread(str(out / "people" / "masks" / "p000.png"), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 255}
    alpha = cv2.imread(str(out / "soft" / "alphas" / "p000.png"), cv2.IMREAD_GRAYSCALE)
    assert len(np.unique(alpha)) > 2   # soft targets stay soft
    assert len(list((out / "bg" / "images").iterdir())) == 3


def _stem(path):
    from pathlib import Path

    return Path(path).stem


@pytest.mark.slow
def test_fit_distils_freezes_batchnorm_keeps_epochs_and_stops_in_time(tmp_path):
    import keras

    import humanmatting
    from humanmatting.data.pipeline import distil_target
    from humanmatting.training import load_config
    from humanmatting.training.fit import fit, freeze_batchnorm

    y = np.zeros((1, 2, 2, 2), np.float32)
    y[0, 0, 0] = (1.0, 1.0)
    teacher = np.array([[[0.5, 1.0], [0.0, 2.0]]], np.float32)
    out = distil_target(y, teacher, 0.25)
    np.testing.assert_allclose(out[..., 0], [[[0.875, 0.25], [0.0, 0.25]]])
    np.testing.assert_array_equal(out[..., 1], y[..., 1])
    with pytest.raises(ValueError, match="distil_weight"):
        distil_target(y, teacher, 1.5)

    model = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False)
    assert freeze_batchnorm(model) > 0
    x = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x, training=True)),   # inference mode
                               np.asarray(model(x, training=False)), atol=1e-6)

    data = make_folder_dataset(tmp_path / "data", count=10, shape=(80, 64))
    tiny = {"filters": [4, 4, 4, 4, 4], "bottleneck_filters": 4, "edge_filters": 4}
    config = load_config(None, [
        f"data=[{{path: {data}, weight: 1}}]", f"out_dir={tmp_path / 'run'}",
        "sizes=[[64, 64]]", "batch_size=2", "steps_per_epoch=2", "epochs=5",
        "val_fraction=0.3", "jit_compile=false", "model=likeunet_night",
        "teacher=likeunet_night", "distil_weight=0.5", "freeze_batchnorm=true",
        "keep_epochs=true", "max_minutes=0.0001"])
    config.overrides = tiny
    summary = fit(config, log=lambda *a: None)
    assert summary["epochs_done"] == 1   # stopped after the first epoch: past max_minutes
    assert [p.name for p in (tmp_path / "run" / "epochs").iterdir()] == ["ep000.weights.h5"]
    with pytest.raises(ValueError, match="teacher likeunet_dark reads 1-channel"):
        bad = load_config(None, [f"data=[{{path: {data}, weight: 1}}]",
                                 f"out_dir={tmp_path / 'bad'}", "teacher=likeunet_dark",
                                 "sizes=[[64, 64]]", "epochs=1", "steps_per_epoch=1"])
        bad.overrides = tiny
        fit(bad, log=lambda *a: None)
    assert keras.backend.backend() == "tensorflow"


def test_model_cards_have_the_fixed_form_and_keep_their_history(tmp_path):
    from humanmatting.training.release import CARD_SECTIONS, card_history, write_card

    texts = dict(what="A model.", use="Photos.", data="Some data.", table="| a |\n|---|",
                 reproduce="`humanmatting train --config c.yaml`")
    path = write_card(tmp_path, "m", history=["- 2026-12-01: first."], log=lambda *a: None,
                      **texts)
    write_card(tmp_path, "m", history=["- 2026-12-04: second,\n  on two lines."],
               log=lambda *a: None, **texts)
    text = path.read_text()
    assert text.startswith("# Model card: `m`\n")
    assert [ln[3:] for ln in text.splitlines() if ln.startswith("## ")] == list(CARD_SECTIONS)
    assert card_history(path) == ["- 2026-12-04: second,\n  on two lines.", "- 2026-12-01: first."]
    # the service reads the first table of the validation section only
    from humanmatting.training.release import card_numbers

    write_card(tmp_path, "t", history=["- 2026-12-06: one."], log=lambda *a: None, what="w",
               use="u", data="d", reproduce="r",
               table="| photos | ours | peer |\n|---|---|---|\n| portraits (3) | 0.91 | 0.95 |\n"
                     "| mean over kinds | 0.90 | 0.93 |\n\nMore:\n\n| photos | SAD |\n|---|---|\n"
                     "| portraits (3) | 2.5 |")
    assert card_numbers(tmp_path / "t.md") == {"portraits": 0.91, "mean": 0.90}
    # every released model's card has the same form
    from pathlib import Path

    from humanmatting.registry import released_models

    models = Path(__file__).resolve().parent.parent / "models"
    for name in released_models():
        card = (models / f"{name}.md").read_text()
        assert [ln[3:] for ln in card.splitlines() if ln.startswith("## ")] == \
            list(CARD_SECTIONS), name
        assert card_history(models / f"{name}.md"), name
