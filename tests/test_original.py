"""The converted original Dark-Light release gives the original model's outputs."""

from pathlib import Path

import numpy as np

import humanmatting
from humanmatting.inference import Matter

REFERENCE = Path(__file__).parent / "data" / "original_reference.npz"


def test_original_release_matches_reference_output():
    # The reference holds an input and the output of the original tf.keras model on it,
    # computed by tools/convert_original.py from the release files themselves.
    ref = np.load(REFERENCE)
    model = humanmatting.create_model("likeunet_dark_light_original")
    x = ref["image"].astype("float32")[None, ..., None]   # raw 0-255 grayscale
    person = np.asarray(model(x))[0, ..., 1]
    assert np.abs(person - ref["person"]).max() < 1e-4
    assert model.count_params() == 219_514  # 221,626 in the release, less the folded BN


def test_matter_feeds_the_original_raw_grayscale():
    matter = Matter("likeunet_dark_light_original")
    image = np.zeros((256, 256, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 128, 0
    x = matter.preprocess(image)
    assert x.shape == (1, 256, 256, 1) and x.dtype == np.float32
    # ITU-R BT.601 luma of (255, 128, 0), not scaled to [0, 1]
    np.testing.assert_allclose(x[0, 0, 0, 0], round(0.299 * 255 + 0.587 * 128), atol=0.5)


def test_matter_reproduces_reference_at_model_size():
    ref = np.load(REFERENCE)
    gray = ref["image"]
    matter = Matter("likeunet_dark_light_original", sizes=[gray.shape])
    alpha = matter.predict(np.dstack([gray] * 3))
    np.testing.assert_allclose(alpha, ref["person"], atol=1e-4)
