"""IndexNet's learned indices (Lu et al., "Indices Matter: Learning to Index for Deep Image
Matting", ICCV 2019) and the MobileNetV2 pieces its encoder is built of.

An index block looks at a feature map and predicts, for every 2x2 window, four weights:
`decoder` indices (sigmoids, one per sub-pixel: how much of an upsampled value each of the
four pixels keeps) and `encoder` indices (the same four normalised by a softmax: how much
each pixel counts in the downsampled value). Index pooling is then `4 * avgpool2x2(x * enc)`
(a weighted sum over the window) and index upsampling `dec * nearest2x(x)`.

The variants (all of the paper's):
- holistic: one index map for all channels (a conv to 4 channels); depthwise: one per
  channel, from four branches of C channels each;
- one-to-one (o2o: each branch depthwise, channel c from channel c alone) or many-to-one
  (m2o: each branch a full convolution);
- linear (one conv) or nonlinear (conv, BatchNorm, ReLU6, then a 1x1 conv);
- with context (kernel 4, stride 2, padding 1) or without (kernel 2, stride 2).

Sub-pixel order: branch (or channel) k gives the pixel (k // 2, k % 2) of each window, as
PyTorch's `pixel_shuffle` places a view (C, 4, h, w) -> channel 4c + k. The four branch
outputs are concatenated as k * C + c, TensorFlow's (and ONNX's DCR) depth-to-space order,
so `DepthToSpace2x` lays them out with no transpose at run time.
"""

import keras
from keras import ops

from humanmatting.layers.conv import ConvBN
from humanmatting.layers.resize import DepthToSpace2x, NearestUpsample2x

#: PyTorch's BatchNorm defaults, as the original code trains with
TORCH_BN = {"momentum": 0.9, "epsilon": 1e-5}


