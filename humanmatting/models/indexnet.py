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

import keras

from humanmatting.layers import ConvBN
from humanmatting.layers.index import (ASPP, TORCH_BN, IndexBlock, IndexPool, IndexUnpool,
                                       InvertedResidual)
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
                   decoder_kernel=5, deploy=False, name="indexnet_mobilenetv2"):
    """Builds IndexNet on MobileNetV2.

    Args:
        index: "holistic" or "depthwise" index blocks; mode: "o2o" or "m2o" (depthwise).
        nonlinear, context: the index blocks' variants (see `IndexBlock`).
        aspp: ASPP at the end of the encoder (else a 1x1 ConvBN to 160 channels).
        decoder_kernel: the decoder's kernel size.

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
    return keras.Model(inputs, alpha, name=name)


#: RGB / 255 with ImageNet mean and std, and the trimap / 255 as a 4th channel
IMAGE_TRIMAP = InputSpec(channels=3, normalisation="imagenet", trimap=True, sizes=SIZES_320)


@register_model(input=IMAGE_TRIMAP, output=OutputSpec(kind="alpha"), task="trimap_matting",
                description="IndexNet (Lu et al. 2019): image + trimap -> alpha, MobileNetV2 "
                            "with learned index pooling; no weights yet")
def indexnet_mobilenetv2(**kwargs):
    return indexnet_model(**kwargs)


__all__ = ["indexnet_model", "indexnet_mobilenetv2"]
