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