@keras.saving.register_keras_serializable(package="humanmatting")
class IndexBlock(keras.layers.Layer):
    """Encoder and decoder indices of a feature map (a composite: its convolutions fuse).

    Args:
        channels: channels of the feature map it reads.
        kind: "holistic" or "depthwise".
        mode: for depthwise: "o2o" or "m2o".
        nonlinear: conv + BatchNorm + ReLU6 + 1x1 conv instead of one conv.
        context: kernel 4 (context) instead of 2.
        deploy: BatchNorm folded.

    Shapes: (B, H, W, C) (H, W even) -> (encoder indices, decoder indices), each (B, H, W, C)
    for depthwise, (B, H, W, 1) for holistic.
    """

    KINDS = ("holistic", "depthwise")
    MODES = ("o2o", "m2o")

    def __init__(self, channels, kind="depthwise", mode="m2o", *, nonlinear=True, context=True,
                 deploy=False, **kwargs):
        super().__init__(**kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"IndexBlock: kind must be one of {self.KINDS}, got {kind!r}")
        if kind == "depthwise" and mode not in self.MODES:
            raise ValueError(f"IndexBlock: mode must be one of {self.MODES}, got {mode!r}")
        self.channels, self.kind, self.mode = channels, kind, mode
        self.nonlinear, self.context, self.deploy = nonlinear, context, deploy
        kernel = 4 if context else 2
        if kind == "holistic":
            branches = [self._branch(2 * channels, 4, kernel, depthwise=False, index=0)]
        else:
            branches = [self._branch(channels, channels, kernel, depthwise=mode == "o2o",
                                     index=k) for k in range(4)]
        # flat lists (the fusion walker reads list attributes, not lists of lists)
        self.convs = [b[0] for b in branches]
        self.pointwise = [b[1] for b in branches if len(b) > 1]
        self.shuffle = DepthToSpace2x(name="shuffle")

    def _branch(self, hidden, out, kernel, *, depthwise, index):
        """[first conv (ConvBN when nonlinear), 1x1 conv] of one branch."""
        name = f"branch{index}"
        if self.nonlinear:
            first = ConvBN(hidden if not depthwise else self.channels, kernel, strides=2,
                           activation="relu6", depthwise=depthwise, deploy=self.deploy,
                           name=f"{name}_conv", **TORCH_BN)
            if depthwise:   # PyTorch's 1x1 conv with groups = channels: a per-channel scale
                last = keras.layers.DepthwiseConv2D(1, use_bias=False, name=f"{name}_pw")
            else:
                last = keras.layers.Conv2D(out, 1, use_bias=False, name=f"{name}_pw")
            return [first, last]
        if depthwise:
            return [keras.layers.DepthwiseConv2D(kernel, strides=2, padding="same",
                                                 use_bias=False, name=f"{name}_conv")]
        return [keras.layers.Conv2D(out, kernel, strides=2, padding="same", use_bias=False,
                                    name=f"{name}_conv")]

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            raise ValueError(f"{self.name}: built for {self.channels} channels, got "
                             f"{input_shape[-1]}")
        for i, conv in enumerate(self.convs):
            conv.build(input_shape)
            if self.pointwise:
                self.pointwise[i].build(conv.compute_output_shape(input_shape))

    def call(self, x, training=None):
        logits = []
        for i, conv in enumerate(self.convs):
            y = conv(x, training=training) if isinstance(conv, ConvBN) else conv(x)
            logits.append(self.pointwise[i](y) if self.pointwise else y)
        if self.kind == "holistic":   # (B, h, w, 4): sub-pixel k in channel k
            decoder = ops.sigmoid(logits[0])
            encoder = ops.softmax(decoder, axis=-1)
        else:   # four (B, h, w, C) maps, softmax across them per channel
            decoder = [ops.sigmoid(y) for y in logits]
            exp = [ops.exp(d) for d in decoder]   # sigmoids lie in (0, 1): no overflow
            total = exp[0] + exp[1] + exp[2] + exp[3]
            encoder = ops.concatenate([e / total for e in exp], axis=-1)
            decoder = ops.concatenate(decoder, axis=-1)
        return self.shuffle(encoder), self.shuffle(decoder)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        shape = (b, h, w, 1 if self.kind == "holistic" else c)
        return shape, shape

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, kind=self.kind, mode=self.mode,
                      nonlinear=self.nonlinear, context=self.context, deploy=self.deploy)
        return config


def index_pool(x, encoder_indices):
    """IndexNet's downsampling: 4 * avgpool2x2(x * encoder indices), (B, H/2, W/2, C)."""
    return 4.0 * ops.average_pool(x * encoder_indices, 2, strides=2, padding="valid")


