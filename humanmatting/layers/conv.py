"""Convolution blocks with a training form and a fused deploy form.

A block in training form is a convolution followed by BatchNormalization; in deploy form it is a
single convolution with bias whose kernel and bias fold the BatchNorm in. `fused_weights()`
gives the deploy kernel and bias from the training-form weights, so a walker
(`humanmatting.fuse`) can build the deploy twin of a model and copy weights into it.
"""

import keras
import numpy as np


def fold_batchnorm(kernel, bias, gamma, beta, mean, variance, epsilon, *, out_axis=-1):
    """Folds an inference-mode BatchNorm that follows a convolution into its kernel and bias.

    BatchNorm computes `gamma * (y - mean) / sqrt(variance + epsilon) + beta`, an affine map per
    output channel, so `conv(x) * s + (bias - mean) * s + beta` with
    `s = gamma / sqrt(variance + epsilon)` is the same function.

    Args:
        kernel: convolution kernel, output channels on `out_axis`.
        bias: (C_out,) bias, or None for a convolution without bias.
        gamma, beta, mean, variance: (C_out,) BatchNorm parameters and statistics.
        epsilon: BatchNorm epsilon.
        out_axis: the kernel axis that indexes output channels (-1 for Conv2D, -2 for
            Conv2DTranspose).

    Returns:
        (kernel, bias) as float64 NumPy arrays.
    """
    kernel = np.asarray(kernel, np.float64)
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(variance, np.float64) + epsilon)
    shape = [1] * kernel.ndim
    shape[out_axis] = -1
    bias = np.zeros_like(scale) if bias is None else np.asarray(bias, np.float64)
    return kernel * scale.reshape(shape), (bias - mean) * scale + beta


def transpose_to_conv_kernel(kernel):
    """Turns a stride-1 'same' Conv2DTranspose kernel into the equivalent Conv2D kernel.

    With stride 1 a transposed convolution is a correlation with the spatially flipped kernel
    and input and output channels swapped; for odd kernel sizes the 'same' padding lines up.

    Args:
        kernel: (kh, kw, C_out, C_in) Conv2DTranspose kernel.

    Returns:
        (kh, kw, C_in, C_out) Conv2D kernel.
    """
    return np.transpose(np.asarray(kernel)[::-1, ::-1], (0, 1, 3, 2))


def make_batchnorm(momentum, epsilon, name):
    return keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name)


def batchnorm_weights(bn):
    gamma, beta, mean, variance = (w.numpy() for w in bn.weights)
    return gamma, beta, mean, variance, bn.epsilon


