"""Training on a tiny generated dataset: config, exact resume, transfer, release, CLI."""

import json
import re

import keras
import numpy as np
import pytest

import humanmatting
from conftest import fixed_size_peer, make_folder_dataset, run_cli
from humanmatting.training import load_config
from humanmatting.training.fit import fit
from humanmatting.training.transfer import init_from_deploy, transfer_deploy, transfer_weights

TINY = {"filters": [4, 4, 4, 4, 4], "bottleneck_filters": 4, "edge_filters": 4}


def tiny_config(tmp_path, **changes):
    data = make_folder_dataset(tmp_path / "data", count=12, shape=(80, 64))
    overrides = [f"data=[{{path: {data}, weight: 1}}]", f"out_dir={tmp_path / 'run'}",
                 "sizes=[[64, 64], [64, 96], [96, 64]]", "batch_size=2", "steps_per_epoch=2",
                 "epochs=3", "val_fraction=0.25", "jit_compile=false", "learning_rate=0.01",
                 "image_cache_short_side=96", f"export_dir={tmp_path / 'models'}"]
    overrides += [f"{k}={v}" for k, v in changes.items()]
    config = load_config(None, overrides)
    config.overrides = dict(TINY)
    return config


def test_config_yaml_overrides_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: likeunet_dark\nepochs: 5\nloss: {iou_weight: 2.0}\n")
    config = load_config(path, ["epochs=7", "augment.rotation=3", "deterministic=false"])
    assert (config.model, config.epochs, config.loss, config.augment) == (
        "likeunet_dark", 7, {"iou_weight": 2.0}, {"rotation": 3})
    assert config.deterministic is False
    with pytest.raises(ValueError, match="unknown config key 'epoch'"):
        load_config(path, ["epoch=3"])
    with pytest.raises(ValueError, match="epochs"):
        load_config(path, ["epochs=many"])
    with pytest.raises(ValueError, match="precision must be one of"):
        load_config(path, ["precision=fp8"])
    with pytest.raises(ValueError, match="size 60x64 is not accepted"):
        load_config(path, ["sizes=[[60, 64]]"])
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    for override, message in (("batch_size=0", "batch_size must be >= 1, got 0"),
                              ("learning_rate=0", "learning_rate must be > 0"),
                              ("val_fraction=1", "val_fraction must be below 1"),
                              ("sizes=[]", "sizes must list at least one"),
                              ("sizes=[[-32, 64]]", "size -32x64 is not accepted")):
        with pytest.raises(ValueError, match=re.escape(message)):
            load_config(path, [override])
    # PyYAML reads 1e-3 (no dot) as a string; numeric fields take it as the number it is
    path.write_text("learning_rate: 1e-3\nepochs: 2.5\n")
    with pytest.raises(ValueError, match="epochs must be an integer, got 2.5"):
        load_config(path)
    path.write_text("learning_rate: 1e-3\n")
    assert load_config(path).learning_rate == 0.001
    path.write_bytes(b"\xff\xd8\xff\xe0 a JPEG")
    with pytest.raises(ValueError, match="c.yaml: not a text file"):
        load_config(path)
    path.write_text("epochs: [1\n")
    with pytest.raises(ValueError, match="c.yaml: not valid YAML"):
        load_config(path)


def test_fit_checks_its_files_before_reading_the_data(tmp_path):
    lines = []
    config = tiny_config(tmp_path, init_from=tmp_path / "missing.weights.h5",
                         export="true", peer_tflite=tmp_path / "missing.tflite")
    with pytest.raises(FileNotFoundError, match="init_from: .*missing.weights.h5: no such file"):
        fit(config, resume=True, log=lines.append)
    assert lines[0] == (f"no checkpoint in {tmp_path / 'run'} to resume from: starting from "
                        "the beginning")
    assert lines[1].startswith(f"peer_tflite: {tmp_path / 'missing.tflite'}: no such file")
    assert len(lines) == 2
    config = tiny_config(tmp_path, backgrounds=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="backgrounds: .*nowhere: no such folder"):
        fit(config, log=lines.append)
    assert not (tmp_path / "run").exists()   # nothing was started