@keras.saving.register_keras_serializable(package="humanmatting")
class IndexPool(keras.layers.Layer):
    """`index_pool` as a layer: [x, encoder indices] -> (B, H/2, W/2, C)."""

    def call(self, inputs):
        return index_pool(*inputs)

    def compute_output_shape(self, input_shapes):
        b, h, w, c = input_shapes[0]
        return (b, None if h is None else h // 2, None if w is None else w // 2, c)


@keras.saving.register_keras_serializable(package="humanmatting")
class IndexUnpool(keras.layers.Layer):
    """IndexNet's upsampling: [x, decoder indices] -> decoder indices * nearest2x(x)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.upsample = NearestUpsample2x(name="nearest")

    def build(self, input_shapes):
        self.upsample.build(input_shapes[0])

    def call(self, inputs):
        x, decoder_indices = inputs
        return decoder_indices * self.upsample(x)

    def compute_output_shape(self, input_shapes):
        return (*input_shapes[1][:3], input_shapes[0][-1])


@keras.saving.register_keras_serializable(package="humanmatting")
class InvertedResidual(keras.layers.Layer):
    """MobileNetV2's inverted residual (Sandler et al. 2018): 1x1 expansion (ReLU6), 3x3
    depthwise (ReLU6), 1x1 linear projection, plus the input when the shape is kept.
    A composite of `ConvBN` leaves. IndexNet runs it with stride 1 everywhere.

    Shapes: (B, H, W, C_in) -> (B, H, W, out).
    """

    def __init__(self, channels, out, expand=6, *, dilation_rate=1, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.out, self.expand = channels, out, expand
        self.dilation_rate, self.deploy = dilation_rate, deploy
        hidden = round(channels * expand)
        self.expansion = (ConvBN(hidden, 1, activation="relu6", deploy=deploy, name="expand",
                                 **TORCH_BN) if expand != 1 else None)
        self.depthwise = ConvBN(hidden, 3, activation="relu6", depthwise=True,
                                dilation_rate=dilation_rate, deploy=deploy, name="depthwise",
                                **TORCH_BN)
        self.project = ConvBN(out, 1, deploy=deploy, name="project", **TORCH_BN)

    def build(self, input_shape):
        shape = input_shape
        for layer in (self.expansion, self.depthwise, self.project):
            if layer is not None:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

    def call(self, x, training=None):
        y = x if self.expansion is None else self.expansion(x, training=training)
        y = self.project(self.depthwise(y, training=training), training=training)
        return x + y if self.channels == self.out else y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.out)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, out=self.out, expand=self.expand,
                      dilation_rate=self.dilation_rate, deploy=self.deploy)
        return config


@keras.saving.register_keras_serializable(package="humanmatting")
class ASPP(keras.layers.Layer):
    """Atrous spatial pyramid pooling as IndexNet's encoder ends with: a 1x1 branch, three
    depthwise-separable 3x3 branches dilated by `rates`, image pooling, each to `width`
    channels (ReLU6), concatenated, a 1x1 projection to `out` (ReLU6) and dropout.

    Shapes: (B, H, W, C) -> (B, H, W, out).
    """

    def __init__(self, channels, out, *, width=256, rates=(2, 4, 8), dropout=0.5, deploy=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels, self.out, self.width = channels, out, width
        self.rates, self.dropout_rate, self.deploy = tuple(rates), dropout, deploy
        bn = dict(deploy=deploy, **TORCH_BN)
        self.branch1 = ConvBN(width, 1, activation="relu6", name="aspp1", **bn)
        self.atrous = [ConvBN(channels, 3, activation="relu6", depthwise=True, dilation_rate=r,
                              name=f"aspp{i}_dw", **bn) for i, r in enumerate(rates, start=2)]
        self.atrous_pw = [ConvBN(width, 1, activation="relu6", name=f"aspp{i}_pw", **bn)
                          for i in range(2, 2 + len(rates))]
        self.pooled = ConvBN(width, 1, activation="relu6", name="image_pool", **bn)
        self.project = ConvBN(out, 1, activation="relu6", name="project", **bn)
        self.drop = keras.layers.Dropout(dropout, name="dropout")

    def build(self, input_shape):
        wide = (*input_shape[:3], self.width)
        self.branch1.build(input_shape)
        for dw, pw in zip(self.atrous, self.atrous_pw):
            dw.build(input_shape)
            pw.build(input_shape)
        self.pooled.build((input_shape[0], 1, 1, input_shape[-1]))
        self.project.build((*wide[:3], self.width * (2 + len(self.rates))))

    def call(self, x, training=None):
        parts = [self.branch1(x, training=training)]
        for dw, pw in zip(self.atrous, self.atrous_pw):
            parts.append(pw(dw(x, training=training), training=training))
        pooled = self.pooled(ops.mean(x, axis=(1, 2), keepdims=True), training=training)
        parts.append(pooled * ops.ones_like(parts[0][..., :1]))   # nearest "resize" of 1x1
        y = self.project(ops.concatenate(parts, axis=-1), training=training)
        return self.drop(y, training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.out)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, out=self.out, width=self.width,
                      rates=list(self.rates), dropout=self.dropout_rate, deploy=self.deploy)
        return config


__all__ = ["ASPP", "IndexBlock", "IndexPool", "IndexUnpool", "InvertedResidual", "index_pool"]
