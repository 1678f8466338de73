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


# ---- the original layout: an independent NumPy forward, NCHW / OIHW ----------------------

EPS = 1e-5


def conv_nchw(x, weight, stride=1, padding=0, groups=1):
    """PyTorch's conv2d without bias: x (C, H, W), weight (O, C / groups, kH, kW)."""
    c, h, w = x.shape
    out_c, per_group, kh, kw = weight.shape
    padded = np.zeros((c, h + 2 * padding, w + 2 * padding))
    padded[:, padding:padding + h, padding:padding + w] = x
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w + 2 * padding - kw) // stride + 1
    out = np.zeros((out_c, oh, ow))
    outs_per_group = out_c // groups
    for o in range(out_c):
        g = o // outs_per_group
        for i in range(kh):
            for j in range(kw):
                patch = padded[g * per_group:(g + 1) * per_group,
                               i:i + stride * oh:stride, j:j + stride * ow:stride]
                out[o] += np.einsum("c,chw->hw", weight[o, :, i, j], patch)
    return out


def bn(x, state, key):
    g, b = state[f"{key}.weight"], state[f"{key}.bias"]
    m, v = state[f"{key}.running_mean"], state[f"{key}.running_var"]
    return (x - m[:, None, None]) / np.sqrt(v[:, None, None] + EPS) * g[:, None, None] + \
        b[:, None, None]


def relu6(x):
    return np.clip(x, 0, 6)


