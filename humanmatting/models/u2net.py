"""U^2-Net and U^2-Net-P (Qin et al., "U2-Net: Going Deeper with Nested U-Structure for
Salient Object Detection", Pattern Recognition 2020), the second family of the zoo.

Six encoder stages of residual U-blocks (`humanmatting.layers.RSU`) with 2x2 max pools (ceil
mode) between them, five decoder stages on concat([deeper upsampled x2, skip]), six side
outputs (a 3x3 conv to one channel on each decoder stage and on the deepest encoder stage,
upsampled bilinearly to the input size) and a 1x1 conv over their concatenation, the fused
map. All seven go through a sigmoid; the model returns them as a dict, `fused` and
`side1`..`side6`, each (B, H, W, 1) at the input size (H and W multiples of 32). Layer names
are the original state dict's (`stage1`..`stage6`, `stage5d`..`stage1d`, `side1`..`side6`,
`outconv`).

Keras's layout is channels_last (B, H, W, C): the original's NCHW tensors and OIHW kernels are
transposed on loading, never at run time.
"""

from pathlib import Path

import keras
import numpy as np

from humanmatting.layers import RSU, BilinearUpsample, BilinearUpsample2x
from humanmatting.models.torch_layout import from_torch, read_state_dict, to_torch
from humanmatting.registry import InputSpec, OutputSpec, register_model
from humanmatting.specs import SIZES_320

#: (height, mid, out, dilated) of encoder stages 1..6 and decoder stages 5d..1d
U2NET_STAGES = {
    "encoder": [(7, 32, 64, False), (6, 32, 128, False), (5, 64, 256, False),
                (4, 128, 512, False), (4, 256, 512, True), (4, 256, 512, True)],
    "decoder": [(4, 256, 512, True), (4, 128, 256, False), (5, 64, 128, False),
                (6, 32, 64, False), (7, 16, 64, False)],
}
#: U^2-Net-P: mid 16 and out 64 in every stage
U2NETP_STAGES = {
    "encoder": [(h, 16, 64, f) for h, _, _, f in U2NET_STAGES["encoder"]],
    "decoder": [(h, 16, 64, f) for h, _, _, f in U2NET_STAGES["decoder"]],
}
SIDES = tuple(f"side{i}" for i in range(1, 7))


def u2net_model(stages, *, input_channels=3, deploy=False, name="u2net"):
    """Builds a U^2-Net of the given stage table (`U2NET_STAGES` or `U2NETP_STAGES`).

    Returns:
        keras.Model (B, H, W, input_channels) -> {"fused", "side1".."side6"}: (B, H, W, 1)
        probabilities.
    """
    inputs = keras.Input((None, None, input_channels), name="image")
    x, skips = inputs, []
    for i, (height, mid, out, dilated) in enumerate(stages["encoder"], start=1):
        if i > 1:
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool{i - 1}{i}")(x)
        x = RSU(height, mid, out, dilated=dilated, deploy=deploy, name=f"stage{i}")(x)
        skips.append(x)
    maps = {6: x}
    for k, (height, mid, out, dilated) in zip(range(5, 0, -1), stages["decoder"]):
        x = BilinearUpsample2x(name=f"up{k + 1}")(x)
        x = keras.layers.Concatenate(name=f"cat{k}d")([x, skips[k - 1]])
        x = RSU(height, mid, out, dilated=dilated, deploy=deploy, name=f"stage{k}d")(x)
        maps[k] = x
    sides = []
    for k in range(1, 7):
        side = keras.layers.Conv2D(1, 3, padding="same", name=f"side{k}")(maps[k])
        sides.append(BilinearUpsample(2 ** (k - 1), name=f"side{k}_up")(side))
    fused = keras.layers.Conv2D(1, 1, name="outconv")(
        keras.layers.Concatenate(name="sides")(sides))
    outputs = {"fused": keras.layers.Activation("sigmoid", dtype="float32",
                                                name="fused")(fused)}
    for k, side in enumerate(sides, start=1):
        outputs[f"side{k}"] = keras.layers.Activation("sigmoid", dtype="float32",
                                                      name=f"side{k}_prob")(side)
    return keras.Model(inputs, outputs, name=name)


