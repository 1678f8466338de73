"""Initialise one model from another's weights, layer by layer, by name.

Used to start a variant from a trained relative: the RGB Night from the grayscale Dark-Light
release, the ACNet Dark-Light from a plain Dark, and so on. Each adaptation keeps the layer's
function where the maths allows it:

- input convention: the layer that reads the image gets its kernel rescaled by
  src_scale / dst_scale (raw 0-255 vs [0, 1] input) and its input channels mapped (gray -> RGB:
  the gray kernel times the BT.601 luma weights, since gray = 0.299 R + 0.587 G + 0.114 B;
  RGB -> gray: the kernels summed, since a gray image is R = G = B);
- ACNet (norm="sum") <-> plain ConvBN: the 1xk and kx1 kernels are added into the kxk kernel
  (or start at zero the other way round); a bias before BatchNorm that the target lacks is
  moved into the BatchNorm's moving mean (BN(x + b) with mean m equals BN(x) with mean m - b).

`init_from_deploy` goes the other way, from a released (fused) model back to its training
form, so that released weights can be fine-tuned: see its docstring.
"""

import re

import keras
import numpy as np

from humanmatting.fusion import is_leaf, leaf_layers, sublayers
from humanmatting.layers import ACBlock, ConvBN
from humanmatting.layers.acnet import pad_to_square
from humanmatting.layers.conv import transpose_to_conv_kernel

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
#: blocks that `init_from_deploy(..., grow=True)` may add: `likeunet_lite`'s residual pairs
RESIDUAL = re.compile(r"enc\d+_\d+_(dw|pw)$")
#: the gamma a grown pointwise block starts with (its normalised output times this)
GROW_GAMMA = 0.01


def _adapt_input(kernel, in_channels, scale):
    kernel = kernel * scale
    have = kernel.shape[2]
    if have == in_channels:
        return kernel
    if have == 1 and in_channels == 3:
        return kernel * LUMA.reshape(1, 1, 3, 1)
    if have == 3 and in_channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    return None


def _square_kernel_and_bias(layer):
    """(kxk kernel, bias or None, BN weights) of a training-form ConvBN or sum-form ACBlock."""
    if isinstance(layer, ConvBN):
        bias = layer.conv.bias.numpy() if layer.conv_bias else None
        return layer.conv.kernel.numpy(), bias, layer.bn.get_weights()
    k = layer.kernel_size
    kernel = sum(pad_to_square(c.kernel.numpy(), k) for c in (layer.square, layer.hor,
                                                              layer.ver))
    bias = (sum(c.bias.numpy() for c in (layer.square, layer.hor, layer.ver))
            if layer.conv_bias else None)
    return kernel, bias, layer.bn.get_weights()


def _fold_bias_into_bn(bias, bn_weights):
    gamma, beta, mean, var = bn_weights
    return [gamma, beta, mean - bias, var] if bias is not None else bn_weights


def _transfer_block(src, dst, scale, is_input):
    """Copies a training-form conv block into another form; False when they do not fit."""
    transposed = [isinstance(x, ConvBN) and x.transpose for x in (src, dst)]
    if transposed[0] != transposed[1]:
        return False
    kernel, bias, bn = _square_kernel_and_bias(src)
    if is_input:
        kernel = _adapt_input(kernel, (dst.conv if isinstance(dst, ConvBN)
                                       else dst.square).kernel.shape[2], scale)
        if kernel is None:
            return False
    if isinstance(dst, ACBlock) and isinstance(src, ACBlock) and not is_input:
        branches = [(d, s.kernel.numpy(), s.bias.numpy() if src.conv_bias else None)
                    for d, s in zip((dst.square, dst.hor, dst.ver),
                                    (src.square, src.hor, src.ver))]
    elif isinstance(dst, ACBlock):
        branches = [(dst.square, kernel, bias)] + [
            (b, np.zeros(b.kernel.shape, np.float32), None) for b in (dst.hor, dst.ver)]
    else:
        branches = [(dst.conv, kernel, bias)]
    if any(k.shape != tuple(layer.kernel.shape) for layer, k, _ in branches):
        return False
    channels = len(bn[0])
    moved = None
    for layer, k, b in branches:
        if dst.conv_bias:
            layer.set_weights([k, b if b is not None else np.zeros(channels, np.float32)])
        else:
            layer.set_weights([k])
            if b is not None:
                moved = b if moved is None else moved + b
    dst.bn.set_weights(_fold_bias_into_bn(moved, bn))
    return True


