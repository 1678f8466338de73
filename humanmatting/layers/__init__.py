"""Building blocks shared by the model families."""

from humanmatting.layers.acnet import ACBlock
from humanmatting.layers.conv import ConvBN, fold_batchnorm, transpose_to_conv_kernel
from humanmatting.layers.resize import (BilinearUpsample, BilinearUpsample2x, DepthToSpace2x,
                                        NearestUpsample2x)
from humanmatting.layers.rsu import RSU

__all__ = ["ACBlock", "BilinearUpsample", "BilinearUpsample2x", "ConvBN", "DepthToSpace2x",
           "NearestUpsample2x", "RSU", "fold_batchnorm", "transpose_to_conv_kernel"]
