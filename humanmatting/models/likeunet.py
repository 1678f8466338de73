"""LikeUnet: a slim U-Net for real-time portrait segmentation and matting.

After the LikeUnet reference implementation (Zhenzhong Tang, 2020, MIT), itself a small variant of
Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015. Variants with ACNet blocks follow Ding et al., "ACNet", ICCV 2019.

Layout (default widths):
    pre_conv (8, ReLU)
    enc1..enc5: conv-BN-ReLU (16, 32, 32, 32, 64) + 2x2 max pool      -> 1/32
    bottleneck_conv: conv-BN-ReLU (64)
    dec1..dec5: [dec{i}_conv: conv-BN-ReLU] (not in dec1, whose conv is the bottleneck),
                dec{i}_tconv: 3x3 stride-1 transposed conv-BN-ReLU, bilinear x2,
                concatenation with enc{5-i}'s pooled output (not in dec5)
    post_conv (8, ReLU), head: 1x1 conv, 2-class softmax (channel 1 = person)

In ACNet form every encoder/decoder/bottleneck 3x3 conv is an `ACBlock`; the transposed convs
and the pre/post convs stay plain, as in the original Dark-Light release.

Night-Lite (`likeunet_lite`) keeps the U shape and the ACNet training but is built for speed:
    stem_conv: 3x3 stride-2 conv-BN-ReLU (16)                            -> 1/2
    enc1..enc5: enc{i}_dw 3x3 depthwise ACBlock + enc{i}_pw 1x1 conv-BN-ReLU
                (16, 24, 32, 48, 64), 2x2 max pool after enc1..enc4     -> 1/32
    dec1..dec4: dec{i}_up nearest x2, dec{i}_concat with enc{5-i}, dec{i}_pw 1x1
                conv-BN-ReLU to enc{5-i}'s width, dec{i}_dw 3x3 depthwise ACBlock
    head: 1x1 conv to 2x4 logits at 1/2 resolution, head_shuffle depth-to-space to full
          resolution (sub-pixel convolution), softmax
Nothing runs at full resolution but the shuffle and the softmax, there are no transposed convs,
and no resize needs a size computed at run time: profiling the TFLite export (2 threads,
256x256) showed a dynamic-size bilinear resize of the 2-channel output alone cost ~2 ms, more
than the rest of the network, because XNNPACK cannot take it.
"""

import keras

from humanmatting.layers import (ACBlock, BilinearUpsample2x, ConvBN, DepthToSpace2x,
                                 NearestUpsample2x)
from humanmatting.registry import SIZES_320, InputSpec, register_model


def _conv_block(filters, *, acnet, norm, conv_bias, deploy, name):
    if acnet:
        return ACBlock(filters, activation="relu", norm=norm, conv_bias=conv_bias,
                       deploy=deploy, name=name)
    return ConvBN(filters, activation="relu", conv_bias=conv_bias, deploy=deploy, name=name)