class Crash(keras.callbacks.Callback):
    """Raises in the middle of an epoch, as a kill would stop the process there."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt("killed")


@pytest.mark.slow
def test_resume_after_a_mid_epoch_kill_is_exact(tmp_path):
    straight = tiny_config(tmp_path / "a")
    summary = fit(straight, log=lambda *a: None)
    assert summary["epochs_done"] == 3

    interrupted = tiny_config(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, log=lambda *a: None, callbacks=[Crash(epoch=1, batch=0)])
    state = json.loads((tmp_path / "b" / "run" / "state.json").read_text())
    assert state["epoch"] == 1     # epoch 0 was checkpointed, epoch 1 was lost mid-way
    resumed = fit(interrupted, resume=True, log=lambda *a: None)
    assert resumed["epochs_done"] == 3

    a = keras.models.load_model(tmp_path / "a" / "run" / "checkpoint.keras")
    b = keras.models.load_model(tmp_path / "b" / "run" / "checkpoint.keras")
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=wa.path)
    ha, hb = summary["history"], resumed["history"]
    assert [r["val_iou"] for r in ha] == [r["val_iou"] for r in hb]


@pytest.mark.slow
def test_release_export_writes_fused_weights_and_card(tmp_path):
    peer = fixed_size_peer(tmp_path / "peer.tflite")
    config = tiny_config(tmp_path, epochs=1, export="true", peer_tflite=str(peer))
    summary = fit(config, log=lambda *a: None)
    release = summary["release"]
    models = tmp_path / "models"
    assert (models / "likeunet_night.weights.h5").is_file()
    card = (models / "likeunet_night.md").read_text()
    assert "humanmatting" in card and "iou" in card and "likeunet_dark_light_original" in card
    # the peer's row, and the image-by-image comparison with it
    assert "| mediapipe_selfie |" in card
    assert "likeunet_night - mediapipe_selfie, iou per image: mean" in card
    sums = (models / "SHA256SUMS").read_text()
    assert release["sha256"] in sums
    model = humanmatting.create_model("likeunet_night", weights=models / "likeunet_night.weights.h5",
                                      **TINY)
    assert humanmatting.fusion.is_deploy(model)


def test_transfer_rgb_plain_to_gray_acnet_keeps_the_function():
    src = humanmatting.create_model("likeunet_night", weights=None, deploy=False, **TINY)
    rng = np.random.default_rng(0)
    for w in src.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2, w.shape))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(rng.normal(0, 0.3, w.shape))
    dst = humanmatting.create_model("likeunet_dark_light", weights=None, deploy=False, **TINY)
    copied = transfer_weights(src, dst)
    assert "pre_conv" in copied and "enc1_conv" in copied and "dec3_tconv" in copied
    gray = rng.uniform(0, 1, (1, 64, 96, 1)).astype("float32")
    rgb = np.repeat(gray, 3, axis=-1)
    np.testing.assert_allclose(np.asarray(dst(gray, training=False)),
                               np.asarray(src(rgb, training=False)), atol=1e-5)


@pytest.mark.parametrize("dst_name", ["likeunet_dark", "likeunet_dark_light"])
def test_transfer_deploy_carries_night_to_gray(dst_name):
    """Night's fused RGB weights into a fused gray model: the same output on a gray image."""
    from humanmatting.fusion import fuse

    rng = np.random.default_rng(4)
    trained = humanmatting.create_model("likeunet_night", weights=None, deploy=False)
    for w in trained.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2, w.shape))
        elif "moving_mean" in w.path or "beta" in w.path or w.path.endswith("bias"):
            w.assign(rng.normal(0, 0.3, w.shape))
    night = fuse(trained)
    dst = humanmatting.create_model(dst_name, weights=None)
    copied = transfer_deploy(night, dst)
    assert len(copied) == len([layer for layer in dst.layers if layer.weights])
    gray = rng.uniform(0, 1, (2, 64, 96, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(dst(gray)), np.asarray(night(np.repeat(gray, 3, -1))),
                               atol=1e-5)
    with pytest.raises(ValueError, match="training form"):
        transfer_deploy(trained, dst)


@pytest.mark.parametrize("name", ["likeunet_night_lite", "likeunet_dark_light", "likeunet_night",
                                  "likeunet_dark_light_original", "indexnet_mobilenetv2",
                                  "u2netp"])
def test_init_from_deploy_keeps_the_released_function(name):
    """A released (fused) model back in training form: the same function in inference mode,
    nearly the same in training mode on the calibration batch, and it trains from there.
    IndexNet's and U^2-Net's blocks sit inside composite layers (index blocks, RSU blocks)."""
    from humanmatting.fusion import fuse

    rng = np.random.default_rng(3)
    trained = humanmatting.create_model(name, weights=None, deploy=False)
    for w in trained.weights:  # trained-looking weights, then fused as a release is
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2, w.shape))
        elif "moving_mean" in w.path or "beta" in w.path or w.path.endswith("bias"):
            w.assign(rng.normal(0, 0.3, w.shape))
    released = fuse(trained)
    from humanmatting.registry import get_preset

    scale = get_preset(name).input.scale
    channels = released.inputs[0].shape[-1]
    images = (rng.uniform(0, 255, (6, 64, 96, channels)) * scale).astype("float32")
    dst = humanmatting.create_model(name, weights=None, deploy=False)
    copied = init_from_deploy(released, dst, images)
    assert {path.split("/")[0] for path in copied} == {
        layer.name for layer in dst.layers if layer.weights}
    if name.startswith("likeunet"):
        assert copied == [path for path in copied if "/" not in path]   # no composites
    else:
        assert any("/" in path for path in copied)   # blocks inside composite layers
    outputs = keras.tree.flatten

    def run(model, **kwargs):
        return [np.asarray(y) for y in outputs(model(images, **kwargs))]

    expected = run(released)
    # float32 rounding grows with the activations: the original reads raw 0-255 values
    atol = 2e-5 if scale < 1 else 1e-4
    for got, want in zip(run(dst, training=False), expected):
        np.testing.assert_allclose(got, want, atol=atol)
    if name.startswith("likeunet"):   # (IndexNet's ASPP drops out in training mode)
        in_training = run(dst, training=True)   # batch statistics: close, not exact
        assert np.abs(in_training[0] - expected[0]).mean() < 0.02
    for got, want in zip(run(fuse(dst)), expected):
        np.testing.assert_allclose(got, want, atol=atol)
    with pytest.raises(ValueError, match="lacks the blocks"):
        other = "likeunet_night" if name == "likeunet_night_lite" else "likeunet_night_lite"
        init_from_deploy(humanmatting.create_model(other, weights=None), dst, images)


