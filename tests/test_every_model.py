"""The checks every registered model passes, read from its preset alone: a new family gets
them all by registering (builder + presets entry)."""

import keras
import numpy as np
import pytest

import humanmatting
from conftest import make_person_image, randomize_batchnorm
from humanmatting.data.pipeline import model_batch
from humanmatting.fusion import fusable_layers, fuse, is_deploy
from humanmatting.losses import default_loss
from humanmatting.registry import get_preset, list_models
from humanmatting.specs import make_trimap, person_probability

#: an `_original` preset is its base network with the original code's pre- and
#: post-processing: the base's checks cover the network; tests/test_u2net.py checks its I/O
MODELS = [name for name in list_models() if not name.endswith("_original")]
SHAPE = (64, 96)   # non-square


def _batch(name, count=2, seed=0):
    """Model input and target from generated people, by the preset's specs."""
    preset = get_preset(name)
    samples = []
    for i in range(count):
        image = make_person_image(*SHAPE, seed=seed + i)
        alpha = (image[..., 0] > 150).astype(np.float32)
        samples.append({"image": image, "alpha": alpha, "refined": bool(i % 2),
                        "trimap": make_trimap(alpha, erode=3, dilate=3)})
    return model_batch(samples, preset.input, preset.output)


def _prob(model, name, x):
    return np.asarray(person_probability(model(x, training=False), get_preset(name).output))


def _tolerance(name, fmt=None):
    """Largest |diff| of person probabilities allowed between two float32 computations of one
    function (fused vs unfused, Keras vs an export). Float32 rounding through ~20 folded
    layers with random statistics stays below 1e-4 on 0-1 inputs; the original release reads
    raw 0-255 values, so its activations are 255x larger and the same relative rounding gives
    up to 1.7e-4 (fused, seed 0) and 1.5e-4 (ONNX); TFLite's XNNPACK also sums in another
    order."""
    raw = get_preset(name).input.normalisation == "0-255"
    return (5e-4 if fmt == "tflite" else 3e-4) if raw else (5e-4 if fmt == "tflite" else 1e-4)


def _check_output(name, output, batch):
    spec = get_preset(name).output
    if spec.names:
        assert sorted(output) == sorted(spec.names)
    prob = np.asarray(person_probability(output, spec))
    assert prob.shape == (batch,) + SHAPE and np.isfinite(prob).all()
    assert prob.min() >= 0 and prob.max() <= 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """name -> a training-form model after a few steps of fit (and its batch), built once."""
    cache = {}

    def get(name):
        if name not in cache:
            keras.utils.set_random_seed(0)
            model = humanmatting.create_model(name, weights=None, deploy=False)
            x, y = _batch(name, count=4)
            model.compile(optimizer=keras.optimizers.Adam(3e-3),
                          loss=default_loss(get_preset(name)))
            # a dict-output model gives [total, per-output...]: the total is first
            losses = [float(np.ravel(model.train_on_batch(x, y))[0]) for _ in range(4)]
            randomize_batchnorm(model, seed=7)   # fusion must fold trained-looking statistics
            cache[name] = model, x, losses
        return cache[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_builds_on_a_non_square_input_and_trains_with_a_falling_loss(name, trained):
    model, x, losses = trained(name)
    assert x.shape[-1] == get_preset(name).input.model_channels
    _check_output(name, model(x, training=False), len(x))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    deploy = humanmatting.create_model(name, weights=None)
    assert is_deploy(deploy)
    _check_output(name, deploy(x), len(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_keras_and_weights_files_round_trip(name, trained, tmp_path):
    model, x, _ = trained(name)
    expected = _prob(model, name, x)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(_prob(loaded, name, x), expected, atol=1e-6)
    model.save_weights(tmp_path / "m.weights.h5")
    again = humanmatting.create_model(name, weights=tmp_path / "m.weights.h5", deploy=False)
    np.testing.assert_allclose(_prob(again, name, x), expected, atol=1e-6)
    clone = model.__class__.from_config(model.get_config())
    assert clone.get_config() == model.get_config()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_fused_equals_unfused(name, trained):
    model, x, _ = trained(name)
    if not fusable_layers(model) or is_deploy(model):
        pytest.skip(f"{name} has no training form")
    fused = fuse(model)
    assert is_deploy(fused)
    np.testing.assert_allclose(_prob(fused, name, x), _prob(model, name, x),
                               atol=_tolerance(name))
    assert fused.count_params() < model.count_params()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["saved_model", "onnx", "tflite"])
@pytest.mark.parametrize("name", MODELS)
def test_export_parity(name, fmt, trained, tmp_path):
    from humanmatting.export import export

    model, _, _ = trained(name)
    path = tmp_path / ("model" if fmt == "saved_model" else f"model.{fmt}")
    result = export(model, fmt, path, check=True)
    assert result["check"]["max_abs_diff"] < _tolerance(name, fmt), result["check"]
    assert result["check"]["input_shape"][1:3] != result["check"]["input_shape"][2:0:-1]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_matter_on_the_bundled_photo(name, sample_path):
    import warnings

    from humanmatting.inference import Matter
    from humanmatting.io import read_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # random weights for a model with none released
        matter = Matter(name)
    image = read_image(sample_path)
    trimap = None
    if get_preset(name).input.trimap:
        trimap = make_trimap(np.asarray(humanmatting.Matter().predict(image)) >= 0.5,
                             erode=6, dilate=6)
    alpha = matter.predict(sample_path, trimap=trimap)
    assert alpha.shape == image.shape[:2] and alpha.dtype == np.float32
    assert 0 <= alpha.min() and alpha.max() <= 1
    if name in humanmatting.registry.released_models():   # the astronaut is found
        assert alpha.mean() > 0.3
