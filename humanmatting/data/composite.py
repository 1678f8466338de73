"""A trimap-matting benchmark whose alphas are exact: people composited onto new backgrounds.

The protocol of Deep Image Matting's Composition-1k (Xu et al., CVPR 2017): each person's
colours are solved from the photo and its alpha (`estimate_foreground`, pymatting's
`estimate_foreground_ml`), then composited onto a background the person was never photographed
in: `image = alpha fg + (1 - alpha) bg`, rounded to 8 bits, with the 8-bit alpha the folder
holds. That alpha is then the ground truth of the composite itself, not an approximation of it,
whatever produced it (hand-made mattes, or pseudo alphas of `refine-masks`). The trimap is the
evaluation trimap of the field: every soft pixel unknown, widened by `band` pixels on both sides
(`humanmatting.specs.make_trimap`).

The result is a folder dataset (`images/` PNG composites, `alphas/`, `trimaps/`) that `eval
--data` scores with SAD, MSE, Grad and Conn over the unknown region, beside classical matting on
the same trimaps (`--baseline-matting cf`).
"""

import json
from pathlib import Path

import cv2
import numpy as np

from humanmatting.data.augment import fit_background
from humanmatting.data.readers import read_dataset
from humanmatting.evaluation import read_target
from humanmatting.io import atomic_path, read_image, write_image
from humanmatting.specs import TRIMAP_UNKNOWN, make_trimap

#: the evaluation trimap's widening of the soft region, pixels on each side
BAND = 10


def composite(fg, bg, alpha):
    """(H, W, 3) uint8 fg and bg, (H, W) float alpha -> the uint8 composite, rounded."""
    a = np.asarray(alpha, np.float32)[..., None]
    out = a * fg.astype(np.float32) + (1.0 - a) * bg.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def composite_folder(data, out, backgrounds, *, split="val", val_fraction=0.1, band=BAND,
                     per_image=1, max_side=640, seed=0, foreground=None, progress=None):
    """Writes the composite benchmark of folder dataset `data` (soft `alphas/`) into `out`.

    Args:
        data: a folder dataset with soft alphas (`alphas/`), e.g. `refine-masks`'s output.
        out: the new folder dataset (`images/`, `alphas/`, `trimaps/`, `dataset.json`).
        backgrounds: a folder of people-free photos (not the training backgrounds, so that the
            benchmark's scenes are new to the model).
        split: "val", "train" or "all": which side of `data`'s fixed hash split (the trainer's
            `val_fraction`) to composite.
        band: the trimap's widening of the soft region (pixels).
        per_image: composites per person, each on another background (named STEM_k.png).
        max_side: people larger than this are scaled down first (alpha and image alike).
        seed: the backgrounds and their crops; the same seed writes the same files.
        foreground: a function (image, alpha) -> fg colours; pymatting's ML estimate when
            None.
        progress: optional callable(done, total, path).

    Returns:
        dict: written (composites), failed [(path, reason)].
    """
    if split not in ("val", "train", "all"):
        raise ValueError(f"split must be val, train or all, got {split!r}")
    for name, value, least in (("band", band, 0), ("per_image", per_image, 1),
                               ("max_side", max_side, 32)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if foreground is None:
        from humanmatting.data.refine import estimate_foreground as foreground
    pairs = read_dataset(data, "folder")
    if not pairs.refined:
        raise ValueError(f"{data}: has masks/, not alphas/; composite soft alphas (make them "
                         "with `humanmatting refine-masks`)")
    if split != "all":
        pairs = pairs.split(val_fraction)[split == "val"]
    scenes = read_dataset(backgrounds, "backgrounds").images   # none: FileNotFoundError
    out = Path(out)
    for sub in ("images", "alphas", "trimaps"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    failed, written = list(pairs.problems), 0
    for i, (image_path, alpha_path) in enumerate(zip(pairs.images, pairs.targets), start=1):
        picks = [(scenes[rng.integers(len(scenes))], int(rng.integers(2**31)))
                 for _ in range(per_image)]   # drawn before any error: the rest stay put
        try:
            image, alpha8 = read_image(image_path), read_target(alpha_path)
            if alpha8.shape != image.shape[:2]:
                raise ValueError(f"{alpha_path}: size {alpha8.shape} differs from its image's")
            scale = max_side / max(image.shape[:2])
            if scale < 1:
                size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                alpha8 = cv2.resize(alpha8, size, interpolation=cv2.INTER_AREA)
            alpha8 = np.rint(np.clip(alpha8, 0, 1) * 255).astype(np.uint8)
            alpha = alpha8.astype(np.float32) / 255.0   # the stored alpha is the truth
            trimap = make_trimap(alpha, erode=band, dilate=band)
            if not (trimap == TRIMAP_UNKNOWN).any() or (trimap == TRIMAP_UNKNOWN).all():
                raise ValueError(f"{alpha_path}: no soft edge to matte (empty or full alpha)")
            fg = foreground(image, alpha)
            height, width = alpha.shape
            for k, (scene, crop_seed) in enumerate(picks):
                bg = fit_background(np.random.default_rng(crop_seed), read_image(scene),
                                    height, width, crop=True)
                stem = f"{Path(image_path).stem}_{k}.png"
                write_image(out / "images" / stem, composite(fg, bg, alpha))
                write_image(out / "alphas" / stem, alpha8)
                write_image(out / "trimaps" / stem, trimap)
                written += 1
        except (ValueError, FileNotFoundError, OSError) as err:
            failed.append((str(image_path), str(err)))
        if progress:
            progress(i, len(pairs.images), image_path)
    label = {"composited": True, "source": str(Path(data).resolve()),
             "backgrounds": str(Path(backgrounds).resolve()), "split": split,
             "val_fraction": val_fraction, "trimap_band": band, "per_image": per_image,
             "max_side": max_side, "seed": seed, "foreground": "estimate_foreground_ml",
             "tool": "humanmatting composite"}
    with atomic_path(out / "dataset.json") as tmp:
        tmp.write_text(json.dumps(label, indent=1))
    return {"written": written, "failed": failed}


__all__ = ["BAND", "composite", "composite_folder"]
