"""U^2-Net's residual U-blocks (Qin et al., "U2-Net: Going Deeper with Nested U-Structure for
Salient Object Detection", Pattern Recognition 2020), as composite layers.

Each block is built of `ConvBN` leaves (REBNCONV: a 3x3 convolution with bias, BatchNorm and
ReLU; padding = dilation), stored under the attribute names of the original code's state dict
(`rebnconvin`, `rebnconv1`, ..., `rebnconv1d`), so that `humanmatting.fuse` folds every
BatchNorm (composites are walked by attribute) and a checkpoint loader can map the original
keys one to one.

- `RSU(height, mid, out)`, RSU-L for L = height: an input conv (-> out), conv1 (-> mid), then
  L - 2 levels of a 2x2 max pool (ceil mode: Keras "same" pooling pads the end, as PyTorch's
  ceil mode does) before a mid -> mid conv, a dilation-2 conv at the bottom without a pool,
  and a decoder of convs on concat([deeper, skip]) (2 mid -> mid; the last 2 mid -> out)
  with the deeper map resized bilinearly to the skip's size (x2 on inputs whose sides are
  multiples of 2^(L-2)); out = decoded + input conv.
- `RSU(4, mid, out, dilated=True)`, RSU-4F: no pooling, dilations 1, 2, 4, 8 down and 4, 2,
  1 up.

BatchNorm uses PyTorch's epsilon (1e-5) and momentum (0.1, Keras's 0.9) so that the original
checkpoints load as they were trained.
"""

import keras
import numpy as np
from keras import ops

from humanmatting.layers.conv import ConvBN
from humanmatting.layers.resize import BilinearUpsample2x

#: PyTorch BatchNorm2d's defaults, which the original checkpoints were trained with
TORCH_EPSILON = 1e-5
TORCH_MOMENTUM = 0.9   # Keras's convention: 1 - PyTorch's 0.1


