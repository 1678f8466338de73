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
from humanmatting.specs import REFINE_METHODS, make_trimap, unit_trimap

METHODS = REFINE_METHODS


def estimate_foreground(image, alpha):
    """The person's own colours behind a soft alpha (pymatting's `estimate_foreground_ml`,
    Germer et al. 2020): (H, W, 3) uint8 RGB, equal to the image where alpha is 1."""
    from pymatting import estimate_foreground_ml

    fg = estimate_foreground_ml(image.astype(np.float64) / 255.0,
                                np.asarray(alpha, np.float64))
    return np.clip(np.rint(fg * 255.0), 0, 255).astype(np.uint8)


def trimap_from_mask(mask, *, erode=8, dilate=8, thresholds=None):
    """(H, W) mask in [0, 1] -> trimap float64: 1 foreground, 0 background, 0.5 unknown: the
    band of `humanmatting.specs.make_trimap` around the mask's 0.5 edge, or with
    `thresholds` = (foreground, background) the soft mask's confident parts (rembg's)."""
    if thresholds is not None:
        fg, bg = thresholds
        return unit_trimap(make_trimap(np.asarray(mask, np.float32), erode=erode,
                                       dilate=dilate, fg_threshold=fg, bg_threshold=bg))
    return unit_trimap(make_trimap(np.asarray(mask) >= 0.5, erode=erode, dilate=dilate))