def _shared_layers(src, dst):
    """(dst layer, src layer of the same name, whether it reads dst's input), weighted only."""
    src_layers = {layer.name: layer for layer in src.layers}
    inputs = {id(t) for t in dst.inputs}
    for layer in dst.layers:
        other = src_layers.get(layer.name)
        if other is not None and layer.weights:
            yield layer, other, id(layer.input) in inputs


def transfer_weights(src, dst, *, input_scale=1.0):
    """Copies weights from `src` into `dst` for every layer name they share.

    Both models in training form (deploy=False) for the conv blocks; plain layers are copied
    whenever shapes agree. `input_scale` = src input scale / dst input scale.

    Returns:
        Names of the layers that received weights.
    """
    copied = []
    for layer, other, is_input in _shared_layers(src, dst):
        blocks = (ACBlock, ConvBN)
        if isinstance(layer, blocks) and isinstance(other, blocks):
            sum_forms = all(not isinstance(x, ACBlock) or x.norm == "sum"
                            for x in (layer, other))
            if not layer.deploy and not other.deploy and sum_forms and \
                    _transfer_block(other, layer, input_scale, is_input):
                copied.append(layer.name)
            continue
        if type(layer) is not type(other) or len(layer.weights) != len(other.weights):
            continue
        new = [w.numpy() for w in other.weights]
        if is_input and new[0].ndim == 4:
            new[0] = _adapt_input(new[0], layer.weights[0].shape[2], input_scale)
        if all(n is not None and n.shape == tuple(m.shape) for n, m in zip(new, layer.weights)):
            layer.set_weights(new)
            copied.append(layer.name)
    return copied


def transfer_deploy(src, dst, *, input_scale=1.0):
    """Copies a deploy-form model's weights into another deploy-form model, by layer name.

    The deploy form of every LikeUnet variant is the same network of plain convolutions, so
    this carries a released model across input conventions (Night's RGB -> Dark's gray: the
    input kernels summed, since a gray image is R = G = B, so the copy computes on a gray
    image exactly what the source computes on that image's RGB form) and across training
    forms (a fused plain Dark is a fused ACNet Dark-Light). Layers whose shapes do not fit are
    left alone.

    Args:
        src: deploy-form keras.Model.
        dst: deploy-form keras.Model.
        input_scale: src input scale / dst input scale.

    Returns:
        Names of the layers that received weights.
    """
    blocks = (ACBlock, ConvBN)
    for model in (src, dst):
        if any(isinstance(x, blocks) and not x.deploy for x in model.layers):
            raise ValueError(f"transfer_deploy takes deploy-form models; {model.name!r} is in "
                             "training form")
    copied = []
    for layer, other, is_input in _shared_layers(src, dst):
        if isinstance(layer, blocks) != isinstance(other, blocks):
            continue
        if isinstance(layer, blocks):
            new = [w.astype(np.float32) for w in other.fused_weights()]
            target = layer.conv
        elif type(layer) is type(other):
            new = [w.numpy() for w in other.weights]
            target = layer
        else:
            continue
        if is_input and new[0].ndim == 4:
            new[0] = _adapt_input(new[0], target.weights[0].shape[2], input_scale)
        if len(new) == len(target.weights) and all(
                n is not None and n.shape == tuple(m.shape) for n, m in zip(new, target.weights)):
            target.set_weights(new)
            copied.append(layer.name)
    return copied