@keras.saving.register_keras_serializable(package="humanmatting")
class RSU(keras.layers.Layer):
    """A residual U-block, RSU-L (`height` = L in 4..7) or RSU-4F (`dilated=True`).

    Args:
        height: L, the number of encoder convs after the input conv.
        mid: channels inside the U.
        out: output channels (and those of the input conv, for the residual).
        dilated: RSU-4F (dilations instead of pooling; height must be 4).
        deploy: every REBNCONV as one convolution with its BatchNorm folded in.

    Shapes: (B, H, W, C) -> (B, H, W, out); H and W multiples of 2^(height - 2) (RSU-L).
    """

    def __init__(self, height, mid, out, *, dilated=False, deploy=False, **kwargs):
        super().__init__(**kwargs)
        if dilated and height != 4:
            raise ValueError(f"RSU-4F has height 4, got {height}")
        if not 3 <= height <= 8:
            raise ValueError(f"height must be in 3..8, got {height}")
        self.height, self.mid, self.out = height, mid, out
        self.dilated, self.deploy = dilated, deploy

        def rebnconv(filters, dilation, name):
            return ConvBN(filters, 3, activation="relu", conv_bias=True,
                          dilation_rate=dilation, deploy=deploy, epsilon=TORCH_EPSILON,
                          momentum=TORCH_MOMENTUM, name=name)

        self.rebnconvin = rebnconv(out, 1, "rebnconvin")
        # encoder dilations: RSU-4F 1, 2, 4, 8; RSU-L 1 ... 1 then 2 at the bottom
        down = [2 ** i for i in range(height)] if dilated else [1] * (height - 1) + [2]
        for i, d in enumerate(down, start=1):
            setattr(self, f"rebnconv{i}", rebnconv(mid, d, f"rebnconv{i}"))
        for i in range(height - 1, 0, -1):
            d = down[i - 1] if dilated else 1
            setattr(self, f"rebnconv{i}d", rebnconv(out if i == 1 else mid, d,
                                                   f"rebnconv{i}d"))
        self.upsample = None if dilated else BilinearUpsample2x(name="upsample")

    def build(self, input_shape):
        b, h, w, _ = input_shape
        self.rebnconvin.build(input_shape)
        self.rebnconv1.build((b, h, w, self.out))
        for i in range(2, self.height + 1):
            getattr(self, f"rebnconv{i}").build((b, None, None, self.mid))
        for i in range(self.height - 1, 0, -1):
            getattr(self, f"rebnconv{i}d").build((b, None, None, 2 * self.mid))

    def call(self, x, training=None):
        hxin = self.rebnconvin(x, training=training)
        skips = [self.rebnconv1(hxin, training=training)]
        hx = skips[0]
        for i in range(2, self.height + 1):
            if not self.dilated and i < self.height:   # no pool before the dilated bottom
                hx = ops.max_pool(hx, 2, strides=2, padding="same")
            hx = getattr(self, f"rebnconv{i}")(hx, training=training)
            skips.append(hx)
        hx = skips.pop()                               # the bottom
        for i in range(self.height - 1, 0, -1):
            skip = skips.pop()
            if not self.dilated and i < self.height - 1:
                hx = self.upsample(hx)
            hx = getattr(self, f"rebnconv{i}d")(ops.concatenate([hx, skip], axis=-1),
                                                training=training)
        return hx + hxin

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.out)

    def rebnconvs(self):
        """(original name, ConvBN) of every REBNCONV, in the original's order."""
        names = (["rebnconvin"] + [f"rebnconv{i}" for i in range(1, self.height + 1)]
                 + [f"rebnconv{i}d" for i in range(self.height - 1, 0, -1)])
        return [(n, getattr(self, n)) for n in names]

    def torch_state(self, prefix):
        """The block's weights as a state dict of the original PyTorch layout:
        `{prefix}.{rebnconv}.conv_s1.weight` (out, in, kH, kW), `.conv_s1.bias`,
        `.bn_s1.{weight, bias, running_mean, running_var}` (training form only)."""
        if self.deploy:
            raise ValueError("torch_state needs the training form (BatchNorm separate)")
        out = {}
        for name, block in self.rebnconvs():
            key = f"{prefix}.{name}"
            out[f"{key}.conv_s1.weight"] = np.transpose(block.conv.kernel.numpy(), (3, 2, 0, 1))
            out[f"{key}.conv_s1.bias"] = block.conv.bias.numpy()
            for torch_name, weight in zip(("weight", "bias", "running_mean", "running_var"),
                                          block.bn.weights):
                out[f"{key}.bn_s1.{torch_name}"] = weight.numpy()
        return out

    def load_torch_state(self, state, prefix):
        """Sets the block's weights from a state dict of the original layout (see
        `torch_state`; `num_batches_tracked` entries are ignored); returns the keys used.

        Raises:
            KeyError: a key is missing. ValueError: a tensor of the wrong shape.
        """
        if self.deploy:
            raise ValueError("load_torch_state needs the training form (BatchNorm separate)")
        used = []
        for name, block in self.rebnconvs():
            key = f"{prefix}.{name}"
            conv = [np.transpose(np.asarray(state[f"{key}.conv_s1.weight"]), (2, 3, 1, 0)),
                    np.asarray(state[f"{key}.conv_s1.bias"])]
            bn = [np.asarray(state[f"{key}.bn_s1.{n}"])
                  for n in ("weight", "bias", "running_mean", "running_var")]
            for weight, value, what in zip(list(block.conv.weights) + list(block.bn.weights),
                                           conv + bn, ("conv", "bias", "bn", "bn", "bn", "bn")):
                if tuple(weight.shape) != value.shape:
                    raise ValueError(f"{key} ({what}): expected {tuple(weight.shape)}, got "
                                     f"{value.shape}")
                weight.assign(value.astype(np.float32))
            used += [f"{key}.conv_s1.weight", f"{key}.conv_s1.bias"] + [
                f"{key}.bn_s1.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
        return used

    def get_config(self):
        return {**super().get_config(), "height": self.height, "mid": self.mid,
                "out": self.out, "dilated": self.dilated, "deploy": self.deploy}