def likeunet(*, input_channels=3, filters=(16, 32, 32, 32, 64), bottleneck_filters=64,
             edge_filters=8, acnet=False, acnet_norm="branch", conv_bias=False, deploy=True,
             name="likeunet"):
    """Builds a LikeUnet.

    Args:
        input_channels: 3 (RGB) or 1 (grayscale).
        filters: encoder widths, one per stage (five stages: input sides multiple of 32);
            the decoder mirrors them.
        bottleneck_filters: width at 1/32 resolution.
        edge_filters: width of the full-resolution pre and post convs.
        acnet: use ACNet blocks for the 3x3 convs.
        acnet_norm: "branch" (paper) or "sum" (original LikeUnet) ACNet form.
        conv_bias: biases on the convs before BatchNorm (the original release has them).
        deploy: fused inference form (True) or training form (False).
        name: model name.

    Returns:
        keras.Model: (B, H, W, input_channels) float32 -> (B, H, W, 2) softmax, channel 1 =
        person. H and W must be multiples of 2 ** len(filters).

    Example:
        >>> model = likeunet(input_channels=1, acnet=True, deploy=False)
        >>> model(np.zeros((1, 64, 96, 1), "float32")).shape
        TensorShape([1, 64, 96, 2])
    """
    if input_channels not in (1, 3):
        raise ValueError(f"input_channels must be 1 or 3, got {input_channels}")
    block = dict(acnet=acnet, norm=acnet_norm, conv_bias=conv_bias, deploy=deploy)
    inputs = keras.Input((None, None, input_channels), name="image")
    x = keras.layers.Conv2D(edge_filters, 3, padding="same", activation="relu",
                            name="pre_conv")(inputs)
    skips = []
    for i, width in enumerate(filters, start=1):
        x = _conv_block(width, name=f"enc{i}_conv", **block)(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
        skips.append(x)
    x = _conv_block(bottleneck_filters, name="bottleneck_conv", **block)(x)

    stages = len(filters)
    decoder = (bottleneck_filters,) + tuple(reversed(filters[:-1]))
    for i, width in enumerate(decoder, start=1):
        if i > 1:
            x = _conv_block(width, name=f"dec{i}_conv", **block)(x)
        x = ConvBN(width, activation="relu", transpose=True, conv_bias=conv_bias, deploy=deploy,
                   name=f"dec{i}_tconv")(x)
        x = BilinearUpsample2x(name=f"dec{i}_up")(x)
        if i < stages:
            x = keras.layers.Concatenate(name=f"dec{i}_concat")([skips[stages - 1 - i], x])
    x = keras.layers.Conv2D(edge_filters, 3, padding="same", activation="relu",
                            name="post_conv")(x)
    outputs = keras.layers.Conv2D(2, 1, activation="softmax", name="head", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def likeunet_lite(*, input_channels=3, filters=(16, 24, 32, 48, 64), bottleneck_filters=None,
                  edge_filters=16, depths=(1, 1, 1, 1, 1), acnet_norm="branch", deploy=True,
                  name="likeunet_lite"):
    """Builds a fast LikeUnet: stride-2 stem, depthwise-separable ACNet blocks, 1/2-res head.

    Args:
        input_channels: 3 (RGB) or 1 (grayscale).
        filters: widths of the five encoder stages (1/2 .. 1/32 resolution); the decoder
            returns to each skip's width.
        bottleneck_filters: width of the last encoder stage's pointwise conv (default
            filters[-1]).
        edge_filters: width of the stride-2 stem.
        depths: depthwise-separable blocks per encoder stage; blocks after a stage's first
            keep its width and add their input back (residual), so depth is cheap where the
            resolution is low.
        acnet_norm: "branch" (paper) or "sum" ACNet form.
        deploy: fused inference form (True) or training form (False).
        name: model name.

    Returns:
        keras.Model: (B, H, W, input_channels) float32 -> (B, H, W, 2) softmax, channel 1 =
        person. H and W must be multiples of 32.
    """
    if input_channels not in (1, 3):
        raise ValueError(f"input_channels must be 1 or 3, got {input_channels}")
    if len(filters) != 5 or len(depths) != 5 or min(depths) < 1:
        raise ValueError(f"likeunet_lite has five stages of at least one block, got "
                         f"filters={filters}, depths={depths}")

    def depthwise(width, block_name):   # 3x3 + 1x3 + 3x1 depthwise in training form
        return ACBlock(width, activation="relu", norm=acnet_norm, depthwise=True,
                       deploy=deploy, name=block_name)

    def pointwise(width, block_name):
        return ConvBN(width, 1, activation="relu", deploy=deploy, name=block_name)

    inputs = keras.Input((None, None, input_channels), name="image")
    x = ConvBN(edge_filters, 3, strides=2, activation="relu", deploy=deploy,
               name="stem_conv")(inputs)
    widths = list(filters)
    widths[-1] = bottleneck_filters or filters[-1]
    skips = []
    for i, width in enumerate(widths, start=1):
        x = depthwise(x.shape[-1], f"enc{i}_dw")(x)
        x = pointwise(width, f"enc{i}_pw")(x)
        for j in range(2, depths[i - 1] + 1):
            y = depthwise(width, f"enc{i}_{j}_dw")(x)
            y = pointwise(width, f"enc{i}_{j}_pw")(y)
            x = keras.layers.Add(name=f"enc{i}_{j}_add")([x, y])
        if i < len(widths):
            skips.append(x)
            x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    for i, skip in enumerate(reversed(skips), start=1):
        x = NearestUpsample2x(name=f"dec{i}_up")(x)
        x = keras.layers.Concatenate(name=f"dec{i}_concat")([skip, x])
        x = pointwise(skip.shape[-1], f"dec{i}_pw")(x)
        x = depthwise(skip.shape[-1], f"dec{i}_dw")(x)
    x = keras.layers.Conv2D(2 * 4, 1, name="head", dtype="float32")(x)
    x = DepthToSpace2x(name="head_shuffle", dtype="float32")(x)
    outputs = keras.layers.Softmax(name="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


GRAY_RAW = InputSpec(channels=1, normalisation="0-255")
GRAY = InputSpec(channels=1, sizes=SIZES_320)
RGB = InputSpec(channels=3, sizes=SIZES_320)
#: Test-time scales of the full-size models: short sides 256 and 384 around their 320 (on the
#: validation split of ../shared/data, with the flip, Night's IoU 0.9648 / 0.9363 at 320 alone
#: becomes 0.9673 / 0.9382 on portraits / full-body photos; MAE rises by 0.003 / 0.002, the
#: averaged edges being softer, which the default refinement more than takes back).
TTA_SCALES = (0.8, 1.2)
#: Night-Lite keeps short side 256: it is the real-time model, timed at 256x256, and video
#: and webcam frames (`Matter(realtime=True)`) get one pass there. Its still images get the
#: flip, the refinement and its own scales (validation split, portraits / full-body, stage 2:
#: one pass 0.9388 / 0.9022, flip 0.9448 / 0.9130, + refinement 0.9470 / 0.9200).
RGB_256 = InputSpec(channels=3)
#: Night-Lite's still-image scales: short sides 256, 320 and 384 (six passes of a model that
#: takes ~2 ms a pass). Trained on zoomed-in crops, it sees people in a whole photo better
#: larger, as Night does at 320 (validation split, stage 3, with flip, refinement and region
#: removal, portraits / full-body / people-free bands clean: (0.8, 1.2) 0.9483 / 0.9212 /
#: 7 of 13; (1.0, 1.5) 0.9504 / 0.9325 / 8; these 0.9519 / 0.9332 / 8; short sides 320-448
#: lose portraits, 0.9487 / 0.9355).
LITE_SCALES = (1.0, 1.25, 1.5)
#: Still images whose people cover under 20 % (first chosen: 30 %) of the image after the
#: first passes run again at 1.2 and 1.8 of the chosen size (`Matter`'s zoom): people in
#: scenes and groups are found better larger in the input, close portraits are not (they stay
#: on the first passes).
#: Chosen on every kind of photo of the validation split (2026-12-06, `benchmarks/
#: defaults_sweep.py --config configs/likeunet_night_people.yaml --model likeunet_night --zoom
#: off 0.3:1.2/1.8 0.2:1.2/1.8`; IoU portraits / full-body / street scenes / small people /
#: groups / people-free, mean over kinds): off 0.968 / 0.939 / 0.558 / 0.005 / 0.284 / 0.529,
#: 0.547; 0.3 0.968 / 0.940 / 0.634 / 0.001 / 0.353 / 0.471, 0.561; 0.2 0.968 / 0.941 /
#: 0.629 / 0.002 / 0.353 / 0.471, 0.561. The whole image at its own size instead (max_side
#: 640, 20 images a kind) lifted scenes as much but cost portraits 0.03. People-free scenes
#: pay: 2 of 34 more get a false person.
#: With the zoom weights (`<name>.zoom.weights.h5`, 2026-12-06 evening) the share is 0.2:
#: standing full-body photos often cover 20-30 % and the zoom weights are weaker on them
#: (Night, same sweep with its zoom weights: 0.3 0.968 / 0.929 / 0.682 / 0.003 / 0.412 /
#: 0.529, 0.587; 0.2 0.968 / 0.940 / 0.674 / 0.003 / 0.412 / 0.529, 0.588; 0.15 0.968 / 0.939
#: / 0.654 / 0.004 / 0.410 / 0.529, 0.584; Dark-Light 0.3 0.580, 0.2 0.581 with full-body
#: 0.926 -> 0.941).
ZOOM = (0.2, (1.2, 1.8))
#: Night-Lite's second look (its still images; video frames never zoom): short sides 461 and
#: 614. Same sweep with `--scales 1/1.25/1.5`: off 0.952 / 0.933 / 0.424 / 0.002 / 0.271 /
#: 0.471, 0.509; (1.8, 2.4) 0.952 / 0.925 / 0.537 / 0.005 / 0.281 / 0.471, 0.528; (1.5, 2.25)
#: 0.952 / 0.933 / 0.545 / 0.004 / 0.275 / 0.441, 0.525 (the mean over kinds decides).
#: With its zoom weights 0.3 stays: 0.3 0.952 / 0.915 / 0.568 / 0.000 / 0.346 / 0.471, 0.542;
#: 0.2 0.952 / 0.933 / 0.542 / 0.001 / 0.333 / 0.441, 0.534.
LITE_ZOOM = (0.3, (1.8, 2.4))
#: `Matter` drops person regions under 0.5 % of the image for the models trained here, after
#: the refinement. Chosen on every kind of photo of the validation split (2026-12-04,
#: `benchmarks/defaults_sweep.py --config configs/likeunet_night_people.yaml`, first
#: people-in-any-photo fine-tune of Night; IoU portraits / full-body / street scenes / groups /
#: people-free): off 0.958 / 0.932 / 0.615 / 0.385 / 0.206, 0.001 0.958 / 0.932 / 0.615 /
#: 0.388 / 0.353, 0.005 0.958 / 0.933 / 0.614 / 0.392 / 0.471: it costs no kind with people
#: and keeps specks off people-free scenes.
MIN_REGION = 0.005
#: The filter of regions the model is unsure of (mean person probability under a threshold,
#: 0.75 until 2026-12-04) is off: chosen on portraits and standing people, it deleted real
#: people in street scenes and groups. Same sweep, min_region 0.005, min_confidence 0 / 0.6 /
#: 0.75: scenes 0.614 / 0.604 / 0.446, groups 0.392 / 0.393 / 0.330 (people-free 0.471 /
#: 0.529 / 0.794); on the retrained Night 0.584 / 0.570 / 0.456 and 0.324 / 0.295 / 0.257.
#: A default may cost no kind of photo with people more than 0.01; 0.6 and 0.75 do, 0.5 does
#: nothing. `Matter(min_confidence=0.75)` still turns it on.
MIN_CONFIDENCE = 0.0


@register_model(input=RGB, weights="likeunet_night.weights.h5", flip=True,
                scales=TTA_SCALES, zoom=ZOOM, refine="cf", min_region=MIN_REGION,
                min_confidence=MIN_CONFIDENCE,
                description="LikeUnet Night: RGB input")
def likeunet_night(**kwargs):
    return likeunet(**{"input_channels": 3, "name": "likeunet_night", **kwargs})


@register_model(input=GRAY, weights="likeunet_dark.weights.h5", flip=True,
                scales=TTA_SCALES, zoom=ZOOM, refine="cf", min_region=MIN_REGION,
                min_confidence=MIN_CONFIDENCE,
                description="LikeUnet Dark: grayscale input")
def likeunet_dark(**kwargs):
    return likeunet(**{"input_channels": 1, "name": "likeunet_dark", **kwargs})


@register_model(input=GRAY, weights="likeunet_dark_light.weights.h5", flip=True,
                scales=TTA_SCALES, zoom=ZOOM, refine="cf", min_region=MIN_REGION,
                min_confidence=MIN_CONFIDENCE,
                description="LikeUnet Dark-Light: grayscale, trained in ACNet form")
def likeunet_dark_light(**kwargs):
    return likeunet(**{"input_channels": 1, "acnet": True, "acnet_norm": "sum",
                       "name": "likeunet_dark_light", **kwargs})


@register_model(input=RGB_256, weights="likeunet_night_lite.weights.h5", flip=True,
                scales=LITE_SCALES, zoom=LITE_ZOOM, refine="cf", min_region=MIN_REGION,
                min_confidence=MIN_CONFIDENCE,
                description="LikeUnet Night-Lite: RGB, real time, depthwise-separable "
                            "ACNet blocks, trained in ACNet form")
def likeunet_night_lite(**kwargs):
    return likeunet_lite(**{"input_channels": 3, "acnet_norm": "branch",
                            "filters": (16, 16, 32, 128, 192), "depths": (1, 1, 1, 3, 3),
                            "name": "likeunet_night_lite", **kwargs})


@register_model(
    input=GRAY_RAW,
    weights="likeunet_dark_light_original.weights.h5",
    sha256="bf59268a81a80fc268847b3f0f7f39ef2131d7e1ef938ca00e56fb62d0742402",
    description="the original LikeUnet Dark-Light release (AISegment, MIT), converted",
    metrics={"reported_val_miou": 0.9735},
)
def likeunet_dark_light_original(**kwargs):
    return likeunet(**{"input_channels": 1, "acnet": True, "acnet_norm": "sum",
                       "conv_bias": True, "name": "likeunet_dark_light_original", **kwargs})
