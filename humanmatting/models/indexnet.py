"""IndexNet matting (Lu, Dai, Shen, Xu, "Indices Matter: Learning to Index for Deep Image
Matting", ICCV 2019), the third family of the zoo: an image and a trimap in, the alpha out.

A MobileNetV2 encoder (t, c, n: 1,16,1 / 6,24,2 / 6,32,3 / 6,64,4 / 6,96,3 / 6,160,3 /
6,320,1) reading RGB + trimap, every stride 1; downsampling is index pooling
(`humanmatting.layers.index`) after the stages of 32 (the first conv), 24, 32, 64 and 160
channels, whose weighted features are also the skips; ASPP (320 -> 160, rates 2, 4, 8) or a
1x1 conv; a decoder of 5x5 conv + BatchNorm + ReLU6 blocks on concat([index-upsampled
deeper map, skip]); a 5x5 conv to one channel, BatchNorm, ReLU6 and a last 5x5 conv: the raw
alpha (clipped to [0, 1] downstream). The default is the paper's best: depthwise, many-to-one,
nonlinear, with context, ASPP; every variant is an override.

Keras's layout is channels_last (B, H, W, C); H and W must be multiples of 32.
"""

from pathlib import Path

import keras
import numpy as np

from humanmatting.layers import ConvBN
from humanmatting.layers.index import (ASPP, TORCH_BN, IndexBlock, IndexPool, IndexUnpool,
                                       InvertedResidual)
from humanmatting.models.torch_layout import from_torch, read_state_dict, to_torch
from humanmatting.registry import InputSpec, OutputSpec, register_model
from humanmatting.specs import SIZES_320

#: (expand, channels, blocks) of MobileNetV2's seven stages
MOBILENETV2 = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3),
               (6, 320, 1))
#: stages (0 = the first conv) after which the map is index-pooled
POOLED = (0, 2, 3, 4, 6)
#: decoder output channels, deepest first (after stages 6, 5, 4, 3, 2, 1, 0)
DECODER = (96, 64, 32, 24, 16, 32, 32)


def indexnet_model(*, index="depthwise", mode="m2o", nonlinear=True, context=True, aspp=True,
                   decoder_kernel=5, deploy=False, backbone_weights=None,
                   name="indexnet_mobilenetv2"):
    """Builds IndexNet on MobileNetV2.

    Args:
        index: "holistic" or "depthwise" index blocks; mode: "o2o" or "m2o" (depthwise).
        nonlinear, context: the index blocks' variants (see `IndexBlock`).
        aspp: ASPP at the end of the encoder (else a 1x1 ConvBN to 160 channels).
        decoder_kernel: the decoder's kernel size.
        backbone_weights: a local keras.applications MobileNetV2 weights file (alpha 1.0,
            e.g. ImageNet's `mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5`)
            to start the encoder from (`load_backbone`), e.g. `arch: {backbone_weights:
            FILE}` in a training config; the deploy form ignores it (its weights come from
            a trained file). Nothing is downloaded.

    Returns:
        keras.Model (B, H, W, 4) (RGB normalised, trimap / 255) -> (B, H, W, 1) raw alpha.
    """
    bn = dict(deploy=deploy, **TORCH_BN)
    inputs = keras.Input((None, None, 4), name="image_trimap")
    skips, indices = {}, {}
    x = ConvBN(32, 3, activation="relu6", name="layer0", **bn)(inputs)
    channels = 32
    for stage in range(8):
        if stage > 0:
            expand, out, blocks = MOBILENETV2[stage - 1]
            for block in range(blocks):
                x = InvertedResidual(channels, out, expand, deploy=deploy,
                                     name=f"layer{stage}_{block}")(x)
                channels = out
        if stage in POOLED:
            encoder, decoder = IndexBlock(channels, index, mode, nonlinear=nonlinear,
                                          context=context, deploy=deploy,
                                          name=f"index{stage}")(x)
            indices[stage] = decoder
            skips[stage] = keras.layers.Multiply(name=f"weighted{stage}")([x, encoder])
            x = IndexPool(name=f"pool{stage}")([x, encoder])
        elif stage < 7:
            skips[stage] = x
    if aspp:
        x = ASPP(320, 160, deploy=deploy, name="aspp")(x)
    else:
        x = ConvBN(160, 1, activation="relu6", name="aspp", **bn)(x)
    for stage, out in zip(range(6, -1, -1), DECODER):
        if stage in indices:
            x = IndexUnpool(name=f"unpool{stage}")([x, indices[stage]])
        x = keras.layers.Concatenate(name=f"cat{stage}")([x, skips[stage]])
        x = ConvBN(out, decoder_kernel, activation="relu6", name=f"decoder{stage}", **bn)(x)
    x = ConvBN(1, decoder_kernel, activation="relu6", name="pred", **bn)(x)
    alpha = keras.layers.Conv2D(1, decoder_kernel, padding="same", use_bias=False,
                                dtype="float32", name="pred_last")(x)
    model = keras.Model(inputs, alpha, name=name)
    if backbone_weights is not None and not deploy:   # a deploy form's come from a run
        load_backbone(model, backbone_weights)
    return model


