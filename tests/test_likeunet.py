"""LikeUnet specifics (the checks every model passes are in test_every_model.py)."""

import numpy as np
import pytest

import humanmatting
from conftest import randomize_batchnorm


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