@keras.saving.register_keras_serializable(package="humanmatting")
class ConvBN(keras.layers.Layer):
    """Convolution, BatchNorm and an activation; a single convolution once fused.

    With `transpose=True` the training form uses a stride-1 Conv2DTranspose (as the original
    LikeUnet decoder does); its deploy form is an ordinary Conv2D with the flipped kernel, which
    runs faster on every backend and exports more simply.

    With `depthwise=True` the convolution is depthwise (one filter per input channel,
    `filters` must equal the input channels: PyTorch's `groups=channels`).

    Args:
        filters: output channels.
        kernel_size: square kernel size: odd; or even with stride 2 (then on an even side
            "same" pads (k - 2) / 2 on each side, PyTorch's `padding=(k - 2) // 2`).
        activation: activation applied last (name or None).
        strides: convolution stride (1 or 2; a transposed block has stride 1).
        transpose: use a stride-1 transposed convolution in training form.
        conv_bias: give the training-form convolution a bias (the original release has one).
        dilation_rate: dilation of the convolution ("same" padding = dilation for a 3x3
            kernel, PyTorch's `padding=dilation`); stride 1 when dilated.
        depthwise: a depthwise convolution (filters = input channels).
        deploy: build the fused form (one convolution with bias).
        momentum, epsilon: BatchNorm settings.

    Shapes: (B, H, W, C_in) -> (B, H / strides, W / strides, filters).

    Example:
        >>> y = ConvBN(16, activation="relu")(keras.ops.ones((1, 32, 32, 3)))
    """

    def __init__(self, filters, kernel_size=3, *, activation=None, strides=1, transpose=False,
                 conv_bias=False, deploy=False, momentum=0.99, epsilon=1e-3, dilation_rate=1,
                 depthwise=False, **kwargs):
        super().__init__(**kwargs)
        if kernel_size % 2 != 1 and strides != 2:
            raise ValueError(f"kernel_size must be odd (or even with stride 2), got "
                             f"{kernel_size}")
        if depthwise and transpose:
            raise ValueError("a depthwise ConvBN cannot be transposed")
        if strides not in (1, 2) or (transpose and strides != 1):
            raise ValueError(f"strides must be 1 or 2 (1 when transposed), got {strides}")
        if dilation_rate < 1 or (dilation_rate > 1 and (strides != 1 or transpose)):
            raise ValueError(f"dilation_rate must be >= 1 (with stride 1, not transposed), got "
                             f"{dilation_rate}")
        self.dilation_rate = dilation_rate
        self.strides = strides
        self.filters = filters
        self.kernel_size = kernel_size
        self.activation = activation
        self._activation = keras.activations.get(activation)
        self.transpose = transpose
        self.conv_bias = conv_bias
        self.deploy = deploy
        self.momentum = momentum
        self.epsilon = epsilon
        self.depthwise = depthwise
        if depthwise:
            self.conv = keras.layers.DepthwiseConv2D(
                kernel_size, strides=strides, padding="same", dilation_rate=dilation_rate,
                use_bias=deploy or conv_bias, name="conv")
            self.bn = None if deploy else make_batchnorm(momentum, epsilon, "bn")
        elif deploy:
            self.conv = keras.layers.Conv2D(filters, kernel_size, strides=strides,
                                            padding="same", dilation_rate=dilation_rate,
                                            name="conv")
            self.bn = None
        else:
            conv_cls = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
            dilation = {} if transpose else {"dilation_rate": dilation_rate}
            self.conv = conv_cls(filters, kernel_size, strides=strides, padding="same",
                                 use_bias=conv_bias, name="conv", **dilation)
            self.bn = make_batchnorm(momentum, epsilon, "bn")

    def build(self, input_shape):
        if self.depthwise and input_shape[-1] != self.filters:
            raise ValueError(f"{self.name}: a depthwise ConvBN keeps the channels: "
                             f"{input_shape[-1]} in, {self.filters} asked")
        self.conv.build(input_shape)
        if self.bn is not None:
            self.bn.build(self.compute_output_shape(input_shape))

    def call(self, x, training=None):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return self._activation(x)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = self.strides
        return (b, None if h is None else -(-h // s), None if w is None else -(-w // s),
                self.filters)

    def fused_weights(self):
        """Returns the deploy-form (kernel, bias): (k, k, C_in, filters) ((k, k, C, 1) when
        depthwise), (filters,)."""
        kernel_var = self.conv.kernel   # (k, k, C, 1) for a depthwise one
        if self.deploy:
            return kernel_var.numpy(), self.conv.bias.numpy()
        bias = self.conv.bias.numpy() if self.conv_bias else None
        kernel, bias = fold_batchnorm(kernel_var.numpy(), bias, *batchnorm_weights(self.bn),
                                      out_axis=-2 if self.transpose or self.depthwise else -1)
        if self.transpose:
            kernel = transpose_to_conv_kernel(kernel)
        return kernel, bias

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      activation=self.activation, strides=self.strides,
                      transpose=self.transpose, conv_bias=self.conv_bias, deploy=self.deploy,
                      momentum=self.momentum, epsilon=self.epsilon,
                      dilation_rate=self.dilation_rate, depthwise=self.depthwise)
        return config