#: keras.applications.MobileNetV2's names of its 17 inverted residuals, in order
APPLICATION_BLOCKS = ("expanded_conv",) + tuple(f"block_{i}" for i in range(1, 17))
#: keras.applications.MobileNetV2's BatchNorm epsilon (ours is PyTorch's, 1e-5)
APPLICATION_EPSILON = 1e-3


def _application(path):
    """keras.applications.MobileNetV2 (alpha 1.0) with the weights of a local file, with or
    without its classifier."""
    import warnings

    from keras.applications import MobileNetV2

    problems = []
    for top in (False, True):
        try:
            with warnings.catch_warnings():   # Keras warns of each group a wrong file lacks
                warnings.simplefilter("ignore")
                return MobileNetV2(weights=str(path), include_top=top,
                                   input_shape=(224, 224, 3))
        except (ValueError, KeyError, OSError) as err:
            problems.append(str(err).splitlines()[0][:200])
    raise ValueError(f"backbone_weights {path}: not a keras.applications MobileNetV2 (alpha "
                     f"1.0) weights file ({'; '.join(problems)})")


def _copy_bn(source, target):
    """A keras.applications BatchNorm into one of ours (epsilon 1e-3 -> 1e-5: the variance
    absorbs the difference, so that the normalisation is the same)."""
    gamma, beta, mean, var = (np.asarray(w) for w in source.get_weights())
    target.set_weights([gamma, beta, mean, var + APPLICATION_EPSILON - target.epsilon])


def load_backbone(model, path):
    """Starts IndexNet's encoder (training form) from a keras.applications MobileNetV2 file.

    Every inverted residual takes its expansion, depthwise and projection convolutions and
    BatchNorms (ours keep stride 1: IndexNet downsamples by index pooling). The first conv
    reads RGB + trimap normalised with ImageNet's mean and std, where MobileNetV2 reads RGB
    in [-1, 1]: its RGB kernel is rescaled to that input (x 2 std per channel), the shift
    (2 mean - 1) goes into the BatchNorm's mean (exact away from the zero-padded border),
    and the trimap channel starts at zero. Index blocks, ASPP and the decoder stay as built.

    Args:
        model: `indexnet_model(deploy=False)` (the default variant's encoder is the same in
            every variant).
        path: the weights file (`keras.applications.MobileNetV2(weights=path)` must read it).

    Returns:
        The names of our layers that were loaded.
    """
    from humanmatting.specs import IMAGENET_MEAN, IMAGENET_STD

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone_weights {path}: no such file")
    app = _application(path)
    first = model.get_layer("layer0")
    if first.bn is None:
        raise ValueError("load_backbone needs the training form (deploy=False)")
    kernel = np.asarray(app.get_layer("Conv1").kernel)            # (3, 3, 3, 32)
    std, mean = np.asarray(IMAGENET_STD, np.float32), np.asarray(IMAGENET_MEAN, np.float32)
    ours = np.zeros(first.conv.kernel.shape, np.float32)          # (3, 3, 4, 32)
    ours[:, :, :3] = kernel * (2.0 * std)[None, None, :, None]
    first.conv.kernel.assign(ours)
    _copy_bn(app.get_layer("bn_Conv1"), first.bn)
    shift = np.einsum("hwco,c->o", kernel, 2.0 * mean - 1.0)      # the constant it adds
    first.bn.moving_mean.assign(np.asarray(first.bn.moving_mean) - shift)
    loaded = ["layer0"]
    blocks = [layer for layer in model.layers if isinstance(layer, InvertedResidual)]
    if len(blocks) != len(APPLICATION_BLOCKS):
        raise ValueError(f"expected {len(APPLICATION_BLOCKS)} inverted residuals, the model "
                         f"has {len(blocks)}")
    for block, prefix in zip(blocks, APPLICATION_BLOCKS):
        parts = (("expand", block.expansion), ("depthwise", block.depthwise),
                 ("project", block.project))
        for suffix, ours_part in parts:
            if ours_part is None:   # the first block has no expansion
                continue
            conv = app.get_layer(f"{prefix}_{suffix}")
            ours_part.conv.kernel.assign(np.asarray(conv.kernel))   # shapes checked here
            _copy_bn(app.get_layer(f"{prefix}_{suffix}_BN"), ours_part.bn)
        loaded.append(block.name)
    return loaded