def _calibrated_bn(bn, y, bias, gamma_zero=False):
    """BatchNorm weights that turn `y` (N, H, W, C) into y + bias, in inference mode exactly and
    in training mode on this batch: mean and variance are `y`'s, gamma the standard deviation.
    With `gamma_zero` the output is 0 instead (a branch that starts switched off)."""
    y = np.asarray(y, np.float64).reshape(-1, y.shape[-1])
    mean, var = y.mean(axis=0), y.var(axis=0)
    if gamma_zero:
        gamma, beta = np.zeros_like(mean), np.zeros_like(mean)
    else:
        gamma, beta = np.sqrt(var + bn.epsilon), bias + mean
    bn.set_weights([w.astype(np.float32) for w in (gamma, beta, mean, var)])


def _unfuse_block(block, kernel, bias, x):
    """Sets a training-form block from its deploy (kernel, bias), with BatchNorm statistics
    from the block's input batch `x`."""
    if isinstance(block, ConvBN):
        if block.transpose:  # the inverse of the flip and channel swap is the same operation
            kernel = transpose_to_conv_kernel(kernel)
        block.conv.set_weights([kernel] + ([np.zeros_like(bias)] if block.conv_bias else []))
        _calibrated_bn(block.bn, block.conv(x), bias)
        return
    zeros = [] if not (block.conv_bias and block.norm == "sum") else [np.zeros_like(bias)]
    block.square.set_weights([kernel] + zeros)
    if block.norm == "sum":
        for branch in (block.hor, block.ver):
            branch.set_weights([np.zeros(branch.kernel.shape, np.float32)] + zeros)
        _calibrated_bn(block.bn, block.square(x), bias)
        return
    _calibrated_bn(block.square_bn, block.square(x), bias)
    # Per-branch BatchNorm would blow a zero kernel's first update up to unit variance, so the
    # 1xk / kx1 branches keep their random kernels and start switched off by gamma = 0.
    for branch, bn in ((block.hor, block.hor_bn), (block.ver, block.ver_bn)):
        _calibrated_bn(bn, branch(x), None, gamma_zero=True)


def _leaf_inputs(model, leaves, images):
    """{path: the input batch of that leaf} when `model` runs on `images` (inference mode):
    each leaf's `call` is wrapped for one eager forward pass, so that blocks inside composite
    layers (index blocks, RSU blocks), which a functional probe cannot reach, are seen too."""
    seen = {}
    for path, layer in leaves:
        def hook(x, *args, _call=layer.call, _path=path, **kwargs):
            seen[_path] = np.asarray(keras.ops.convert_to_numpy(x), np.float32)
            return _call(x, *args, **kwargs)
        layer.call = hook
    try:
        model(np.asarray(images, np.float32), training=False)
    finally:
        for _, layer in leaves:
            del layer.call
    return seen


def _copy_plain(src, dst, path=""):
    """Copies every weight outside the leaves from `src` to `dst`, going into composites; the
    paths of what received weights. Parts `dst` has and `src` lacks (grown blocks) are left."""
    if is_leaf(dst):
        return []   # set by _unfuse_block
    if not leaf_layers(dst):
        if not dst.weights:
            return []
        dst.set_weights(src.get_weights())
        return [path.rstrip("/")]
    targets = dict(sublayers(src))
    copied = []
    for attr, sub in sublayers(dst):
        if attr in targets:
            copied += _copy_plain(targets[attr], sub, f"{path}{attr}/")
    return copied