def closed_form_alpha(image, trimap, *, epsilon=1e-7):
    """Closed-form matting (Levin, Lischinski, Weiss, PAMI 2008) inside a trimap's unknown
    pixels, in NumPy/SciPy.

    The matting Laplacian over 3x3 windows, L_ij = sum over the windows k holding i and j of
    delta_ij - (1 + (I_i - mu_k)^T (Sigma_k + epsilon / 9 * Id)^-1 (I_j - mu_k)) / 9, built
    only from the windows that hold an unknown pixel; then L_UU alpha_U = -L_UK alpha_K is
    solved directly. The same problem as `pymatting.estimate_alpha_cf` (which solves it with
    preconditioned CG to a relative residual of 1e-7): the two agree within 1e-4 (a test
    checks it; 2e-5 measured on test images, 4.5e-5 on the sample photo through `Matter`).
    It exists because importing pymatting compiles its numba kernels, about a minute on 2
    cores the first time in a new environment, which every still image refined by `Matter`
    would otherwise wait for.

    Args:
        image: (H, W, 3) float in [0, 1].
        trimap: (H, W): >= 0.9 foreground, <= 0.1 background, between unknown.
        epsilon: the regularisation of each window's colour covariance.

    Returns:
        (H, W) float64 alpha in [0, 1]: the trimap outside the unknown pixels.
    """
    import scipy.sparse
    import scipy.sparse.linalg

    trimap = np.asarray(trimap, np.float64)
    height, width = trimap.shape
    fg = trimap >= 0.9
    known = fg | (trimap <= 0.1)
    alpha = trimap.copy()
    if known.all() or not known.any() or min(height, width) < 3:
        return np.clip(alpha, 0.0, 1.0)   # nothing to solve, or nothing to anchor the solve
    # 3x3 windows, centred inside the image, that hold an unknown pixel
    centres = cv2.dilate((~known).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    centres[[0, -1], :] = False
    centres[:, [0, -1]] = False
    cy, cx = np.nonzero(centres)
    dy, dx = np.divmod(np.arange(9), 3)
    ys, xs = cy[:, None] + dy - 1, cx[:, None] + dx - 1            # (N, 9)
    colors = np.asarray(image, np.float64)[ys, xs]                   # (N, 9, 3)
    centred = colors - colors.mean(axis=1, keepdims=True)
    covariance = (np.einsum("nki,nkj->nij", centred, centred) + epsilon * np.eye(3)) / 9
    inverse = np.linalg.inv(covariance)
    values = np.eye(9) - (1 + np.einsum("nki,nij,nlj->nkl", centred, inverse, centred)) / 9
    index = ys * width + xs
    rows = np.broadcast_to(index[:, :, None], values.shape).ravel()
    cols = np.broadcast_to(index[:, None, :], values.shape).ravel()
    size = height * width
    laplacian = scipy.sparse.csr_matrix((values.ravel(), (rows, cols)), shape=(size, size))
    unknown, known = ~known.ravel(), known.ravel()
    rows_u = laplacian[unknown]
    rhs = -(rows_u[:, known] @ fg.ravel()[known].astype(np.float64))
    system = rows_u[:, unknown].tocsc()
    # every unknown pixel is linked to a known one through the windows (a known pixel
    # exists and the unknown ones border it), so the system is positive definite
    alpha.ravel()[unknown] = scipy.sparse.linalg.spsolve(system, rhs)
    return np.clip(alpha, 0.0, 1.0)


def refine_alpha(image, mask, *, method="cf", erode=8, dilate=8, max_side=480,
                 cf_solver="pymatting", thresholds=None):
    """Pseudo alpha of one image from its binary mask.

    Matting runs at most at `max_side` (closed form solves a sparse system over every unknown
    pixel); the result is resized back and the trimap's definite regions are restored at full
    resolution.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) float in [0, 1].
        method: "cf" (closed form), "knn" or "lkm" (pymatting's large-kernel matting).
        erode, dilate: trimap band half-widths in full-resolution pixels.
        cf_solver: for "cf": "pymatting" (`estimate_alpha_cf`, what `refine-masks` uses) or
            "scipy" (`closed_form_alpha`: the same matte within 1e-4, without pymatting's
            first-import compile, what `Matter` uses).
        thresholds: None (a band around the 0.5 edge), or (foreground, background)
            probabilities for the trimap (`trimap_from_mask`).

    Returns:
        (H, W) float32 alpha in [0, 1].
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if cf_solver not in ("pymatting", "scipy"):
        raise ValueError(f"cf_solver must be 'pymatting' or 'scipy', got {cf_solver!r}")
    trimap = trimap_from_mask(mask, erode=erode, dilate=dilate, thresholds=thresholds)
    method = "cf-scipy" if method == "cf" and cf_solver == "scipy" else method
    return solve_trimap(image, trimap, method=method, max_side=max_side)


def solve_trimap(image, trimap, *, method="cf", max_side=480):
    """The alpha of an image inside a trimap, by classical matting.

    Args:
        image: (H, W, 3) uint8 RGB.
        trimap: (H, W) float 0 / 0.5 / 1 (`humanmatting.specs.unit_trimap`).
        method: pymatting's "cf" (closed form), "knn" or "lkm" (large kernel), or "cf-scipy"
            (`closed_form_alpha`: the same matte as "cf" within 1e-4, without pymatting's
            first-use compile).
        max_side: the solve runs at most at this side (a sparse system over every unknown
            pixel), resized back; the trimap's known regions are kept at full resolution.

    Returns:
        (H, W) float32 alpha in [0, 1].
    """
    trimap = np.asarray(trimap, np.float64)
    height, width = trimap.shape
    if not (trimap == 0.5).any():
        return trimap.astype(np.float32)
    scale = min(1.0, max_side / max(height, width))
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    img = cv2.resize(image, small, interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    tri = cv2.resize(trimap, small, interpolation=cv2.INTER_NEAREST)
    if (tri == 1).sum() == 0 or (tri == 0).sum() == 0:
        return trimap.astype(np.float32)  # nothing to anchor the solve: keep the trimap
    if method == "cf-scipy":
        alpha = closed_form_alpha(img, tri)
    else:
        import pymatting

        solve = {"cf": pymatting.estimate_alpha_cf, "knn": pymatting.estimate_alpha_knn,
                 "lkm": pymatting.estimate_alpha_lkm}[method]
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