def test_init_from_deploy_grows_residual_blocks_near_the_identity():
    """A deeper likeunet_lite from a shallower release: the old blocks carry over exactly, the
    new residual pairs add under 1 % of their input, and the grown model still learns."""
    from humanmatting.fusion import fuse
    from humanmatting.training.transfer import GROW_GAMMA

    rng = np.random.default_rng(4)
    small = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False)
    for w in small.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2, w.shape))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(rng.normal(0, 0.3, w.shape))
    released = fuse(small)
    images = rng.uniform(0, 1, (6, 64, 96, 3)).astype("float32")
    deeper = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False,
                                       depths=(1, 1, 1, 3, 5))
    with pytest.raises(ValueError, match=r"lacks the blocks \['enc5_4_dw'.*grow=True"):
        init_from_deploy(released, deeper, images)
    copied = init_from_deploy(released, deeper, images, grow=True)
    new = [layer.name for layer in deeper.layers if layer.weights and layer.name not in copied]
    assert new == ["enc5_4_dw", "enc5_4_pw", "enc5_5_dw", "enc5_5_pw"]
    gamma, beta = deeper.get_layer("enc5_4_pw").bn.get_weights()[:2]
    np.testing.assert_array_equal(gamma, np.float32(GROW_GAMMA))
    np.testing.assert_array_equal(beta, 0)
    # the stage's output: the old blocks' exactly (same weights as the release's), plus at
    # most a few hundredths of unit-variance activations from the new pairs
    old_stage = keras.Model(released.inputs, released.get_layer("enc5_3_add").output)(images)
    new_stage = keras.Model(deeper.inputs, deeper.get_layer("enc5_5_add").output)(images)
    old_stage, new_stage = np.asarray(old_stage), np.asarray(new_stage)
    assert 0 < np.abs(new_stage - old_stage).max() < 10 * GROW_GAMMA
    np.testing.assert_allclose(np.asarray(deeper(images, training=False)),
                               np.asarray(released(images)), atol=0.05)
    import tensorflow as tf

    target = (images.mean(-1, keepdims=True) > 0.5).astype("float32")
    with tf.GradientTape() as tape:   # the new pairs get gradients: they can learn
        person = deeper(images, training=False)[..., 1:]
        loss = -tf.reduce_mean(target * tf.math.log(person + 1e-6)
                               + (1 - target) * tf.math.log(1 - person + 1e-6))
    news = [w for name in new for w in deeper.get_layer(name).trainable_weights]
    grads = tape.gradient(loss, [w.value for w in news])
    assert all(g is not None for g in grads)
    assert sum(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads) >= len(grads) - 4
    with pytest.raises(ValueError, match="lacks the blocks"):   # not only residual pairs
        init_from_deploy(humanmatting.create_model("likeunet_night", weights=None), deeper,
                         images, grow=True)