#: RGB / 255 with ImageNet mean and std, and the trimap / 255 as a 4th channel
IMAGE_TRIMAP = InputSpec(channels=3, normalisation="imagenet", trimap=True, sizes=SIZES_320)


def _load_original(model, path):
    return load_original(model, path)


#: still images run at their own size up to this long side (the original's test protocol:
#: the image rounded to a multiple of 32). On the composite benchmark of 2026-12-06
#: (stage 1 of the first release) it beat the 320 size table on SAD and MSE of the full-body
#: composites (2.66 / 19.4 against 2.91 / 20.8) and was level on portraits.
MAX_SIDE = 640

#: still images also run mirrored, the two alphas averaged (twice the compute). On the
#: composites of 2026-12-07 (stage 4's release) it lowered portraits / full-body SAD 1.69 /
#: 2.21 -> 1.63 / 2.10 and MSE 10.8 / 13.6 -> 10.1 / 12.2 (closed form: 10.7 / 34.2).
FLIP = True


@register_model(input=IMAGE_TRIMAP, output=OutputSpec(kind="alpha"), task="trimap_matting",
                weights="indexnet_mobilenetv2.weights.h5", max_side=MAX_SIDE, flip=FLIP,
                release_dtype="float16", foreign_loader=_load_original,
                description="IndexNet (Lu et al. 2019): image + trimap -> alpha, MobileNetV2 "
                            "with learned index pooling")
def indexnet_mobilenetv2(**kwargs):
    return indexnet_model(**kwargs)



# ---- checkpoints of the original code (PyTorch layout) --------------------------------------

def _conv_entries(key, conv, depthwise=False):
    """(torch key, variable, layout) of a Keras conv's kernel (and bias)."""
    out = [(f"{key}.weight", conv.kernel, "dw" if depthwise else "conv")]
    if getattr(conv, "use_bias", False):
        out.append((f"{key}.bias", conv.bias, "plain"))
    return out


def _convbn_entries(key, conv_index, bn_index, block):
    """A ConvBN as the original's Sequential: conv at `conv_index`, BatchNorm at `bn_index`."""
    out = _conv_entries(f"{key}.{conv_index}", block.conv, block.depthwise)
    out += [(f"{key}.{bn_index}.{name}", weight, "plain")
            for name, weight in zip(("weight", "bias", "running_mean", "running_var"),
                                    block.bn.weights)]
    return out


def _index_entries(key, block):
    out = []
    for k, conv in enumerate(block.convs):
        depthwise = block.kind == "depthwise" and block.mode == "o2o"
        prefix = f"{key}.indexnet" if block.kind == "holistic" else f"{key}.indexnet{k + 1}"
        if block.nonlinear:
            out += _convbn_entries(prefix, 0, 1, conv)
            out += _conv_entries(f"{prefix}.3", block.pointwise[k], depthwise)
        elif block.kind == "holistic":   # a bare Conv2d
            out += _conv_entries(prefix, conv)
        else:
            out += _conv_entries(f"{prefix}.0", conv, depthwise)
    return out


