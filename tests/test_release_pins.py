"""What users see does not change: each released model's alpha on the bundled photo, through
`Matter` with its defaults, equals the stored one (tests/data/release_pins.npz, written by
tools/write_release_pins.py before the core was reworked, and rewritten only when a release
or a default changes on purpose: last on 2026-12-04, Night and Dark re-released and
min_confidence off)."""

from pathlib import Path

import numpy as np
import pytest

from humanmatting.registry import released_models

PINS = Path(__file__).parent / "data" / "release_pins.npz"


def test_every_released_model_is_pinned():
    with np.load(PINS) as pins:
        assert sorted(n for n in pins.files if not n.endswith(".trimap")) == released_models()


@pytest.mark.slow
@pytest.mark.parametrize("name", released_models())
def test_released_alpha_on_the_bundled_photo_is_unchanged(name, sample_path):
    from humanmatting.inference import Matter

    with np.load(PINS) as pins:
        expected = pins[name].astype(np.float32) / 65535
        trimap = pins[f"{name}.trimap"] if f"{name}.trimap" in pins.files else None
    alpha = Matter(name).predict(sample_path, trimap=trimap)
    assert alpha.shape == expected.shape
    assert np.abs(alpha - expected).max() <= 1 / 255
