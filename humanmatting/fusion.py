"""Training form to deploy form: fold BatchNorm and ACNet branches into single convolutions."""

import keras

from humanmatting.layers import ACBlock, ConvBN

FUSABLE = (ACBlock, ConvBN)


def is_deploy(model):
    """True when no layer of `model` is in training form."""
    return all(layer.deploy for layer in model.layers if isinstance(layer, FUSABLE))


def fuse(model):
    """Returns the deploy twin of a model in training form.

    The twin is rebuilt from the model's config with every `ACBlock` and `ConvBN` switched to
    its deploy form (one convolution with bias); their fused kernels and biases are computed
    from the trained weights (BatchNorm in inference mode), and every other layer's weights are
    copied by name. Outputs are equal up to float32 rounding.

    Args:
        model: a functional keras.Model, usually from `create_model(name, deploy=False)`.

    Returns:
        A new keras.Model with the same inputs and outputs and fewer parameters. A model that
        is already in deploy form is returned as is.

    Example:
        >>> train = create_model("likeunet_dark_light", weights=None, deploy=False)
        >>> deploy = fuse(train)
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "get_config"):
        raise ValueError(f"fuse expects a functional keras.Model, got {type(model).__name__}")
    if is_deploy(model):
        return model
    config = model.get_config()
    for layer_config in config["layers"]:
        if "deploy" in layer_config["config"] and layer_config["class_name"] in (
                "ACBlock", "ConvBN"):
            layer_config["config"]["deploy"] = True
    fused = model.__class__.from_config(config)
    for layer in model.layers:
        target = fused.get_layer(layer.name)
        if isinstance(layer, FUSABLE):
            kernel, bias = layer.fused_weights()
            target.set_weights([kernel.astype("float32"), bias.astype("float32")])
        elif layer.weights:
            target.set_weights(layer.get_weights())
    return fused
