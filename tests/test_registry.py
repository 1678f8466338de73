"""Registry: names, presets, weights resolution and its errors."""

import warnings

import numpy as np
import pytest

import humanmatting
from humanmatting import registry


def test_list_models_holds_the_likeunet_family():
    names = humanmatting.list_models()
    for name in ["likeunet_night", "likeunet_dark", "likeunet_dark_light",
                 "likeunet_night_lite", "likeunet_dark_light_original"]:
        assert name in names
    assert names == sorted(names)
    assert humanmatting.DEFAULT_MODEL in names


def test_presets_record_input_conventions():
    assert registry.get_preset("likeunet_dark_light_original").input.scale == 1.0
    assert registry.get_preset("likeunet_dark").input.channels == 1
    night = registry.get_preset("likeunet_night").input
    assert night.channels == 3 and night.divisor == 32
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in night.sizes)
    ratios = [h / w for h, w in night.sizes]
    assert min(ratios) == 0.5 and max(ratios) == 2.0


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'nope'.*likeunet_night"):
        humanmatting.create_model("nope")


def test_duplicate_registration_is_refused():
    humanmatting.list_models()

    def likeunet_night(**kwargs):  # same name as a registered variant
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="already registered"):
        registry.register_model(likeunet_night)


def test_default_weights_missing_warns_and_builds(monkeypatch):
    humanmatting.list_models()
    from humanmatting.models.likeunet import likeunet_lite

    def unreleased_lite(**kwargs):
        return likeunet_lite(name="unreleased_lite", **kwargs)

    monkeypatch.setitem(registry._REGISTRY, "unreleased_lite",
                        registry.Preset(name="unreleased_lite", builder=unreleased_lite))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = humanmatting.create_model("unreleased_lite")
    assert model.name == "unreleased_lite"
    assert any("no released weights" in str(w.message) for w in caught)


def test_weights_path_round_trip_and_errors(tmp_path):
    model = humanmatting.create_model("likeunet_dark", weights=None)
    path = tmp_path / "dark.weights.h5"
    model.save_weights(path)
    again = humanmatting.create_model("likeunet_dark", weights=path)
    x = np.random.default_rng(0).uniform(size=(1, 64, 32, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        humanmatting.create_model("likeunet_dark", weights=tmp_path / "missing.weights.h5")
    with pytest.raises(ValueError, match="does not fit model 'likeunet_night'") as info:
        humanmatting.create_model("likeunet_night", weights=path)
    # the gray file's first kernel against the RGB model's, not kilobytes of its values
    assert "the model's shape (3, 3, 3, " in str(info.value)
    assert "the file's (3, 3, 1, " in str(info.value)
    assert len(str(info.value)) < 600 and "\n" not in str(info.value)


def test_a_training_run_file_is_fused_and_a_deploy_file_refused_by_the_training_form(tmp_path):
    # Keras alone loads a training-form U^2-Net-P file into the deploy form without a word
    # (the extra BatchNorm weights are skipped, the convolutions left unfolded)
    training = humanmatting.create_model("u2netp", weights=None, deploy=False)
    rng = np.random.default_rng(3)
    for var in training.weights:   # BatchNorm statistics that are not the identity
        if "moving_variance" in var.path:
            var.assign(rng.uniform(0.5, 2.0, var.shape).astype("float32"))
        elif "moving_mean" in var.path:
            var.assign(rng.normal(0, 0.1, var.shape).astype("float32"))
    path = tmp_path / "u2netp_training.weights.h5"
    training.save_weights(path)
    fused = humanmatting.create_model("u2netp", weights=path)   # loaded, then fused
    assert len(fused.weights) == 238 and len(training.weights) == 686
    x = rng.uniform(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(fused(x)["fused"]),
                               np.asarray(training(x, training=False)["fused"]), atol=1e-4)
    deploy = tmp_path / "u2netp_deploy.weights.h5"
    fused.save_weights(deploy)
    with pytest.raises(ValueError, match=r"holds 238 weights, the model has 686; is it the "
                                         r"deploy form \(deploy=True\)"):
        humanmatting.create_model("u2netp", weights=deploy, deploy=False)
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="junk.weights.h5: not a readable"):
        humanmatting.create_model("u2netp", weights=tmp_path / "junk.weights.h5")


def test_corrupt_default_weights_are_detected(tmp_path, monkeypatch):
    preset = registry.get_preset("likeunet_dark_light_original")
    (tmp_path / preset.weights).write_bytes(b"not the release")
    monkeypatch.setenv("HUMANMATTING_WEIGHTS", str(tmp_path))
    with pytest.raises(ValueError, match="does not match the sha256"):
        humanmatting.create_model("likeunet_dark_light_original")
    (tmp_path / preset.weights).unlink()
    with pytest.raises(FileNotFoundError, match="HUMANMATTING_WEIGHTS"):
        humanmatting.create_model("likeunet_dark_light_original")


def test_released_weights_are_deploy_form():
    with pytest.raises(ValueError, match="deploy form"):
        humanmatting.create_model("likeunet_dark_light_original", deploy=False)


def test_released_models_are_those_with_weights_on_disk(tmp_path, monkeypatch):
    released = registry.released_models()
    assert "likeunet_dark_light_original" in released
    assert all(registry.get_preset(name).weights for name in released)
    monkeypatch.setenv("HUMANMATTING_WEIGHTS", str(tmp_path))
    assert registry.released_models() == []
    preset = registry.get_preset("likeunet_night")
    (tmp_path / preset.weights).write_bytes(b"x")
    assert registry.released_models() == ["likeunet_night"]


def test_released_tflite_files_are_found_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("HUMANMATTING_WEIGHTS", str(tmp_path))
    assert registry.released_tflite("likeunet_night_lite", "int8") is None   # none shipped
    path = tmp_path / "likeunet_night_lite.int8.tflite"
    path.write_bytes(b"tflite bytes")
    assert registry.released_tflite("likeunet_night_lite", "int8") == path   # no sums: taken
    (tmp_path / "SHA256SUMS").write_text(f"{registry.sha256_file(path)}  {path.name}\n")
    assert registry.released_tflite("likeunet_night_lite", "int8") == path
    path.write_bytes(b"other bytes")
    with pytest.raises(ValueError, match=r"likeunet_night_lite\.int8\.tflite does not match"):
        registry.released_tflite("likeunet_night_lite", "int8")
    assert registry.released_tflite("likeunet_night_lite", "fp16") is None


def test_the_shipped_int8_file_matches_its_sum():
    path = registry.released_tflite("likeunet_night_lite", "int8")
    assert path is not None and path.stat().st_size < 1 << 20
    assert registry.released_sha256(path.parent)[path.name] == registry.sha256_file(path)
