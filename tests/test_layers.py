"""Blocks with a training and a deploy form: fusion maths against hand-computed cases."""

import keras
import numpy as np
import pytest

from conftest import randomize_batchnorm
from humanmatting.layers import (ACBlock, BilinearUpsample2x, ConvBN, DepthToSpace2x,
                                 NearestUpsample2x, fold_batchnorm, transpose_to_conv_kernel)
from humanmatting.layers.acnet import pad_to_square


def test_fold_batchnorm_hand_computed():
    # conv y = 2x + 1, then BN(gamma=3, beta=0.5, mean=1, var + eps = 4): scale s = 3 / 2.
    kernel, bias = fold_batchnorm(np.array([[[[2.0]]]]), np.array([1.0]), np.array([3.0]),
                                  np.array([0.5]), np.array([1.0]), np.array([4.0 - 1e-3]),
                                  1e-3)
    np.testing.assert_allclose(kernel.ravel(), [3.0])       # 2 * 1.5
    np.testing.assert_allclose(bias, [0.5])                 # (1 - 1) * 1.5 + 0.5


def test_pad_to_square_puts_kernel_in_middle():
    row = np.arange(3.0).reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(pad_to_square(row, 3)[..., 0, 0],
                                  [[0, 0, 0], [0, 1, 2], [0, 0, 0]])
    col = np.arange(3.0).reshape(3, 1, 1, 1)
    np.testing.assert_array_equal(pad_to_square(col, 3)[..., 0, 0],
                                  [[0, 0, 0], [0, 1, 0], [0, 2, 0]])


def test_transposed_kernel_equals_conv():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 7, 4)).astype("float32")
    tconv = keras.layers.Conv2DTranspose(5, 3, padding="same")
    y = np.asarray(tconv(x))
    conv = keras.layers.Conv2D(5, 3, padding="same")
    conv.build(x.shape)
    conv.set_weights([transpose_to_conv_kernel(tconv.kernel.numpy()), tconv.bias.numpy()])
    np.testing.assert_allclose(np.asarray(conv(x)), y, atol=1e-5)


def _fuse_block(block, x):
    """Runs `block` (training form, random BN statistics) and its deploy twin on `x`."""
    block(x)
    randomize_batchnorm(block, seed=3)
    for w in block.weights:  # random biases too, where there are any
        if w.path.endswith("bias"):
            w.assign(np.random.default_rng(5).normal(size=w.shape))
    config = block.get_config()
    config["deploy"] = True
    twin = block.__class__.from_config(config)
    twin(x)
    twin.set_weights([w.astype("float32") for w in block.fused_weights()])
    return np.asarray(block(x, training=False)), np.asarray(twin(x)), twin


@pytest.mark.parametrize("norm", ["branch", "sum"])
@pytest.mark.parametrize("conv_bias", [False, True])
def test_acblock_fused_equals_unfused(norm, conv_bias):
    x = np.random.default_rng(1).normal(size=(2, 12, 10, 6)).astype("float32")
    block = ACBlock(8, norm=norm, conv_bias=conv_bias)
    y, y_fused, twin = _fuse_block(block, x)
    np.testing.assert_allclose(y_fused, y, atol=1e-5)
    assert twin.count_params() < block.count_params()


@pytest.mark.parametrize("norm", ["branch", "sum"])
def test_depthwise_acblock_fused_equals_unfused(norm):
    x = np.random.default_rng(4).normal(size=(2, 11, 9, 6)).astype("float32")
    block = ACBlock(6, norm=norm, activation="relu", depthwise=True)
    y, y_fused, twin = _fuse_block(block, x)
    np.testing.assert_allclose(y_fused, y, atol=1e-5)
    assert isinstance(twin.conv, keras.layers.DepthwiseConv2D)
    assert tuple(twin.conv.kernel.shape) == (3, 3, 6, 1)


def test_depthwise_acblock_hand_computed():
    # One channel, unit BN, all-ones kernels: the fused 3x3 kernel is 1 + cross (3 in the centre).
    block = ACBlock(1, depthwise=True, norm="sum", epsilon=0.0)
    x = np.zeros((1, 5, 5, 1), "float32")
    x[0, 2, 2, 0] = 1.0
    block(x)
    for conv in (block.square, block.hor, block.ver):
        conv.kernel.assign(np.ones(conv.kernel.shape, "float32"))
    kernel, bias = block.fused_weights()
    np.testing.assert_allclose(kernel[..., 0, 0], [[1, 2, 1], [2, 3, 2], [1, 2, 1]])
    np.testing.assert_allclose(bias, [0.0])
    np.testing.assert_allclose(np.asarray(block(x, training=False))[0, 1:4, 1:4, 0],
                               [[1, 2, 1], [2, 3, 2], [1, 2, 1]], atol=1e-6)


