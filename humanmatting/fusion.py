"""Training form to deploy form, by protocol: any layer that has a training form says how to
give its deploy form, and the walker finds such layers at any depth.

The protocol (no list of class names anywhere):
- A layer with a training form takes a `deploy` argument, keeps it as `self.deploy` and
  returns it in `get_config()`; it is registered with `keras.saving`
  (`@keras.saving.register_keras_serializable`), so its config names its class.
- A *leaf* (one convolution once fused: `ConvBN`, `ACBlock`) has `fused_weights()`, which
  returns the deploy twin's weights in that twin's `get_weights()` order, computed from the
  trained weights (BatchNorm in inference mode).
- A *composite* (a block built of such layers, e.g. a U^2-Net RSU block) passes `deploy` on to
  its sublayers and has no `fused_weights()`; the walker goes into it and fuses its parts,
  matched by the attribute they are stored under.

`fuse(model)` sets `deploy` to True in every such layer's config at every depth, rebuilds the
model, and copies weights: fused weights for leaves, the weights as they are for everything
else. A result with a layer still in training form is an error, never a silent pass.
"""

import keras

__all__ = ["fusable_layers", "fuse", "is_deploy", "is_leaf", "leaf_layers", "sublayers"]


def sublayers(layer):
    """(attribute, layer) pairs of a layer's direct sublayers (a list attribute gives
    `name[i]`); the layers of a functional model by name."""
    if isinstance(layer, keras.Model) and hasattr(layer, "layers") and layer.layers:
        return [(sub.name, sub) for sub in layer.layers]
    out = []
    for attr, value in vars(layer).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, keras.layers.Layer):
            out.append((attr, value))
        elif isinstance(value, (list, tuple)):
            out += [(f"{attr}[{i}]", v) for i, v in enumerate(value)
                    if isinstance(v, keras.layers.Layer)]
    return out


def _has_training_form(layer):
    return isinstance(getattr(layer, "deploy", None), bool) and "deploy" in layer.get_config()


def fusable_layers(layer, prefix=""):
    """Every layer with a training form inside `layer` (a model or a layer), at any depth, as
    (path, layer) pairs; a composite comes before its parts."""
    out = []
    for attr, sub in sublayers(layer):
        path = f"{prefix}{attr}"
        if _has_training_form(sub):
            out.append((path, sub))
        out += fusable_layers(sub, prefix=path + "/")
    return out


def is_leaf(layer):
    """True for a layer with a training form that is one convolution once fused (it has
    `fused_weights()`), as opposed to a composite the walker goes into."""
    return hasattr(layer, "fused_weights") and _has_training_form(layer)


def leaf_layers(layer):
    """The leaves (`is_leaf`) inside `layer`, at any depth, as (path, layer) pairs in the
    order the walker meets them."""
    return [(path, sub) for path, sub in fusable_layers(layer) if is_leaf(sub)]


def is_deploy(model):
    """True when no layer of `model`, at any depth, is in training form."""
    return all(layer.deploy for _, layer in fusable_layers(model))


def _set_deploy(config):
    """Sets `deploy` to True in every registered layer config inside `config` (recursively)."""
    if isinstance(config, dict):
        inner = config.get("config")
        if (isinstance(inner, dict) and inner.get("deploy") is False
                and config.get("registered_name")
                and keras.saving.get_registered_object(config["registered_name"])):
            inner["deploy"] = True
        for value in config.values():
            _set_deploy(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            _set_deploy(value)


def _copy_weights(src, dst, path):
    if is_leaf(src):
        dst.set_weights([w.astype("float32") for w in src.fused_weights()])
        return
    subs = sublayers(src)
    if not subs:
        if src.weights:
            dst.set_weights(src.get_weights())
        return
    targets = dict(sublayers(dst))
    for attr, sub in subs:
        if attr not in targets:
            raise ValueError(f"fuse: {path}{attr} has no counterpart in the deploy form")
        _copy_weights(sub, targets[attr], f"{path}{attr}/")


def fuse(model):
    """Returns the deploy twin of a model in training form.

    Args:
        model: a functional keras.Model, usually from `create_model(name, deploy=False)`.

    Returns:
        A new keras.Model with the same inputs and outputs, every layer with a training form
        in its deploy form (one convolution with bias per leaf), outputs equal up to float32
        rounding. A model already in deploy form is returned as is.

    Raises:
        ValueError: not a functional model, or a layer that stayed in training form (its
        path is named).

    Example:
        >>> train = create_model("likeunet_dark_light", weights=None, deploy=False)
        >>> deploy = fuse(train)
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "get_config"):
        raise ValueError(f"fuse expects a functional keras.Model, got {type(model).__name__}")
    if is_deploy(model):
        return model
    config = model.get_config()
    _set_deploy(config)
    fused = model.__class__.from_config(config)
    left = [path for path, layer in fusable_layers(fused) if not layer.deploy]
    if left:
        raise ValueError(f"fuse: {len(left)} layer(s) of {model.name!r} stayed in training "
                         f"form (not registered with keras.saving?): {', '.join(left[:5])}")
    _copy_weights(model, fused, "")
    return fused
