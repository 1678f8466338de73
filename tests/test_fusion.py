"""Fusion by protocol: layers with a training form at any depth, no list of class names."""

import keras
import numpy as np
import pytest

from humanmatting.fusion import fusable_layers, fuse, is_deploy
from humanmatting.layers import ACBlock, ConvBN

from conftest import randomize_batchnorm


@keras.saving.register_keras_serializable(package="humanmatting_tests")
class TwoLevelBlock(keras.layers.Layer):
    """A composite block (as U^2-Net's RSU blocks are): a ConvBN, then a list holding an
    ACBlock and a nested composite, with a residual sum; no fused_weights of its own."""

    def __init__(self, filters, *, deploy=False, inner=True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.deploy, self.inner = filters, deploy, inner
        self.entry = ConvBN(filters, activation="relu", deploy=deploy, name="entry")
        self.parts = [ACBlock(filters, activation="relu", deploy=deploy, name="ac")]
        if inner:
            self.parts.append(TwoLevelBlock(filters, deploy=deploy, inner=False, name="inner"))

    def build(self, input_shape):
        self.entry.build(input_shape)
        shape = tuple(input_shape[:-1]) + (self.filters,)
        for part in self.parts:
            part.build(shape)

    def call(self, x, training=None):
        y = self.entry(x, training=training)
        z = y
        for part in self.parts:
            z = part(z, training=training)
        return y + z

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "deploy": self.deploy,
                "inner": self.inner}


class Unregistered(ConvBN):
    """A training-form layer that keras.saving does not know: fusion cannot rebuild it."""


def _model(block):
    inputs = keras.Input((None, None, 3))
    x = block(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(x))


def test_nested_composite_blocks_are_found_and_fused():
    model = _model(TwoLevelBlock(8, name="block"))
    randomize_batchnorm(model, seed=3)
    paths = [path for path, _ in fusable_layers(model)]
    assert paths == ["block", "block/entry", "block/parts[0]", "block/parts[1]",
                     "block/parts[1]/entry", "block/parts[1]/parts[0]"]
    assert not is_deploy(model)
    fused = fuse(model)
    assert is_deploy(fused)
    assert all(layer.deploy for _, layer in fusable_layers(fused))
    x = np.random.default_rng(0).uniform(0, 1, (2, 24, 40, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(fused(x)), np.asarray(model(x, training=False)),
                               atol=1e-5)
    assert fused.count_params() < model.count_params()
    assert fuse(fused) is fused


def test_a_layer_that_stays_in_training_form_is_an_error():
    model = _model(Unregistered(4, name="odd"))
    with pytest.raises((ValueError, TypeError), match="odd|Unregistered"):
        fuse(model)