def test_train_and_eval_cli(tmp_path):
    data = make_folder_dataset(tmp_path / "data", count=4, shape=(80, 64))
    (data / "images" / "broken.jpg").write_bytes(b"\xff\xd8 no")
    (data / "masks" / "broken.png").write_bytes(b"\x89PNG no")
    result = run_cli("eval", "--data", data, "--json", cwd=tmp_path)
    assert result.returncode == 1                       # one pair failed
    report = json.loads(result.stdout)
    assert report["count"] == 4
    scores = report["per_model"][humanmatting.DEFAULT_MODEL]
    assert set(scores) == {"iou", "miou", "boundary_f", "mae"}
    assert "broken.jpg" in result.stderr
    bad = run_cli("train", "--config", tmp_path / "none.yaml", cwd=tmp_path)
    assert bad.returncode == 1 and "none.yaml: no such config file" in bad.stderr


@pytest.mark.parametrize("src_name, dst_name", [
    ("likeunet_dark_light_original", "likeunet_night"),
    ("likeunet_dark_light_original", "likeunet_dark_light"),
    ("likeunet_dark_light_original", "likeunet_dark"),
])
def test_transfer_from_the_original_training_form_keeps_the_function(src_name, dst_name):
    from humanmatting.registry import get_preset

    src = humanmatting.create_model(src_name, weights=None, deploy=False)
    rng = np.random.default_rng(1)
    for w in src.weights:  # trained-looking BN statistics and biases
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2, w.shape))
        elif "moving_mean" in w.path or "beta" in w.path or w.path.endswith("bias"):
            w.assign(rng.normal(0, 0.3, w.shape))
    dst = humanmatting.create_model(dst_name, weights=None, deploy=False)
    ratio = get_preset(src_name).input.scale / get_preset(dst_name).input.scale
    copied = transfer_weights(src, dst, input_scale=ratio)
    assert len(copied) == len([layer for layer in dst.layers if layer.weights])
    raw_gray = rng.uniform(0, 255, (1, 64, 96, 1)).astype("float32")
    if get_preset(dst_name).input.channels == 3:
        x = np.repeat(raw_gray, 3, axis=-1) / 255.0   # R = G = B: luma equals the gray
    else:
        x = raw_gray * get_preset(dst_name).input.scale
    # float32 rounding through ~20 layers of random weights, with the input rescaled by 1/255
    # and (RGB) split by the luma weights: up to ~2e-5 on the softmax, depending on the draw
    np.testing.assert_allclose(np.asarray(dst(x, training=False)),
                               np.asarray(src(raw_gray, training=False)), atol=5e-5)


def test_run_state_keeps_best_and_stops_early(tmp_path):
    from humanmatting.training.fit import RunState

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="adam", loss="mse")
    state = RunState(tmp_path, "val_iou", patience=2)
    state.set_model(model)
    for epoch, value in enumerate([0.5, 0.6, 0.55, 0.58]):
        state.on_epoch_begin(epoch)
        state.on_epoch_end(epoch, {"val_iou": value, "loss": 1.0 - value})
        if model.stop_training:
            break
    assert epoch == 3 and model.stop_training
    saved = json.loads((tmp_path / "state.json").read_text())
    assert (saved["epoch"], saved["best_epoch"], saved["wait"]) == (4, 1, 2)
    assert saved["best"] == pytest.approx(0.6)
    assert (tmp_path / "best.weights.h5").is_file()
    assert (tmp_path / "checkpoint.keras").is_file()
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("epoch")
    # A resumed RunState takes over the same counters.
    again = RunState(tmp_path, "val_iou", patience=2, state=saved)
    assert (again.best, again.wait) == (pytest.approx(0.6), 2)


