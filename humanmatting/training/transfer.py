"""Initialise one model from another's weights, layer by layer, by name."""

import numpy as np

from humanmatting.layers import ACBlock, ConvBN


def _adapt_kernel(kernel, shape):
    """Fits a conv kernel to another input width: RGB -> gray sums the input channels (a gray
    image fed as R = G = B gives the same response)."""
    if kernel.shape == tuple(shape):
        return kernel
    if kernel.shape[:2] == tuple(shape[:2]) and kernel.shape[3] == shape[3] and shape[2] == 1:
        return kernel.sum(axis=2, keepdims=True)
    return None


def transfer_weights(src, dst):
    """Copies weights from `src` into `dst` for every layer name they share.

    - same layer type and shapes: copied as is;
    - a plain first conv on RGB into one on gray: input channels summed;
    - a training-form `ConvBN` into a training-form `ACBlock` (norm="sum", no conv bias): the
      conv becomes the square branch, the 1xk and kx1 branches start at zero, the BatchNorm is
      copied, so the ACBlock starts as the same function.

    Returns:
        Names of the layers that received weights.
    """
    src_layers = {layer.name: layer for layer in src.layers}
    copied = []
    for layer in dst.layers:
        other = src_layers.get(layer.name)
        if other is None or not layer.weights:
            continue
        if isinstance(layer, ACBlock) and isinstance(other, ConvBN) and not layer.deploy \
                and not other.deploy and layer.norm == "sum" and not layer.conv_bias \
                and not other.transpose:
            kernel = _adapt_kernel(other.conv.kernel.numpy(), layer.square.kernel.shape)
            if kernel is None:
                continue
            layer.square.set_weights([kernel])
            layer.hor.set_weights([np.zeros(layer.hor.kernel.shape, "float32")])
            layer.ver.set_weights([np.zeros(layer.ver.kernel.shape, "float32")])
            layer.bn.set_weights(other.bn.get_weights())
            copied.append(layer.name)
            continue
        if type(layer) is not type(other) or len(layer.weights) != len(other.weights):
            continue
        new = []
        for mine, theirs in zip(layer.get_weights(), other.get_weights()):
            fitted = theirs if mine.shape == theirs.shape else (
                _adapt_kernel(theirs, mine.shape) if theirs.ndim == 4 else None)
            if fitted is None:
                break
            new.append(fitted)
        else:
            layer.set_weights(new)
            copied.append(layer.name)
    return copied
