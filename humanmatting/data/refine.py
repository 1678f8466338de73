"""Soft pseudo alphas from binary masks with pymatting.

For each pair of a folder dataset: a trimap from the mask (foreground = mask eroded, background =
outside the mask dilated, the band between unknown), then closed-form (Levin et al., 2008) or
KNN matting (Chen et al., 2013) of the image inside that band. The results are *pseudo* ground
truth: they are only as right as the mask and the matting method, and every output folder says
so (`PSEUDO_GROUND_TRUTH.md` and `dataset.json`).

Output: a folder dataset `OUT/images/` (copies) + `OUT/alphas/` (8-bit PNG), written
atomically, one file at a time; files already there are skipped, so an interrupted run resumes.
"""

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from humanmatting.data.readers import read_folder
from humanmatting.evaluation import read_target
from humanmatting.io import alpha_to_uint8, atomic_path, read_image, write_image

METHODS = ("cf", "knn")


def trimap_from_mask(mask, *, erode=8, dilate=8):
    """(H, W) mask in [0, 1] -> trimap float64: 1 foreground, 0 background, 0.5 unknown."""
    binary = (np.asarray(mask) >= 0.5).astype(np.uint8)
    fg = cv2.erode(binary, cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                     (2 * erode + 1, 2 * erode + 1)))
    grown = cv2.dilate(binary, cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                         (2 * dilate + 1, 2 * dilate + 1)))
    trimap = np.full(binary.shape, 0.5)
    trimap[fg == 1] = 1.0
    trimap[grown == 0] = 0.0
    return trimap


def refine_alpha(image, mask, *, method="cf", erode=8, dilate=8, max_side=480):
    """Pseudo alpha of one image from its binary mask.

    Matting runs at most at `max_side` (closed form solves a sparse system over every unknown
    pixel); the result is resized back and the trimap's definite regions are restored at full
    resolution.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) float in [0, 1].
        method: "cf" (closed form) or "knn".
        erode, dilate: trimap band half-widths in full-resolution pixels.

    Returns:
        (H, W) float32 alpha in [0, 1].
    """
    import pymatting

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    height, width = mask.shape
    trimap = trimap_from_mask(mask, erode=erode, dilate=dilate)
    if not (trimap == 0.5).any():
        return trimap.astype(np.float32)
    scale = min(1.0, max_side / max(height, width))
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    img = cv2.resize(image, small, interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    tri = cv2.resize(trimap, small, interpolation=cv2.INTER_NEAREST)
    if (tri == 1).sum() == 0 or (tri == 0).sum() == 0:
        return trimap.astype(np.float32)  # nothing to anchor the solve: keep the mask's trimap
    solve = pymatting.estimate_alpha_cf if method == "cf" else pymatting.estimate_alpha_knn
    alpha = solve(img, tri)
    alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
    alpha = np.where(trimap == 0.5, alpha, trimap)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def _refine_one(job):
    image_path, mask_path, out_image, out_alpha, options = job
    try:
        image = read_image(image_path)
        mask = read_target(mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{mask_path}: size {mask.shape} differs from its image's")
        alpha = refine_alpha(image, mask, **options)
        write_image(out_alpha, alpha_to_uint8(alpha))
        if not Path(out_image).exists():
            with atomic_path(out_image) as tmp:
                shutil.copyfile(image_path, tmp)
        return image_path, None
    except (ValueError, FileNotFoundError, OSError) as err:
        return image_path, str(err)


def refine_folder(data, out, *, method="cf", erode=8, dilate=8, max_side=480, workers=2,
                  progress=None):
    """Writes pseudo alphas for every pair of folder dataset `data` into `out`.

    Returns:
        dict: done (newly written), skipped (already there), failed [(path, reason)].
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, value, least in (("erode", erode, 0), ("dilate", dilate, 0),
                               ("max_side", max_side, 1), ("workers", workers, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if Path(out).resolve() == Path(data).resolve():
        raise ValueError(f"{out}: is the --data folder itself; the pseudo alphas go into a "
                         "new folder dataset (images/ + alphas/), so give another --out")
    pairs = read_folder(data)
    out = Path(out)
    (out / "alphas").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    label = {"pseudo_ground_truth": True, "source": str(Path(data).resolve()),
             "method": {"cf": "closed-form matting (Levin et al. 2008)",
                        "knn": "KNN matting (Chen et al. 2013)"}[method],
             "trimap": {"erode": erode, "dilate": dilate}, "max_side": max_side,
             "tool": "humanmatting refine-masks (pymatting)"}
    with atomic_path(out / "dataset.json") as tmp:
        tmp.write_text(json.dumps(label, indent=1))
    with atomic_path(out / "PSEUDO_GROUND_TRUTH.md") as tmp:
        tmp.write_text("# Pseudo ground truth\n\nThe alphas in `alphas/` were computed from "
                       f"binary masks of `{label['source']}` by {label['method']} inside a "
                       f"trimap band (erode {erode}, dilate {dilate} px). They are not "
                       "hand-made mattes: report results on them as pseudo ground truth.\n")
    options = {"method": method, "erode": erode, "dilate": dilate, "max_side": max_side}
    jobs, skipped = [], 0
    root = Path(data) / "images"
    for image_path, mask_path in zip(pairs.images, pairs.targets):
        rel = Path(image_path).relative_to(root)
        out_alpha = out / "alphas" / rel.with_suffix(".png")
        if out_alpha.exists():
            skipped += 1
            continue
        jobs.append((image_path, mask_path, str(out / "images" / rel), str(out_alpha),
                     options))
    failed = list(pairs.problems)
    done = 0
    with ProcessPoolExecutor(workers) as pool:
        for i, (path, error) in enumerate(pool.map(_refine_one, jobs), start=1):
            if error:
                failed.append((path, error))
            else:
                done += 1
            if progress:
                progress(i, len(jobs), path)
    return {"done": done, "skipped": skipped, "failed": failed}