def torch_state(model):
    """A training-form U^2-Net's weights as a state dict of the original code's layout."""
    state = {}
    for layer in model.layers:
        if isinstance(layer, RSU):
            state.update(layer.torch_state(layer.name))
        elif layer.name in SIDES or layer.name == "outconv":
            kernel, bias = (w.numpy() for w in layer.weights)
            state[f"{layer.name}.weight"] = to_torch(kernel)
            state[f"{layer.name}.bias"] = bias
    return state


def load_original(model, path_or_state):
    """Loads a checkpoint of the original U^2-Net code (or of the portrait fork, e.g.
    `u2net_human_seg.pth`) into a training-form model; every key must be used and every
    tensor must fit.

    Raises:
        ValueError: a missing or unused key, or a tensor of the wrong shape (named).
    """
    state = (read_state_dict(path_or_state) if isinstance(path_or_state, (str, Path))
             else dict(path_or_state))
    where = path_or_state if isinstance(path_or_state, (str, Path)) else "state dict"
    used = set()
    try:
        for layer in model.layers:
            if isinstance(layer, RSU):
                used.update(layer.load_torch_state(state, layer.name))
            elif layer.name in SIDES or layer.name == "outconv":
                weight = from_torch(state[f"{layer.name}.weight"])
                bias = state[f"{layer.name}.bias"]
                kernel_var, bias_var = layer.weights
                if tuple(kernel_var.shape) != weight.shape:
                    raise ValueError(f"{layer.name}: expected {tuple(kernel_var.shape)}, got "
                                     f"{weight.shape}")
                kernel_var.assign(weight.astype(np.float32))
                bias_var.assign(np.asarray(bias, np.float32))
                used.update({f"{layer.name}.weight", f"{layer.name}.bias"})
    except KeyError as err:
        raise ValueError(f"{where}: no {err.args[0]!r}; is it a {model.name} checkpoint?") \
            from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}; is it a {model.name} checkpoint?") from None
    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"{where}: {len(unused)} key(s) this {model.name} has no place for, "
                         f"e.g. {unused[0]!r}")
    return model


#: Our training and inference convention: RGB / 255, ImageNet mean and std; sizes as Night's
IMAGENET_RGB = InputSpec(channels=3, normalisation="imagenet", sizes=SIZES_320)
DEEP_SUPERVISION = OutputSpec(kind="sigmoid", primary="fused", sides=SIDES)
#: The original code's own pre- and post-processing (its test script, and rembg's): the image
#: resized to 320x320 whatever its aspect, divided by its own maximum, ImageNet mean and std;
#: the fused map min-max normalised per image, resized back. With these presets a checkpoint of
#: the original code gives the original's outputs (up to the resize: OpenCV's, where the
#: original uses skimage's and rembg PIL's).
ORIGINAL_INPUT = InputSpec(channels=3, normalisation="max-imagenet", sizes=((320, 320),))
ORIGINAL_OUTPUT = OutputSpec(kind="sigmoid", primary="fused", sides=SIDES, rescale="minmax")


@register_model(input=IMAGENET_RGB, output=DEEP_SUPERVISION, foreign_loader=load_original,
                description="U^2-Net (Qin et al. 2020): nested residual U-blocks, deep "
                            "supervision; 44 M parameters, no weights shipped")
def u2net(**kwargs):
    return u2net_model(U2NET_STAGES, **{"name": "u2net", **kwargs})


@register_model(input=IMAGENET_RGB, output=DEEP_SUPERVISION, foreign_loader=load_original,
                description="U^2-Net-P (Qin et al. 2020): the 1.1 M-parameter U^2-Net")
def u2netp(**kwargs):
    return u2net_model(U2NETP_STAGES, **{"name": "u2netp", **kwargs})


@register_model(input=ORIGINAL_INPUT, output=ORIGINAL_OUTPUT, foreign_loader=load_original,
                description="u2net with the original code's pre- and post-processing, for "
                            "its checkpoints (u2net.pth, u2net_human_seg.pth)")
def u2net_original(**kwargs):
    return u2net(**kwargs)


@register_model(input=ORIGINAL_INPUT, output=ORIGINAL_OUTPUT, foreign_loader=load_original,
                description="u2netp with the original code's pre- and post-processing, for "
                            "its checkpoint (u2netp.pth)")
def u2netp_original(**kwargs):
    return u2netp(**kwargs)