def test_validation_every_few_epochs_keeps_best_and_patience_to_validated_ones(tmp_path):
    from humanmatting.training.fit import RunState, validation_epochs

    assert validation_epochs(7, 3) == [3, 6, 7]   # every third and the last, 1-indexed
    assert validation_epochs(4, 1) == [1, 2, 3, 4]
    assert validation_epochs(2, 5) == [2]
    with pytest.raises(ValueError, match="validate_every must be at least 1"):
        validation_epochs(3, 0)
    with pytest.raises(ValueError, match="validate_every must be >= 1"):
        load_config(None, ["validate_every=0"])
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="adam", loss="mse")
    state = RunState(tmp_path, "val_iou", patience=2, validated=[1, 3, 5])
    state.set_model(model)
    logs = [{"loss": 1.0}, {"val_iou": 0.5}, {"loss": 0.9}, {"val_iou": 0.4}, {"loss": 0.8},
            {"val_iou": 0.45}]
    for epoch, log in enumerate(logs):
        state.on_epoch_begin(epoch)
        state.on_epoch_end(epoch, log)
        saved = json.loads((tmp_path / "state.json").read_text())
        assert saved["wait"] == {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2}[epoch]
        assert model.stop_training == (epoch == 5)   # two validated epochs without a better
    assert (saved["best_epoch"], saved["best"]) == (1, pytest.approx(0.5))


def test_fit_validates_only_every_few_epochs(tmp_path):
    import csv

    import cv2

    config = tiny_config(tmp_path, validate_every=2)
    summary = fit(config, log=lambda *a: None)
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    # epochs 2 and 3 (the last) validate, both passes: Keras' val_loss and the kinds' IoU
    assert [bool(r["val_loss"]) for r in rows] == [False, True, True]
    assert [bool(r["val_iou_mix"]) for r in rows] == [False, True, True]
    assert all(r["loss"] for r in rows)
    assert summary["best_epoch"] in (1, 2)
    curves = cv2.imread(str(tmp_path / "run" / "history.png"))
    assert curves is not None and curves.std() > 10   # the plot takes the gaps


def test_xla_auto_is_off_for_depthwise_models_on_cpu():
    import tensorflow as tf

    from humanmatting.training.fit import choose_jit

    strategy = tf.distribute.get_strategy()
    auto = load_config(None, ["jit_compile=auto"])
    lite = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False)
    plain = humanmatting.create_model("likeunet_dark", weights=None, deploy=False)
    assert choose_jit(auto, strategy, plain) is True
    assert choose_jit(auto, strategy, lite) is False
    assert choose_jit(load_config(None, ["jit_compile=true"]), strategy, lite) is True
    assert choose_jit(load_config(None, ["jit_compile=false"]), strategy, plain) is False


def test_validation_is_reported_per_kind_and_the_best_epoch_by_their_mean(tmp_path):
    import csv

    people = make_folder_dataset(tmp_path / "people", count=10, shape=(80, 64))
    scenes = make_folder_dataset(tmp_path / "scenes", count=10, shape=(64, 96), seed=50)
    empty = tmp_path / "empty"
    empty.mkdir()
    import cv2

    for i in range(6):
        cv2.imwrite(str(empty / f"e{i}.jpg"), np.full((64, 80, 3), 40 + 20 * i, np.uint8))
    config = tiny_config(tmp_path, epochs=2, augment="{zoom_out: 0.5, extra_people: 0.5}")
    config.data = type(config)(data=[
        {"path": str(people), "photos": "portraits"},
        {"path": str(scenes), "photos": "small people", "val_fraction": 0.5},
        {"path": str(empty), "kind": "backgrounds", "val_fraction": 0.5}]).data
    summary = fit(config, log=lambda *a: None)
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    kinds = ["val_iou_portraits", "val_iou_small_people", "val_iou_people_free"]
    for row in rows:
        values = [float(row[k]) for k in kinds]
        assert all(0 <= v <= 1 for v in values)
        assert float(row["val_iou_mix"]) == pytest.approx(np.mean(values), abs=1e-5)
    best = max(range(len(rows)), key=lambda i: float(rows[i]["val_iou_mix"]))
    curves = cv2.imread(str(tmp_path / "run" / "history.png"))   # written beside the csv
    assert curves is not None and curves.shape[1] > 800 and curves.std() > 10
    assert summary["best_epoch"] == best
    assert summary["best"] == pytest.approx(float(rows[best]["val_iou_mix"]), abs=1e-5)


