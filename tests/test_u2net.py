"""U^2-Net's blocks against an independent NumPy forward in the original's NCHW / OIHW layout
(ceil-mode pooling, align_corners=False resizing), from random state dicts of the original key
names; state dicts written from our weights load back; BatchNorm folds."""

import numpy as np
import pytest

from humanmatting.fusion import fuse, is_deploy
from humanmatting.layers import RSU, BilinearUpsample
from conftest import run_cli

EPS = 1e-5


# ---- the reference: NumPy, NCHW, written from the original code's description ----------

def conv_nchw(x, weight, bias, dilation):
    """3x3 convolution with padding = dilation: x (C, H, W), weight (O, C, 3, 3)."""
    c, h, w = x.shape
    d = dilation
    padded = np.zeros((c, h + 2 * d, w + 2 * d))
    padded[:, d:d + h, d:d + w] = x
    out = np.zeros((weight.shape[0], h, w))
    for i in range(3):
        for j in range(3):
            patch = padded[:, i * d:i * d + h, j * d:j * d + w]
            out += np.einsum("oc,chw->ohw", weight[:, :, i, j], patch)
    return out + bias[:, None, None]


def rebnconv(state, key, x, dilation):
    y = conv_nchw(x, state[f"{key}.conv_s1.weight"], state[f"{key}.conv_s1.bias"], dilation)
    g, b = state[f"{key}.bn_s1.weight"], state[f"{key}.bn_s1.bias"]
    m, v = state[f"{key}.bn_s1.running_mean"], state[f"{key}.bn_s1.running_var"]
    y = (y - m[:, None, None]) / np.sqrt(v[:, None, None] + EPS) * g[:, None, None] + \
        b[:, None, None]
    return np.maximum(y, 0)


