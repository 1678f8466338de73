"""Every registered model passes the shared checks; fusion of whole models."""

import numpy as np
import pytest

import humanmatting
from conftest import randomize_batchnorm
from helpers import check_model
from humanmatting.registry import get_preset

LIKEUNETS = ["likeunet_night", "likeunet_dark", "likeunet_dark_light", "likeunet_night_lite"]


@pytest.mark.slow
@pytest.mark.parametrize("name", LIKEUNETS + ["likeunet_dark_light_original"])
def test_registered_model_common_checks(name, tmp_path):
    channels = get_preset(name).input.channels
    check_model(lambda: humanmatting.create_model(name, weights=None, deploy=False),
                input_shape=(2, 64, 96, channels), output_shape=(2, 64, 96, 2),
                tmp_path=tmp_path)


@pytest.mark.parametrize("name", LIKEUNETS)
def test_deploy_form_shapes_any_multiple_of_32(name):
    channels = get_preset(name).input.channels
    model = humanmatting.create_model(name, weights=None)
    for h, w in ((32, 32), (96, 160), (224, 64)):
        y = np.asarray(model(np.zeros((1, h, w, channels), "float32")))
        assert y.shape == (1, h, w, 2)
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)  # softmax over 2 classes


@pytest.mark.parametrize("name", ["likeunet_dark_light", "likeunet_night_lite",
                                  "likeunet_night"])
def test_fused_equals_unfused(name):
    model = humanmatting.create_model(name, weights=None, deploy=False)
    randomize_batchnorm(model, seed=7)
    channels = model.input_shape[-1]
    x = np.random.default_rng(0).uniform(0, 1, (2, 64, 96, channels)).astype("float32")
    fused = humanmatting.fuse(model)
    np.testing.assert_allclose(np.asarray(fused(x)), np.asarray(model(x, training=False)),
                               atol=1e-5)
    assert fused.count_params() < model.count_params()
    assert humanmatting.fuse(fused) is fused  # already deploy form


def test_acnet_variants_use_both_forms():
    dark_light = humanmatting.create_model("likeunet_dark_light", weights=None, deploy=False)
    night_lite = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False)
    assert dark_light.get_layer("enc1_conv").norm == "sum"          # original LikeUnet form
    assert night_lite.get_layer("enc1_dw").norm == "branch"       # ACNet paper form


def test_layer_names_are_deterministic():
    a = humanmatting.create_model("likeunet_night", weights=None)
    b = humanmatting.create_model("likeunet_night", weights=None)
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    assert "enc3_conv" in [layer.name for layer in a.layers]


def test_builder_rejects_bad_channels():
    from humanmatting.models.likeunet import likeunet

    with pytest.raises(ValueError, match="input_channels"):
        likeunet(input_channels=2)


def test_lite_depths_add_residual_blocks_that_fuse():
    from humanmatting.models.likeunet import likeunet_lite

    deep = likeunet_lite(depths=(1, 1, 2, 3, 1), deploy=False)
    names = [layer.name for layer in deep.layers]
    assert {"enc3_2_dw", "enc3_2_add", "enc4_3_pw"} <= set(names) and "enc2_2_dw" not in names
    assert deep.count_params() > likeunet_lite(deploy=False).count_params()
    randomize_batchnorm(deep, seed=2)
    x = np.random.default_rng(1).uniform(0, 1, (1, 64, 96, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(humanmatting.fuse(deep)(x)),
                               np.asarray(deep(x, training=False)), atol=1e-5)
    with pytest.raises(ValueError, match="depths"):
        likeunet_lite(depths=(1, 1, 0, 1, 1))
