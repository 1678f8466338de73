"""Bilinear x2 upsampling that traces with unknown height and width."""

import keras


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
        import tensorflow as tf

        return super().call(tf.concat([x, x, x, x], axis=-1))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)
