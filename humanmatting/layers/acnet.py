"""Asymmetric Convolution Block.

Ding, Guo, Ding, Han, "ACNet: Strengthening the Kernel Skeletons for Powerful CNN via Asymmetric
Convolution Blocks", ICCV 2019.

In training form a kxk convolution runs beside a 1xk and a kx1 convolution on the same input and
their outputs are added. Convolution is linear in the kernel, and with 'same' padding and odd k a
1xk kernel is the kxk kernel that is zero outside its middle row (kx1: middle column), so after
training the three collapse into one kxk convolution with identical output ("additivity").

Two forms are supported:
- `norm="branch"` (the paper): each branch has its own BatchNorm, folded into that branch's
  kernel before the kernels are added.
- `norm="sum"` (the original LikeUnet release): the branches, each with a bias, are added and
  then one BatchNorm follows, folded into the summed kernel.
"""

import keras
import numpy as np

from humanmatting.layers.conv import batchnorm_weights, fold_batchnorm, make_batchnorm

NORM_FORMS = ("branch", "sum")


def pad_to_square(kernel, size):
    """Zero-pads a (1, k, ...) or (k, 1, ...) kernel to (k, k, ...), centred."""
    kernel = np.asarray(kernel)
    pad_h = (size - kernel.shape[0]) // 2
    pad_w = (size - kernel.shape[1]) // 2
    pads = [(pad_h, pad_h), (pad_w, pad_w)] + [(0, 0)] * (kernel.ndim - 2)
    return np.pad(kernel, pads)


@keras.saving.register_keras_serializable(package="humanmatting")
class ACBlock(keras.layers.Layer):
    """A kxk convolution beside 1xk and kx1 convolutions, with BatchNorm and an activation.

    Args:
        filters: output channels.
        kernel_size: odd square kernel size k.
        activation: activation applied last (name or None).
        norm: "branch" (paper: BatchNorm per branch) or "sum" (original LikeUnet: one
            BatchNorm after the sum).
        conv_bias: give the branch convolutions biases (only meaningful with norm="sum"; the
            original release has them).
        depthwise: depthwise branches (one kxk, 1xk and kx1 filter per input channel, as in a
            depthwise-separable block); `filters` must then equal the input channels.
        deploy: build the fused form, one kxk convolution with bias.
        momentum, epsilon: BatchNorm settings.

    Shapes: (B, H, W, C_in) -> (B, H, W, filters).

    Example:
        >>> block = ACBlock(16, activation="relu")
        >>> y = block(keras.ops.ones((1, 32, 32, 3)))
        >>> kernel, bias = block.fused_weights()  # (3, 3, 3, 16), (16,)
    """

    def __init__(self, filters, kernel_size=3, *, activation=None, norm="branch",
                 conv_bias=False, depthwise=False, deploy=False, momentum=0.99, epsilon=1e-3,
                 **kwargs):
        super().__init__(**kwargs)
        if kernel_size % 2 != 1 or kernel_size < 3:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        if norm not in NORM_FORMS:
            raise ValueError(f"norm must be one of {NORM_FORMS}, got {norm!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.activation = activation
        self._activation = keras.activations.get(activation)
        self.norm = norm
        self.conv_bias = conv_bias
        self.depthwise = depthwise
        self.deploy = deploy
        self.momentum = momentum
        self.epsilon = epsilon
        k = kernel_size
        if deploy:
            self.conv = self._conv((k, k), True, "conv")
            return
        use_bias = conv_bias and norm == "sum"
        self.square = self._conv((k, k), use_bias, "square")
        self.hor = self._conv((1, k), use_bias, "hor")
        self.ver = self._conv((k, 1), use_bias, "ver")
        if norm == "branch":
            self.square_bn = make_batchnorm(momentum, epsilon, "square_bn")
            self.hor_bn = make_batchnorm(momentum, epsilon, "hor_bn")
            self.ver_bn = make_batchnorm(momentum, epsilon, "ver_bn")
        else:
            self.bn = make_batchnorm(momentum, epsilon, "bn")

    def _conv(self, kernel_size, use_bias, name):
        if self.depthwise:
            return keras.layers.DepthwiseConv2D(kernel_size, padding="same", use_bias=use_bias,
                                                name=name)
        return keras.layers.Conv2D(self.filters, kernel_size, padding="same", use_bias=use_bias,
                                   name=name)

    def _branches(self):
        return (self.square, self.hor, self.ver)

    def build(self, input_shape):
        if self.depthwise and input_shape[-1] != self.filters:
            raise ValueError(f"{self.name}: a depthwise ACBlock keeps the channels: input has "
                             f"{input_shape[-1]}, filters={self.filters}")
        out_shape = tuple(input_shape[:-1]) + (self.filters,)
        if self.deploy:
            self.conv.build(input_shape)
            return
        for conv in self._branches():
            conv.build(input_shape)
        norms = (self.square_bn, self.hor_bn, self.ver_bn) if self.norm == "branch" else (self.bn,)
        for bn in norms:
            bn.build(out_shape)

    def call(self, x, training=None):
        if self.deploy:
            return self._activation(self.conv(x))
        if self.norm == "branch":
            y = (self.square_bn(self.square(x), training=training)
                 + self.hor_bn(self.hor(x), training=training)
                 + self.ver_bn(self.ver(x), training=training))
        else:
            y = self.bn(self.square(x) + self.hor(x) + self.ver(x), training=training)
        return self._activation(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def fused_weights(self):
        """Returns the deploy-form (kernel, bias): (k, k, C_in, filters) or, depthwise,
        (k, k, C, 1); and (filters,)."""
        if self.deploy:
            return self.conv.kernel.numpy(), self.conv.bias.numpy()
        k = self.kernel_size
        out_axis = 2 if self.depthwise else -1
        if self.norm == "branch":
            kernel, bias = 0.0, 0.0
            for conv, bn in zip(self._branches(), (self.square_bn, self.hor_bn, self.ver_bn)):
                kb, bb = fold_batchnorm(conv.kernel.numpy(), None, *batchnorm_weights(bn),
                                        out_axis=out_axis)
                kernel = kernel + pad_to_square(kb, k)
                bias = bias + bb
            return kernel, bias
        kernel = sum(pad_to_square(conv.kernel.numpy().astype(np.float64), k)
                     for conv in self._branches())
        bias = (sum(conv.bias.numpy().astype(np.float64) for conv in self._branches())
                if self.conv_bias else None)
        return fold_batchnorm(kernel, bias, *batchnorm_weights(self.bn), out_axis=out_axis)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      activation=self.activation, norm=self.norm, conv_bias=self.conv_bias,
                      depthwise=self.depthwise, deploy=self.deploy, momentum=self.momentum, epsilon=self.epsilon)
        return config