def maxpool_ceil(x):
    """2x2, stride 2, ceil mode: odd sides get a last window of one row / column."""
    c, h, w = x.shape
    hh, ww = -(-h // 2), -(-w // 2)
    padded = np.full((c, 2 * hh, 2 * ww), -np.inf)
    padded[:, :h, :w] = x
    return padded.reshape(c, hh, 2, ww, 2).max(axis=(2, 4))


def resize_bilinear(x, height, width):
    """PyTorch's F.interpolate(mode="bilinear", align_corners=False)."""
    c, h, w = x.shape

    def axis(n_out, n_in):
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        src = np.clip(src, 0, None)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    y0, y1, fy = axis(height, h)
    x0, x1, fx = axis(width, w)
    rows = x[:, y0] * (1 - fy)[None, :, None] + x[:, y1] * fy[None, :, None]
    return rows[:, :, x0] * (1 - fx)[None, None, :] + rows[:, :, x1] * fx[None, None, :]


def rsu_reference(state, prefix, x, height, dilated):
    hxin = rebnconv(state, f"{prefix}.rebnconvin", x, 1)
    if dilated:   # RSU-4F
        hx1 = rebnconv(state, f"{prefix}.rebnconv1", hxin, 1)
        hx2 = rebnconv(state, f"{prefix}.rebnconv2", hx1, 2)
        hx3 = rebnconv(state, f"{prefix}.rebnconv3", hx2, 4)
        hx4 = rebnconv(state, f"{prefix}.rebnconv4", hx3, 8)
        hx3d = rebnconv(state, f"{prefix}.rebnconv3d", np.concatenate([hx4, hx3]), 4)
        hx2d = rebnconv(state, f"{prefix}.rebnconv2d", np.concatenate([hx3d, hx2]), 2)
        hx1d = rebnconv(state, f"{prefix}.rebnconv1d", np.concatenate([hx2d, hx1]), 1)
        return hx1d + hxin
    enc = [rebnconv(state, f"{prefix}.rebnconv1", hxin, 1)]
    for i in range(2, height):
        enc.append(rebnconv(state, f"{prefix}.rebnconv{i}", maxpool_ceil(enc[-1]), 1))
    hx = rebnconv(state, f"{prefix}.rebnconv{height}", enc[-1], 2)
    hx = rebnconv(state, f"{prefix}.rebnconv{height - 1}d", np.concatenate([hx, enc[-1]]), 1)
    for i in range(height - 2, 0, -1):
        skip = enc[i - 1]
        hx = resize_bilinear(hx, *skip.shape[1:])
        hx = rebnconv(state, f"{prefix}.rebnconv{i}d", np.concatenate([hx, skip]), 1)
    return hx + hxin


def random_state(block, prefix, seed):
    """A random state dict of the block's original key names and shapes."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in block.torch_state(prefix).items():
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape)
        elif key.endswith(".weight") and ".bn_s1." in key:
            state[key] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith("conv_s1.weight"):
            fan_in = value.shape[1] * 9
            state[key] = rng.normal(0, np.sqrt(2 / fan_in), value.shape)
        else:
            state[key] = rng.normal(0, 0.1, value.shape)
        state[key] = state[key].astype(np.float32)
    state[f"{prefix}.rebnconvin.bn_s1.num_batches_tracked"] = np.array(7)
    return state


@pytest.mark.parametrize("height, dilated, size", [(4, True, (12, 20)), (4, False, (16, 24)),
                                                   (5, False, (32, 24)), (7, False, (64, 96))])
def test_rsu_equals_the_numpy_reference_of_the_original_layout(height, dilated, size):
    block = RSU(height, 4, 6, dilated=dilated)
    block.build((1, *size, 3))
    state = random_state(block, "stage1", seed=height)
    used = block.load_torch_state(state, "stage1")
    assert len(used) == 6 * (2 * height)      # in + L down + (L - 1) up, six tensors each
    x = np.random.default_rng(1).uniform(0, 1, (3, *size)).astype(np.float32)
    expected = rsu_reference({k: v.astype(np.float64) for k, v in state.items()}, "stage1",
                             x.astype(np.float64), height, dilated)
    ours = np.asarray(block(np.transpose(x, (1, 2, 0))[None], training=False))[0]
    np.testing.assert_allclose(np.transpose(ours, (2, 0, 1)), expected, atol=1e-4, rtol=1e-4)


def test_reference_pieces_are_the_original_operations():
    # ceil-mode pooling keeps the last odd row / column on its own
    x = np.arange(15, dtype=np.float64).reshape(1, 3, 5)
    np.testing.assert_array_equal(maxpool_ceil(x)[0], [[6, 8, 9], [11, 13, 14]])
    # align_corners=False x2: edge pixels copy, inner ones are 3:1 blends
    row = resize_bilinear(np.array([[[0.0, 4.0]]]), 1, 4)[0, 0]
    np.testing.assert_allclose(row, [0, 1, 3, 4])
    # ... and our factor-4 upsampling equals it
    y = np.random.default_rng(0).uniform(0, 1, (2, 3, 5)).astype(np.float32)
    ours = np.asarray(BilinearUpsample(4)(np.transpose(y, (1, 2, 0))[None]))[0]
    np.testing.assert_allclose(np.transpose(ours, (2, 0, 1)), resize_bilinear(y, 12, 20),
                               atol=1e-5)


def test_state_written_from_our_weights_loads_back_and_the_block_fuses():
    import keras

    block = RSU(5, 4, 6)
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, block(inputs))
    state = random_state(block, "stage2", seed=3)
    block.load_torch_state(state, "stage2")
    written = block.torch_state("stage2")
    assert set(written) == {k for k in state if not k.endswith("num_batches_tracked")}
    other = RSU(5, 4, 6)
    other.build((1, 32, 32, 3))
    other.load_torch_state(written, "stage2")
    x = np.random.default_rng(2).uniform(0, 1, (1, 32, 48, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(other(x)), np.asarray(block(x)))
    fused = fuse(model)
    assert is_deploy(fused)
    np.testing.assert_allclose(np.asarray(fused(x)), np.asarray(model(x)), atol=1e-4)
    with pytest.raises(KeyError):
        other.load_torch_state({}, "stage2")
    bad = dict(written)
    bad["stage2.rebnconv1.conv_s1.weight"] = np.zeros((4, 7, 3, 3), np.float32)
    with pytest.raises(ValueError, match="rebnconv1"):
        other.load_torch_state(bad, "stage2")


def test_rsu_rejects_bad_shapes():
    with pytest.raises(ValueError, match="RSU-4F"):
        RSU(5, 4, 6, dilated=True)
    with pytest.raises(ValueError, match="height"):
        RSU(2, 4, 6)


@pytest.mark.parametrize("name, low, high", [("u2net", 40e6, 48e6), ("u2netp", 0.9e6, 1.4e6)])
def test_u2net_sizes_names_and_outputs(name, low, high):
    import humanmatting
    from humanmatting.registry import get_preset

    model = humanmatting.create_model(name, weights=None, deploy=False)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert low <= trainable <= high                   # the paper: 44.0 M and 1.13 M
    names = {layer.name for layer in model.layers}
    assert {f"stage{i}" for i in range(1, 7)} | {f"stage{i}d" for i in range(1, 6)} | {
        f"side{i}" for i in range(1, 7)} | {"outconv"} <= names
    x = np.zeros((1, 64, 96, 3), np.float32)
    out = model(x)
    assert sorted(out) == sorted(get_preset(name).output.names)
    assert all(tuple(v.shape) == (1, 64, 96, 1) for v in out.values())


def test_a_state_dict_of_our_weights_under_the_original_names_loads_back(tmp_path):
    import humanmatting
    from humanmatting.models.u2net import load_original, torch_state

    model = humanmatting.create_model("u2netp", weights=None, deploy=False)
    from conftest import randomize_batchnorm

    randomize_batchnorm(model, seed=4)
    state = torch_state(model)
    assert "stage1.rebnconvin.conv_s1.weight" in state and state["side6.weight"].shape == (
        1, 64, 3, 3) and state["outconv.weight"].shape == (1, 6, 1, 1)
    state["stage1.rebnconvin.bn_s1.num_batches_tracked"] = np.array(3)
    np.savez(tmp_path / "u2netp.npz", **{f"module.{k}": v for k, v in state.items()})
    x = np.random.default_rng(0).uniform(-2, 2, (1, 64, 96, 3)).astype(np.float32)
    expected = np.asarray(model(x)["fused"])
    trained = humanmatting.create_model("u2netp", weights=tmp_path / "u2netp.npz",
                                        deploy=False)
    np.testing.assert_array_equal(np.asarray(trained(x)["fused"]), expected)
    deployed = humanmatting.create_model("u2netp", weights=tmp_path / "u2netp.npz")
    assert is_deploy(deployed)
    np.testing.assert_allclose(np.asarray(deployed(x)["fused"]), expected, atol=1e-5)
    # a checkpoint of another model, or a broken file, is refused with its name
    other = humanmatting.create_model("u2netp", weights=None, deploy=False)
    with pytest.raises(ValueError, match="no 'stage1"):
        load_original(other, {"x": np.zeros(1)})
    extra = dict(state, **{"stage7.rebnconvin.conv_s1.bias": np.zeros(3)})
    with pytest.raises(ValueError, match="stage7"):
        load_original(other, extra)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        humanmatting.create_model("u2netp", weights=tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="needs the 'safetensors' package|not a readable"):
        (tmp_path / "w.safetensors").write_bytes(b"x")
        humanmatting.create_model("u2netp", weights=tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="loads only .weights.h5"):
        humanmatting.create_model("likeunet_night", weights=tmp_path / "u2netp.npz")


def test_convert_cli_writes_the_deploy_form_of_an_original_checkpoint(tmp_path):
    import humanmatting
    from humanmatting.models.u2net import torch_state

    model = humanmatting.create_model("u2netp", weights=None, deploy=False)
    np.savez(tmp_path / "u2netp.npz", **torch_state(model))
    out = tmp_path / "u2netp.weights.h5"
    run = run_cli("convert", "--model", "u2netp", "--weights", tmp_path / "u2netp.npz",
                  "--output", out, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    deployed = humanmatting.create_model("u2netp", weights=out)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 32, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(deployed(x)["fused"]),
                               np.asarray(model(x)["fused"]), atol=1e-5)
    bad = run_cli("convert", "--model", "u2netp", "--weights", tmp_path / "missing.pth",
                  "--output", out, cwd=tmp_path)
    assert bad.returncode == 1 and "missing.pth" in bad.stderr


def u2net_reference(state, x, encoder, decoder):
    """The whole original network, NCHW: x (3, H, W) -> d0 (fused, after the sigmoid)."""
    skips, hx = [], x
    for i, (height, _, _, dilated) in enumerate(encoder, start=1):
        if i > 1:
            hx = maxpool_ceil(hx)
        hx = rsu_reference(state, f"stage{i}", hx, height, dilated)
        skips.append(hx)
    maps = {6: hx}
    for k, (height, _, _, dilated) in zip(range(5, 0, -1), decoder):
        hx = resize_bilinear(hx, *skips[k - 1].shape[1:])
        hx = rsu_reference(state, f"stage{k}d", np.concatenate([hx, skips[k - 1]]), height,
                           dilated)
        maps[k] = hx
    sides = [resize_bilinear(conv_nchw(maps[k], state[f"side{k}.weight"],
                                       state[f"side{k}.bias"], 1), *x.shape[1:])
             for k in range(1, 7)]
    fused = np.einsum("oc,chw->ohw", state["outconv.weight"][:, :, 0, 0],
                      np.concatenate(sides)) + state["outconv.bias"][:, None, None]
    return 1 / (1 + np.exp(-fused[0]))


def original_pipeline(state, image, encoder, decoder):
    """The original test script after its resize: image / its max, ImageNet mean and std,
    the network, d0 min-max normalised."""
    x = image.astype(np.float64) / image.max()
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    d0 = u2net_reference(state, np.transpose(x, (2, 0, 1)), encoder, decoder)
    return (d0 - d0.min()) / (d0.max() - d0.min())


@pytest.mark.slow
def test_the_original_preset_gives_the_original_pipelines_output(tmp_path):
    import humanmatting
    from humanmatting.models.u2net import U2NETP_STAGES, torch_state

    model = humanmatting.create_model("u2netp", weights=None, deploy=False)
    rng = np.random.default_rng(11)
    state = {}
    for key, value in torch_state(model).items():   # random, with living BatchNorm statistics
        if key.endswith("running_var") or (key.endswith(".weight") and ".bn_s1." in key):
            state[key] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith(".weight"):
            state[key] = rng.normal(0, np.sqrt(2 / np.prod(value.shape[1:])), value.shape)
        else:
            state[key] = rng.normal(0, 0.1, value.shape)
    state = {k: v.astype(np.float32) for k, v in state.items()}
    np.savez(tmp_path / "u2netp.npz", **state)
    image = rng.integers(0, 200, (64, 64, 3)).astype(np.uint8)   # max 199: the division shows
    matter = humanmatting.Matter("u2netp_original", weights=tmp_path / "u2netp.npz",
                                 sizes=((64, 64),))
    ours = matter.predict(image)
    expected = original_pipeline({k: v.astype(np.float64) for k, v in state.items()}, image,
                                 U2NETP_STAGES["encoder"], U2NETP_STAGES["decoder"])
    assert ours.min() == pytest.approx(0, abs=1e-6) and ours.max() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    # the preset is the original's: 320x320 whatever the aspect, no flip, no region filter
    preset = humanmatting.registry.get_preset("u2netp_original")
    assert preset.input.sizes == ((320, 320),) and not preset.flip and preset.min_region == 0
    assert humanmatting.Matter("u2netp_original", weights=None).preprocess(
        np.zeros((90, 300, 3), np.uint8)).shape == (1, 320, 320, 3)


def test_max_imagenet_input_and_minmax_output_specs():
    from humanmatting.specs import InputSpec, OutputSpec, person_probability, to_model_input

    spec = InputSpec(normalisation="max-imagenet")
    image = np.zeros((2, 2, 3), np.uint8)
    image[0, 0] = 100
    x = to_model_input(image, spec)
    np.testing.assert_allclose(x[0, 0], (1 - np.array([0.485, 0.456, 0.406])) /
                               np.array([0.229, 0.224, 0.225]), rtol=1e-6)
    assert np.isfinite(to_model_input(np.zeros((2, 2, 3), np.uint8), spec)).all()
    out = OutputSpec(kind="sigmoid", rescale="minmax")
    prob = person_probability(np.array([[[[0.2], [0.4]], [[0.6], [0.3]]]]), out)
    np.testing.assert_allclose(prob, [[[0, 0.5], [1, 0.25]]])
    flat = person_probability(np.full((1, 2, 2, 1), 0.3), out)   # nothing to stretch
    np.testing.assert_allclose(flat, 0.3)
    with pytest.raises(ValueError, match="rescale must be"):
        OutputSpec(rescale="zscore")