def test_depthwise_acblock_must_keep_channels():
    with pytest.raises(ValueError, match="keeps the channels"):
        ACBlock(4, depthwise=True)(np.zeros((1, 8, 8, 3), "float32"))


def test_strided_convbn_fuses_and_halves():
    x = np.random.default_rng(6).normal(size=(1, 16, 10, 3)).astype("float32")
    block = ConvBN(5, activation="relu", strides=2)
    y, y_fused, _ = _fuse_block(block, x)
    assert y.shape == (1, 8, 5, 5)
    np.testing.assert_allclose(y_fused, y, atol=1e-5)
    with pytest.raises(ValueError, match="strides"):
        ConvBN(4, strides=2, transpose=True)


@pytest.mark.parametrize("transpose", [False, True])
def test_convbn_fused_equals_unfused(transpose):
    x = np.random.default_rng(2).normal(size=(1, 8, 14, 3)).astype("float32")
    block = ConvBN(5, activation="relu", transpose=transpose, conv_bias=True)
    y, y_fused, twin = _fuse_block(block, x)
    np.testing.assert_allclose(y_fused, y, atol=1e-5)
    assert isinstance(twin.conv, keras.layers.Conv2D)
    assert not isinstance(twin.conv, keras.layers.Conv2DTranspose)


def test_acblock_rejects_bad_arguments():
    with pytest.raises(ValueError, match="norm must be one of"):
        ACBlock(4, norm="batch")
    with pytest.raises(ValueError, match="odd"):
        ACBlock(4, kernel_size=4)
    with pytest.raises(ValueError, match="odd"):
        ConvBN(4, kernel_size=2)


def test_bilinear_upsample_equals_upsampling2d():
    x = np.random.default_rng(3).normal(size=(2, 5, 7, 3)).astype("float32")
    ours = np.asarray(BilinearUpsample2x()(x))
    ref = np.asarray(keras.layers.UpSampling2D(interpolation="bilinear")(x))
    assert ours.shape == (2, 10, 14, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_nearest_upsample_equals_upsampling2d():
    x = np.random.default_rng(8).normal(size=(2, 5, 7, 3)).astype("float32")
    ours = np.asarray(NearestUpsample2x()(x))
    np.testing.assert_array_equal(ours, np.asarray(keras.layers.UpSampling2D()(x)))


def test_depth_to_space_hand_computed():
    # One output channel: the four input channels fill each 2x2 block row by row.
    x = np.arange(8, dtype="float32").reshape(1, 1, 2, 4)
    y = np.asarray(DepthToSpace2x()(x))
    assert y.shape == (1, 2, 4, 1)
    np.testing.assert_array_equal(y[0, ..., 0], [[0, 1, 4, 5], [2, 3, 6, 7]])


@pytest.mark.parametrize("layer_cls", [BilinearUpsample2x, NearestUpsample2x, DepthToSpace2x])
def test_upsampling_keras_ops_path_equals_tensorflow_path(layer_cls, monkeypatch):
    """The keras.ops maths used on the JAX / PyTorch backends equals the TensorFlow ops."""
    from humanmatting.layers import resize

    x = np.random.default_rng(4).normal(size=(2, 5, 7, 8)).astype("float32")
    tf_path = np.asarray(layer_cls()(x))
    monkeypatch.setattr(resize, "_tensorflow", lambda: False)
    np.testing.assert_allclose(np.asarray(layer_cls()(x)), tf_path, atol=1e-6)


@pytest.mark.parametrize("layer", [ACBlock(4, activation="relu", norm="sum", conv_bias=True),
                                   ACBlock(4, depthwise=True), ConvBN(4, strides=2),
                                   ConvBN(4, transpose=True), BilinearUpsample2x(),
                                   NearestUpsample2x(), DepthToSpace2x()])
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config


def test_depthwise_convbn_folds_and_checks_its_channels():
    import keras

    from conftest import randomize_batchnorm
    from humanmatting.fusion import fuse
    from humanmatting.layers import ConvBN

    inputs = keras.Input((None, None, 5))
    outputs = ConvBN(5, 4, strides=2, depthwise=True, activation="relu6")(inputs)
    model = keras.Model(inputs, outputs)
    randomize_batchnorm(model, seed=3)
    x = np.random.default_rng(0).normal(size=(2, 8, 6, 5)).astype(np.float32)
    assert model(x).shape == (2, 4, 3, 5)           # even kernel, stride 2: PyTorch padding 1
    np.testing.assert_allclose(np.asarray(fuse(model)(x)), np.asarray(model(x)), atol=1e-5)
    with pytest.raises(ValueError, match="keeps the channels"):
        ConvBN(4, 3, depthwise=True)(np.zeros((1, 4, 4, 5), np.float32))
    with pytest.raises(ValueError, match="odd"):
        ConvBN(4, 4)