def init_from_deploy(src, dst, images, *, grow=False):
    """Initialises a training-form model from the deploy form of the same architecture.

    Each fused convolution's kernel goes to the block's kxk (or only) convolution and its
    bias into the BatchNorm, whose moving mean and variance are set to the statistics of that
    convolution's output on `images` and whose gamma is their standard deviation: the
    training-form model then computes exactly the deploy model's function in inference mode,
    and nearly it in training mode on batches like `images`. ACNet's 1xk and kx1 branches start
    contributing nothing (zero kernels in the "sum" form; gamma = 0 in the "branch" form).
    Blocks at any depth count (`fusion.leaf_layers`: the ConvBNs inside IndexNet's index
    blocks and U^2-Net's RSU blocks too); everything else is copied as it is, by name and
    attribute path.

    Args:
        src: deploy-form keras.Model (e.g. a released model).
        dst: training-form keras.Model of the same architecture and layer names.
        images: (N, H, W, C) float32 batch in the models' input convention; a few dozen real
            training images.
        grow: `dst` may be deeper than `src` by residual blocks (`likeunet_lite`'s
            enc{i}_{j}_dw / _pw, j >= 2, that `src` lacks): each such pair starts close to
            the identity (its depthwise block as built, its pointwise BatchNorm's gamma
            `GROW_GAMMA` and beta 0, so the pair adds relu(0.01 z) for a unit-variance z), and
            the other blocks are set from `src` as usual. The deeper model then starts within
            a hair of `src`'s function and can learn to use the new depth.

    Returns:
        Paths (`fusion.fusable_layers`' paths: the layer name for a top-level layer) of what
        received weights from `src`.

    Raises:
        ValueError: `src` lacks blocks of `dst` (that `grow` does not cover), or, without
            `grow`, `dst` does not compute `src`'s function afterwards (a weight the walk
            cannot reach).
    """
    blocks = leaf_layers(dst)
    sources = dict(leaf_layers(src))
    missing = [path for path, _ in blocks if path not in sources]
    new = [path for path in missing if grow and RESIDUAL.match(path)]
    if set(missing) - set(new):
        raise ValueError(f"deploy model {src.name!r} lacks the blocks "
                         f"{sorted(set(missing) - set(new))}"
                         + ("" if grow else " (grow=True starts new residual blocks instead)"))
    blocks = [(path, block) for path, block in blocks if path not in new]
    inputs = _leaf_inputs(src, [(path, sources[path]) for path, _ in blocks], images)
    copied = []
    for path, block in blocks:
        kernel, bias = sources[path].fused_weights()
        _unfuse_block(block, kernel.astype(np.float32), bias.astype(np.float64), inputs[path])
        copied.append(path)
    copied += _copy_plain(src, dst)
    for name in new:   # in order: each one's input depends on the blocks before it
        block = dst.get_layer(name)
        x = keras.Model(dst.inputs, block.input).predict(np.asarray(images, np.float32),
                                                          verbose=0).astype(np.float32)
        square = block.conv if isinstance(block, ConvBN) else block.square
        kernel = square.get_weights()[0]
        _unfuse_block(block, kernel, np.zeros(kernel.shape[-2] if isinstance(block, ACBlock)
                                              and block.depthwise else kernel.shape[-1]), x)
        if isinstance(block, ConvBN):
            gamma, beta, mean, var = block.bn.get_weights()
            block.bn.set_weights([np.full_like(gamma, GROW_GAMMA), np.zeros_like(beta), mean,
                                  var])
    if not new:
        _check_same_function(src, dst, images)
    return copied


def _check_same_function(src, dst, images):
    """Raises unless `dst` (inference mode) gives `src`'s outputs on `images`."""
    x = np.asarray(images, np.float32)
    want, got = ([keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(m(x, training=False))]
                 for m in (src, dst))
    worst = max(float(np.abs(a - b).max()) for a, b in zip(want, got))
    scale = max(1.0, *(float(np.abs(a).max()) for a in want))
    if worst > 1e-3 * scale:
        raise ValueError(f"init_from_deploy: {dst.name!r} does not compute {src.name!r}'s "
                         f"function afterwards (max |diff| {worst:.3g}): a weight the walk "
                         "cannot reach")
