"""x2 upsampling layers that trace with unknown height and width.

On the TensorFlow backend (inference, export) they call TensorFlow ops that export with dynamic
H and W; on the other Keras backends (JAX, PyTorch: `humanmatting train` runs there) the
same maths in `keras.ops`, where shapes are static.
"""

import keras
from keras import ops


def _tensorflow():
    return keras.backend.backend() == "tensorflow"


def depth_to_space2x(x):
    """DCR depth-to-space by 2 in keras.ops: (B, H, W, 4C) -> (B, 2H, 2W, C)."""
    b, h, w, c4 = ops.shape(x)
    c = c4 // 4
    x = ops.reshape(x, (b, h, w, 2, 2, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (b, 2 * h, 2 * w, c))


@keras.saving.register_keras_serializable(package="humanmatting")
class BilinearUpsample2x(keras.layers.Layer):
    """Doubles height and width with bilinear interpolation (half-pixel centres).

    Equals `keras.layers.UpSampling2D(interpolation="bilinear")`, which the original LikeUnet
    used. That layer, like `keras.ops.image.resize` with a size computed from the input, fails
    to trace inside `model.export` when H and W are unknown; `tf.image.resize` with a size taken
    from `tf.shape` exports to SavedModel, ONNX and TFLite with dynamic H and W. This is the one
    place model code calls TensorFlow directly, and only for that reason.

    Shapes: (B, H, W, C) -> (B, 2H, 2W, C).
    """

    def call(self, x):
        if not _tensorflow():
            _, h, w, _ = ops.shape(x)
            return ops.cast(ops.image.resize(x, (2 * h, 2 * w), interpolation="bilinear",
                                             antialias=False), x.dtype)
        import tensorflow as tf

        size = tf.shape(x)[1:3] * 2
        return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


@keras.saving.register_keras_serializable(package="humanmatting")
class DepthToSpace2x(keras.layers.Layer):
    """Rearranges 4C channels into a 2x larger C-channel map (sub-pixel convolution).

    `out[2h + i, 2w + j, c] = x[h, w, (2i + j) * C + c]` (TensorFlow's and ONNX's DCR order).
    After a convolution to 4C channels this is the learned upsampling of Shi et al., "Real-Time
    Single Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural
    Network", CVPR 2016. No size is computed from the input, so the TFLite XNNPACK delegate runs
    it even when H and W are left dynamic (a dynamic bilinear resize falls back to the slow
    reference kernel).

    Shapes: (B, H, W, 4C) -> (B, 2H, 2W, C).
    """

    def call(self, x):
        if not _tensorflow():
            return depth_to_space2x(x)
        import tensorflow as tf

        return tf.nn.depth_to_space(x, 2)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c // 4)


@keras.saving.register_keras_serializable(package="humanmatting")
class NearestUpsample2x(DepthToSpace2x):
    """Nearest-neighbour x2 upsampling as four channel copies and a depth-to-space.

    Equals `keras.layers.UpSampling2D(interpolation="nearest")` and, like `DepthToSpace2x`,
    stays on the fast TFLite path with dynamic H and W.

    Shapes: (B, H, W, C) -> (B, 2H, 2W, C).
    """

    def call(self, x):
        if not _tensorflow():
            return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
        import tensorflow as tf

        return super().call(tf.concat([x, x, x, x], axis=-1))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


@keras.saving.register_keras_serializable(package="humanmatting")
class BilinearUpsample(keras.layers.Layer):
    """Multiplies height and width by an integer `factor` with bilinear interpolation
    (half-pixel centres, no antialiasing: PyTorch's `align_corners=False`), one resize (not
    repeated doublings, which differ). TensorFlow ops on TensorFlow for the same reason as
    `BilinearUpsample2x`.

    Shapes: (B, H, W, C) -> (B, factor H, factor W, C).
    """

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        self.factor = int(factor)

    def call(self, x):
        if self.factor == 1:
            return x
        if not _tensorflow():
            _, h, w, _ = ops.shape(x)
            return ops.cast(ops.image.resize(x, (self.factor * h, self.factor * w),
                                             interpolation="bilinear", antialias=False),
                            x.dtype)
        import tensorflow as tf

        size = tf.shape(x)[1:3] * self.factor
        return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        f = self.factor
        return (b, None if h is None else f * h, None if w is None else f * w, c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