@pytest.mark.slow
def test_u2netp_trains_with_deep_supervision_and_logs_every_term(tmp_path):
    import csv

    config = tiny_config(tmp_path, model="u2netp", epochs=2, loss="{kind: portrait}",
                         sizes="[[64, 64]]", steps_per_epoch=4)
    config.overrides = {}
    soft = make_folder_dataset(tmp_path / "soft", count=8, shape=(80, 64), soft=True, seed=30)
    config.data = type(config)(data=[*config.data, {"path": str(soft), "weight": 1}]).data
    summary = fit(config, log=lambda *a: None)   # rough and refined targets in one run
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert len(rows) == 2 and summary["best_epoch"] in (0, 1)
    assert max(float(row["fused_loss_details"]) for row in rows) > 0   # refined batches
    names = ["fused", *(f"side{i}" for i in range(1, 7))]
    for row in rows:
        parts = [float(row[f"{n}_loss"]) for n in names]
        assert all(np.isfinite(parts)) and float(row["loss"]) == pytest.approx(sum(parts),
                                                                               rel=1e-3)
        for term in ("l1", "details", "blur_mse"):
            assert np.isfinite(float(row[f"fused_loss_{term}"]))
        assert 0 <= float(row["val_iou_mix"]) <= 1
    model = humanmatting.create_model("u2netp", weights=tmp_path / "run" / "best.weights.h5",
                                      deploy=False)   # the run's weights are training form
    out = model.predict(np.zeros((1, 64, 64, 3), np.float32), verbose=0)
    assert sorted(out) == sorted(names) and out["fused"].shape == (1, 64, 64, 1)


@pytest.mark.slow
def test_indexnet_fits_two_epochs_with_the_composition_loss_on_random_trimaps(tmp_path):
    import csv

    soft = make_folder_dataset(tmp_path / "soft", count=10, shape=(80, 64), soft=True, seed=60)
    config = tiny_config(tmp_path, model="indexnet_mobilenetv2", epochs=2, sizes="[[64, 64]]",
                         learning_rate=0.001, monitor="val_mse_mix", val_fraction=0.3)
    config.overrides = {}
    config.data = type(config)(data=[{"path": str(soft), "weight": 1, "photos": "soft"}]).data
    summary = fit(config, log=lambda *a: None)
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert len(rows) == 2 and summary["epochs_done"] == 2
    for row in rows:
        for term in ("loss", "loss_alpha", "loss_composition", "val_loss"):
            assert np.isfinite(float(row[term])), term
        assert float(row["loss_alpha"]) > 0     # the random trimaps have unknown pixels
        # the unknown region's errors (MSE x 1e3, SAD / 1e3), per kind and their mean
        assert 0 <= float(row["val_mse_soft"]) <= 1000 and float(row["val_sad_soft"]) >= 0
        assert float(row["val_mse_mix"]) == pytest.approx(float(row["val_mse_soft"]))
    best = min(range(2), key=lambda i: float(rows[i]["val_mse_mix"]))   # lower is better
    assert summary["best_epoch"] == best
    model = humanmatting.create_model("indexnet_mobilenetv2",
                                      weights=tmp_path / "run" / "best.weights.h5", deploy=False)
    assert model(np.zeros((1, 64, 64, 4), np.float32)).shape == (1, 64, 64, 1)
    # a released (fused) IndexNet starts a new run: its index blocks' ConvBNs sit inside
    # composite layers, and init_from_deploy reaches them
    from humanmatting.fusion import fuse

    released = tmp_path / "released.weights.h5"
    fuse(model).save_weights(released)
    config.init_from, config.epochs, config.out_dir = str(released), 1, str(tmp_path / "ft")
    lines = []
    summary = fit(config, log=lines.append)
    assert summary["epochs_done"] == 1
    assert any(f"from the deploy-form {released}" in line for line in lines), lines