def state_entries(model):
    """Every weight of a training-form IndexNet with its key in the original code's state dict
    (`layer0.0.weight`, `layer2.1.conv.3.weight`, `index6.indexnet3.1.running_var`,
    `dconv_pp.aspp2.atrous_conv.3.weight`, `decoder_layer4.dconv.0.weight`,
    `pred.1.weight`, ...) and its layout ("conv": OIHW, "dw": (C, 1, kH, kW), "plain")."""
    out = []
    for layer in model.layers:
        name = layer.name
        if isinstance(layer, ConvBN):
            if getattr(layer, "deploy", False):
                raise ValueError("the original layout needs the training form (deploy=False)")
            key = {"layer0": "layer0", "aspp": "dconv_pp", "pred": "pred.0"}.get(
                name, f"decoder_layer{name[len('decoder'):]}.dconv")
            out += _convbn_entries(key, 0, 1, layer)
        elif isinstance(layer, InvertedResidual):
            stage, block = name[len("layer"):].split("_")
            key = f"layer{stage}.{block}.conv"
            parts = ([layer.expansion] if layer.expansion is not None else []) + [
                layer.depthwise, layer.project]
            for i, part in enumerate(parts):
                out += _convbn_entries(key, 3 * i, 3 * i + 1, part)
        elif isinstance(layer, IndexBlock):
            out += _index_entries(name, layer)
        elif isinstance(layer, ASPP):
            out += _convbn_entries("dconv_pp.aspp1.atrous_conv", 0, 1, layer.branch1)
            for i, (dw, pw) in enumerate(zip(layer.atrous, layer.atrous_pw), start=2):
                out += _convbn_entries(f"dconv_pp.aspp{i}.atrous_conv", 0, 1, dw)
                out += _convbn_entries(f"dconv_pp.aspp{i}.atrous_conv", 3, 4, pw)
            out += _convbn_entries("dconv_pp.global_avg_pool", 1, 2, layer.pooled)
            out += _convbn_entries("dconv_pp.bottleneck_conv", 0, 1, layer.project)
        elif name == "pred_last":
            out += _conv_entries("pred.1", layer)
    return out


def torch_state(model):
    """A training-form IndexNet's weights as a state dict of the original code's layout."""
    return {key: to_torch(var.numpy(), layout) for key, var, layout in state_entries(model)}


def load_original(model, path_or_state):
    """Loads a checkpoint of the original IndexNet code (`.pth` / `.pth.tar` with a
    `state_dict`, `.safetensors`, `.npz`; a `module.` prefix is removed) into a training-form
    model; every key must be used and every tensor must fit.

    Raises:
        ValueError: a missing or unused key, or a tensor of the wrong shape (named).
    """
    where = path_or_state if isinstance(path_or_state, (str, Path)) else "state dict"
    state = (read_state_dict(path_or_state) if isinstance(path_or_state, (str, Path))
             else dict(path_or_state))
    used = set()
    for key, var, layout in state_entries(model):
        if key not in state:
            raise ValueError(f"{where}: no {key!r}; is it an IndexNet checkpoint of this "
                             f"variant?")
        value = from_torch(np.asarray(state[key]), layout)
        if tuple(var.shape) != value.shape:
            expected = to_torch(np.zeros(var.shape), layout).shape
            raise ValueError(f"{where}: {key}: expected {expected}, got "
                             f"{np.asarray(state[key]).shape}")
        var.assign(value.astype(np.float32))
        used.add(key)
    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"{where}: {len(unused)} key(s) this IndexNet has no place for, e.g. "
                         f"{unused[0]!r}")
    return model


__all__ = ["APPLICATION_BLOCKS", "indexnet_model", "indexnet_mobilenetv2", "load_backbone",
           "load_original", "state_entries", "torch_state"]
