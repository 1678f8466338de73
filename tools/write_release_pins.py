"""Writes tests/data/release_pins.npz: each released model's alpha on the bundled photo.

`tests/test_release_pins.py` checks that the package still gives these alphas (max |diff|
<= 1/255), so a refactor that changes what users see fails. A trimap-matting model is pinned
in the trimap `Matter("auto")` makes for the photo, stored beside it as `<name>.trimap` (so
that its pin does not move when the segmenter changes). Rewrite the file only when a
release changes on purpose, and say so in the commit.

    python tools/write_release_pins.py
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    from humanmatting.inference import AUTO, Matter
    from humanmatting.io import atomic_path, read_image, sample_image_path
    from humanmatting.registry import get_preset, released_models

    pins = {}
    for name in released_models():
        trimap = None
        if get_preset(name).input.trimap:
            trimap = Matter(AUTO).auto_trimap(read_image(sample_image_path()))
            pins[f"{name}.trimap"] = trimap
        alpha = Matter(name).predict(sample_image_path(), trimap=trimap)
        pins[name] = np.round(alpha * 65535).astype(np.uint16)
        print(f"{name}: mean alpha {alpha.mean():.4f}")
    out = ROOT / "tests" / "data" / "release_pins.npz"
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **pins)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