def pixel_shuffle(x):
    """PyTorch's pixel_shuffle by 2: (4C, h, w) -> (C, 2h, 2w), channel 4c + 2a + b."""
    c4, h, w = x.shape
    return x.reshape(c4 // 4, 2, 2, h, w).transpose(0, 3, 1, 4, 2).reshape(c4 // 4, 2 * h, 2 * w)


def index_block_reference(state, key, x):
    """The depthwise many-to-one, nonlinear, context index block of the original code."""
    branches = []
    for k in range(1, 5):
        p = f"{key}.indexnet{k}"
        y = relu6(bn(conv_nchw(x, state[f"{p}.0.weight"], stride=2, padding=1), state,
                     f"{p}.1"))
        branches.append(conv_nchw(y, state[f"{p}.3.weight"]))
    logits = np.stack(branches, axis=1)                     # (C, 4, h, w)
    dec = 1 / (1 + np.exp(-logits))
    enc = np.exp(dec) / np.exp(dec).sum(axis=1, keepdims=True)
    c, _, h, w = dec.shape
    return pixel_shuffle(enc.reshape(c * 4, h, w)), pixel_shuffle(dec.reshape(c * 4, h, w))


def inverted_residual_reference(state, key, x):
    """MobileNetV2's expand-6 block of the original code (stride 1, padding 1)."""
    hidden = relu6(bn(conv_nchw(x, state[f"{key}.0.weight"]), state, f"{key}.1"))
    groups = hidden.shape[0]
    hidden = relu6(bn(conv_nchw(hidden, state[f"{key}.3.weight"], padding=1, groups=groups),
                      state, f"{key}.4"))
    out = bn(conv_nchw(hidden, state[f"{key}.6.weight"]), state, f"{key}.7")
    return x + out if out.shape == x.shape else out


def random_original_state(seed=0):
    import humanmatting
    from humanmatting.models.indexnet import torch_state

    model = humanmatting.create_model("indexnet_mobilenetv2", weights=None, deploy=False)
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in torch_state(model).items():
        if key.endswith("running_var") or (key.endswith(".weight") and value.ndim == 1):
            state[key] = rng.uniform(0.5, 1.5, value.shape)
        elif value.ndim == 4:
            state[key] = rng.normal(0, np.sqrt(2 / np.prod(value.shape[1:])), value.shape)
        else:
            state[key] = rng.normal(0, 0.1, value.shape)
    return model, {k: v.astype(np.float32) for k, v in state.items()}


@pytest.mark.slow
def test_original_layout_equals_a_numpy_forward_of_one_index_and_one_residual_block(tmp_path):
    import humanmatting

    model, state = random_original_state(seed=5)
    state["layer0.1.num_batches_tracked"] = np.array(11)
    np.savez(tmp_path / "indexnet.npz", **{f"module.{k}": v for k, v in state.items()})
    loaded = humanmatting.create_model("indexnet_mobilenetv2", weights=tmp_path / "indexnet.npz",
                                       deploy=False)
    ref = {k: v.astype(np.float64) for k, v in state.items()}
    x = np.random.default_rng(2).normal(size=(24, 8, 12))          # (C, H, W)
    nhwc = np.transpose(x, (1, 2, 0))[None].astype(np.float32)
    encoder, decoder = loaded.get_layer("index2")(nhwc, training=False)
    enc_ref, dec_ref = index_block_reference(ref, "index2", x)
    np.testing.assert_allclose(np.transpose(np.asarray(encoder)[0], (2, 0, 1)), enc_ref,
                               atol=1e-5)
    np.testing.assert_allclose(np.transpose(np.asarray(decoder)[0], (2, 0, 1)), dec_ref,
                               atol=1e-5)
    residual = loaded.get_layer("layer2_1")(nhwc, training=False)
    np.testing.assert_allclose(np.transpose(np.asarray(residual)[0], (2, 0, 1)),
                               inverted_residual_reference(ref, "layer2.1.conv", x),
                               atol=1e-4, rtol=1e-4)
    # our weights written under the original names load back to the same function
    from humanmatting.models.indexnet import load_original, torch_state

    again = load_original(humanmatting.create_model("indexnet_mobilenetv2", weights=None,
                                                    deploy=False), torch_state(loaded))
    batch = np.random.default_rng(3).normal(size=(1, 64, 64, 4)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(again(batch)), np.asarray(loaded(batch)))
    deployed = humanmatting.create_model("indexnet_mobilenetv2",
                                         weights=tmp_path / "indexnet.npz")
    np.testing.assert_allclose(np.asarray(deployed(batch)), np.asarray(loaded(batch)),
                               atol=1e-3, rtol=1e-3)
    # a wrong checkpoint is refused with the key named
    del state["index6.indexnet2.3.weight"]
    with pytest.raises(ValueError, match="no 'index6.indexnet2.3.weight'"):
        load_original(model, state)
    with pytest.raises(ValueError, match="has no place for, e.g. 'extra'"):
        load_original(model, dict(torch_state(model), extra=np.zeros(1)))


def test_original_keys_of_the_default_variant():
    import humanmatting
    from humanmatting.models.indexnet import torch_state

    state = torch_state(humanmatting.create_model("indexnet_mobilenetv2", weights=None,
                                                  deploy=False))
    assert state["layer0.0.weight"].shape == (32, 4, 3, 3)
    assert state["layer1.0.conv.0.weight"].shape == (32, 1, 3, 3)       # expand 1: dw first
    assert state["layer2.0.conv.3.weight"].shape == (96, 1, 3, 3)       # 16 x 6, depthwise
    assert state["index0.indexnet1.0.weight"].shape == (32, 32, 4, 4)   # m2o, context
    assert state["index6.indexnet4.3.weight"].shape == (160, 160, 1, 1)
    assert state["dconv_pp.aspp2.atrous_conv.0.weight"].shape == (320, 1, 3, 3)
    assert state["dconv_pp.bottleneck_conv.0.weight"].shape == (160, 1280, 1, 1)
    assert state["decoder_layer6.dconv.0.weight"].shape == (96, 320, 5, 5)
    assert state["pred.0.0.weight"].shape == (1, 32, 5, 5)
    assert state["pred.1.weight"].shape == (1, 1, 5, 5)
    assert sum(v.size for k, v in state.items() if "running" not in k) == 5953515


def _mobilenetv2_file(tmp_path):
    """A keras.applications MobileNetV2 (alpha 1.0, no classifier) with random weights and
    BatchNorm statistics, saved as a user's local file would be loaded."""
    model = keras.applications.MobileNetV2(weights=None, include_top=False,
                                           input_shape=(224, 224, 3))
    rng = np.random.default_rng(11)
    for var in model.weights:
        if "moving_variance" in var.path:
            var.assign(rng.uniform(0.5, 2.0, var.shape).astype("float32"))
        elif "moving_mean" in var.path or "beta" in var.path:
            var.assign(rng.normal(0, 0.2, var.shape).astype("float32"))
    path = tmp_path / "mobilenet_v2_1.0_no_top.weights.h5"
    model.save_weights(path)
    return model, path


@pytest.mark.slow
def test_backbone_weights_start_the_encoder_from_a_keras_applications_file(tmp_path):
    import humanmatting
    from humanmatting.specs import IMAGENET_MEAN, IMAGENET_STD

    app, path = _mobilenetv2_file(tmp_path)
    model = humanmatting.create_model("indexnet_mobilenetv2", weights=None, deploy=False,
                                      backbone_weights=path)
    rng = np.random.default_rng(12)
    # the first conv: MobileNetV2 reads RGB in [-1, 1] with stride 2, ours ImageNet-normalised
    # RGB + a trimap with stride 1; away from the zero-padded border its output at odd
    # pixels is MobileNetV2's
    pixels = rng.uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    theirs = app.get_layer("Conv1_relu")(app.get_layer("bn_Conv1")(
        app.get_layer("Conv1")(pixels / 127.5 - 1.0), training=False))
    ours_in = (pixels / 255.0 - np.array(IMAGENET_MEAN, "float32")) / np.array(IMAGENET_STD,
                                                                              "float32")
    trimap = rng.choice([0.0, 0.5, 1.0], (1, 64, 64, 1)).astype("float32")
    ours = model.get_layer("layer0")(np.concatenate([ours_in, trimap], -1), training=False)
    np.testing.assert_allclose(np.asarray(ours)[:, 1::2, 1::2][:, :-1, :-1],
                               np.asarray(theirs)[:, :-1, :-1], atol=2e-4)
    # an inverted residual with its shortcut (block_2: 24 -> 24), Keras's own layers in turn
    x = rng.normal(size=(1, 16, 16, 24)).astype("float32")
    y = x
    for part in ("expand", "depthwise", "project"):
        y = app.get_layer(f"block_2_{part}_BN")(app.get_layer(f"block_2_{part}")(y),
                                                training=False)
        y = y if part == "project" else keras.ops.relu6(y)
    np.testing.assert_allclose(np.asarray(model.get_layer("layer2_1")(x, training=False)),
                               np.asarray(y + x), atol=1e-4)
    # the first block has no expansion: depthwise and projection only
    block = model.get_layer("layer1_0")
    np.testing.assert_array_equal(np.asarray(block.depthwise.conv.kernel),
                                  np.asarray(app.get_layer("expanded_conv_depthwise").kernel))
    with pytest.raises(ValueError, match="needs the training form"):
        from humanmatting.models.indexnet import load_backbone

        load_backbone(humanmatting.create_model("indexnet_mobilenetv2", weights=None), path)
    with pytest.raises(FileNotFoundError, match="nope.h5: no such file"):
        humanmatting.create_model("indexnet_mobilenetv2", weights=None, deploy=False,
                                  backbone_weights=tmp_path / "nope.h5")
    other = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    other.save_weights(tmp_path / "dense.weights.h5")
    with pytest.raises(ValueError, match="dense.weights.h5: not a keras.applications "
                                         "MobileNetV2"):
        humanmatting.create_model("indexnet_mobilenetv2", weights=None, deploy=False,
                                  backbone_weights=tmp_path / "dense.weights.h5")
