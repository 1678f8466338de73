"""IndexNet's index blocks on hand-made inputs (pooling and upsampling values, the sub-pixel
order of every variant), the model's size and variants, and the composition loss."""

import keras
import numpy as np
import pytest

from humanmatting.layers.index import IndexBlock, IndexPool, IndexUnpool, index_pool


def test_index_pool_is_a_weighted_sum_over_each_window():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    weights = np.zeros((1, 4, 4, 1), np.float32)
    weights[0, 0::2, 0::2] = 1.0            # each window keeps its top-left pixel only
    np.testing.assert_allclose(np.asarray(index_pool(x, weights))[0, ..., 0], [[0, 2], [8, 10]])
    weights[:] = 0.25                        # uniform weights: the window's mean
    np.testing.assert_allclose(np.asarray(IndexPool()([x, weights]))[0, ..., 0],
                               [[2.5, 4.5], [10.5, 12.5]])


def test_index_unpool_scales_each_copied_pixel_by_its_index():
    x = np.array([[[[1.0], [2.0]]]], np.float32)            # (1, 1, 2, 1)
    indices = np.array([[[[1.0], [0.5], [0.0], [2.0]],
                         [[0.25], [1.0], [3.0], [1.0]]]], np.float32)   # (1, 2, 4, 1)
    out = np.asarray(IndexUnpool()([x, indices]))[0, ..., 0]
    np.testing.assert_allclose(out, [[1.0, 0.5, 0.0, 4.0], [0.25, 1.0, 6.0, 2.0]])


def _picking_block(kind, mode, channels):
    """A linear, context-free block whose branch k reads pixel (k // 2, k % 2) of each 2x2
    window (of channel c for channel c), so that its decoder indices are sigmoid(x) if and
    only if the sub-pixel order is PyTorch's pixel_shuffle's."""
    block = IndexBlock(channels, kind, mode, nonlinear=False, context=False)
    block.build((1, 4, 6, channels))
    for k, conv in enumerate(block.convs):
        kernel = np.zeros(conv.kernel.shape, np.float32)
        a, b = divmod(k, 2)
        if kind == "holistic":
            for kk in range(4):
                kernel[kk // 2, kk % 2, 0, kk] = 1.0
        elif mode == "o2o":
            kernel[a, b, :, 0] = 1.0
        else:
            kernel[a, b] = np.eye(channels)
        conv.kernel.assign(kernel)
    return block


@pytest.mark.parametrize("kind, mode, channels", [("holistic", "m2o", 1),
                                                  ("depthwise", "o2o", 3),
                                                  ("depthwise", "m2o", 3)])
def test_sub_pixel_order_and_index_normalisation(kind, mode, channels):
    x = np.random.default_rng(0).normal(size=(1, 4, 6, channels)).astype(np.float32)
    encoder, decoder = (np.asarray(t) for t in _picking_block(kind, mode, channels)(x))
    sig = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(decoder, sig, atol=1e-6)
    windows = np.exp(sig).reshape(1, 2, 2, 3, 2, channels).sum(axis=(2, 4), keepdims=True)
    expected = (np.exp(sig).reshape(1, 2, 2, 3, 2, channels) / windows).reshape(x.shape)
    np.testing.assert_allclose(encoder, expected, atol=1e-6)   # softmax over each window


@pytest.mark.parametrize("kind, mode", [("holistic", "m2o"), ("depthwise", "o2o"),
                                        ("depthwise", "m2o")])
@pytest.mark.parametrize("nonlinear, context", [(False, False), (True, True), (True, False)])
def test_every_variant_gives_indices_of_the_input_size(kind, mode, nonlinear, context):
    x = np.random.default_rng(1).normal(size=(2, 8, 12, 5)).astype(np.float32)
    encoder, decoder = IndexBlock(5, kind, mode, nonlinear=nonlinear, context=context)(x)
    channels = 1 if kind == "holistic" else 5
    assert encoder.shape == decoder.shape == (2, 8, 12, channels)
    sums = np.asarray(encoder).reshape(2, 4, 2, 6, 2, channels).sum(axis=(2, 4))
    np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    assert 0 < float(np.min(decoder)) and float(np.max(decoder)) < 1


def test_index_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind must be one of"):
        IndexBlock(4, "global")
    with pytest.raises(ValueError, match="mode must be one of"):
        IndexBlock(4, "depthwise", "m2m")
    with pytest.raises(ValueError, match="built for 4 channels, got 3"):
        IndexBlock(4)(np.zeros((1, 4, 4, 3), np.float32))


def test_indexnet_size_and_variants():
    import humanmatting

    model = humanmatting.create_model("indexnet_mobilenetv2", weights=None, deploy=False)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert 5.8e6 < trainable < 6.1e6      # the released code's 5.95 M
    out = model(np.zeros((1, 64, 96, 4), np.float32))
    assert out.shape == (1, 64, 96, 1)
    sizes = {}
    for overrides in ({"index": "holistic"}, {"mode": "o2o"},
                      {"nonlinear": False, "context": False, "aspp": False}):
        variant = humanmatting.create_model("indexnet_mobilenetv2", weights=None, deploy=False,
                                            **overrides)
        sizes[str(overrides)] = variant.count_params()
    assert all(s < model.count_params() for s in sizes.values())


def test_composition_loss_hand_computed():
    from humanmatting.losses import CompositionLoss, make_loss
    from humanmatting.registry import get_preset
    from humanmatting.specs import make_matting_target

    alpha = np.array([[1.0, 0.5], [0.0, 0.2]], np.float32)
    trimap = np.array([[255, 128], [0, 128]], np.uint8)
    fg = np.full((2, 2, 3), 200, np.uint8)
    bg = np.full((2, 2, 3), 100, np.uint8)
    y = make_matting_target(alpha, True, trimap, fg, bg)[None]
    pred = np.array([[[[1.0], [0.7]], [[0.0], [-0.3]]]], np.float32)   # -0.3 is clipped to 0
    terms = {k: float(np.asarray(v)[0]) for k, v in CompositionLoss().terms(y, pred).items()}
    # unknown pixels: (0, 1) with |0.7 - 0.5| = 0.2 and (1, 1) with |0 - 0.2| = 0.2
    assert terms["alpha"] == pytest.approx(0.2, abs=1e-5)
    # the composite differs by |d alpha| x |fg - bg| = 0.2 x 100 / 255
    assert terms["composition"] == pytest.approx(0.2 * 100 / 255, abs=1e-5)
    assert terms["total"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.2 * 100 / 255, abs=1e-5)
    no_unknown = make_matting_target(alpha, True, np.full((2, 2), 255, np.uint8), fg, bg)[None]
    assert float(CompositionLoss()(no_unknown, pred)) == 0.0    # not NaN
    assert isinstance(make_loss(get_preset("indexnet_mobilenetv2")), CompositionLoss)
    with pytest.raises(ValueError, match="does not fit task"):
        make_loss(get_preset("indexnet_mobilenetv2"), {"kind": "bce"})
    with pytest.raises(ValueError, match="does not fit task"):
        make_loss(get_preset("likeunet_night"), {"kind": "composition"})
