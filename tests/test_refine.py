"""refine-masks: pseudo alphas from binary masks, resumable, labelled."""

import json

import cv2
import numpy as np
import pytest

from conftest import make_folder_dataset, run_cli
from humanmatting.data.readers import read_dataset
from humanmatting.data.refine import refine_alpha, refine_folder, trimap_from_mask


def test_trimap_from_mask_hand_computed():
    mask = np.zeros((11, 11))
    mask[3:8, 3:8] = 1
    trimap = trimap_from_mask(mask, erode=1, dilate=1)
    assert trimap[5, 5] == 1.0 and trimap[0, 0] == 0.0
    assert trimap[3, 5] == 0.5 and trimap[2, 5] == 0.5   # edge and one pixel outside


def test_refine_alpha_softens_only_the_band():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = 255                       # a hard vertical edge in the image
    mask = np.zeros((40, 40))
    mask[:, 18:] = 1                          # a mask two pixels off the real edge
    alpha = refine_alpha(image, mask, erode=4, dilate=4)
    assert alpha.dtype == np.float32 and alpha.shape == (40, 40)
    assert np.all(alpha[:, :13] == 0) and np.all(alpha[:, 23:] == 1)   # definite regions kept
    assert alpha[20, 18] < 0.2 and alpha[20, 21] > 0.8   # follows the image's edge, not the mask


@pytest.mark.parametrize("cf_solver", ["pymatting", "scipy"])
def test_refine_alpha_with_either_solver_follows_the_edge(cf_solver):
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = 255
    mask = np.zeros((40, 40))
    mask[:, 18:] = 1
    alpha = refine_alpha(image, mask, erode=4, dilate=4, cf_solver=cf_solver)
    assert np.all(alpha[:, :13] == 0) and np.all(alpha[:, 23:] == 1)
    assert alpha[20, 18] < 0.2 and alpha[20, 21] > 0.8
    with pytest.raises(ValueError, match="cf_solver must be"):
        refine_alpha(image, mask, cf_solver="cholmod")


def test_closed_form_alpha_equals_pymatting():
    import pymatting

    from humanmatting.data.refine import closed_form_alpha

    # a photo-like image (smooth colour fields, noise, an edge) and a disc-shaped trimap with
    # a band 2 and 6 pixels wide: pymatting solves the same system by CG to 1e-7
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:90, :120] / 100.0
    image = np.dstack([0.5 + 0.3 * np.sin(3 * xx), 0.4 + 0.4 * yy, 0.3 + 0.2 * xx * yy])
    inside = (yy - 0.45) ** 2 + (xx - 0.6) ** 2 < 0.3 ** 2
    image[inside] = image[inside] * 0.4 + [0.5, 0.3, 0.1]
    image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
    for band in (2, 6):
        trimap = trimap_from_mask(inside.astype(float), erode=band, dilate=band)
        ours = closed_form_alpha(image, trimap)
        theirs = pymatting.estimate_alpha_cf(image, trimap)
        assert np.abs(ours - theirs).max() < 1e-4
        assert np.all(ours[trimap == 1] == 1) and np.all(ours[trimap == 0] == 0)
        unknown = trimap == 0.5
        assert 0.05 < ours[unknown].mean() < 0.95   # the band is solved, not left as is
    # nothing unknown, or an image too small for a window: the trimap itself
    known = np.zeros((5, 5))
    known[:, 3:] = 1
    np.testing.assert_array_equal(closed_form_alpha(np.zeros((5, 5, 3)), known), known)
    tiny = np.full((2, 7), 0.5)
    tiny[:, 0], tiny[:, -1] = 0, 1
    np.testing.assert_array_equal(closed_form_alpha(np.zeros((2, 7, 3)), tiny), tiny)
    # nothing known: no solve to anchor, the trimap itself
    unknown = np.full((6, 6), 0.5)
    np.testing.assert_array_equal(closed_form_alpha(np.zeros((6, 6, 3)), unknown), unknown)


def test_refine_masks_cli_resumes_and_labels(tmp_path):
    data = make_folder_dataset(tmp_path / "d", count=3, shape=(48, 40))
    (data / "images" / "bad.jpg").write_bytes(b"\xff\xd8 nope")
    cv2.imwrite(str(data / "masks" / "bad.png"), np.zeros((48, 40), np.uint8))
    out = tmp_path / "refined"
    cmd = ["refine-masks", "--data", data, "--out", out, "--workers", "1", "--erode", "2",
           "--dilate", "2"]
    first = run_cli(*cmd, cwd=tmp_path)
    assert first.returncode == 1 and "bad.jpg" in first.stderr
    assert "3 alpha(s) written" in first.stdout
    assert json.loads((out / "dataset.json").read_text())["pseudo_ground_truth"] is True
    assert "pseudo" in (out / "PSEUDO_GROUND_TRUTH.md").read_text().lower()
    pairs = read_dataset(out)
    assert pairs.refined and len(pairs) == 3
    (data / "images" / "bad.jpg").unlink()
    second = run_cli(*cmd, cwd=tmp_path)
    assert second.returncode == 0 and "0 alpha(s) written, 3 already there" in second.stdout


@pytest.mark.parametrize("options, message", [
    ({"erode": -3}, "erode must be an integer >= 0, got -3"),
    ({"dilate": 1.5}, "dilate must be an integer >= 0, got 1.5"),
    ({"max_side": 0}, "max_side must be an integer >= 1, got 0"),
    ({"workers": 0}, "workers must be an integer >= 1, got 0"),
    ({"method": "magic"}, "method must be one of"),
])
def test_refine_folder_rejects_bad_options_before_writing(tmp_path, options, message):
    data = make_folder_dataset(tmp_path / "d", count=1, shape=(32, 32))
    with pytest.raises(ValueError, match=message):
        refine_folder(data, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_refine_masks_cli_refuses_to_write_into_its_input(tmp_path):
    data = make_folder_dataset(tmp_path / "d", count=1, shape=(32, 32))
    before = sorted(p.relative_to(data).as_posix() for p in data.rglob("*"))
    result = run_cli("refine-masks", "--data", data, "--out", f"{data}/.", cwd=tmp_path)
    assert result.returncode == 1
    assert "is the --data folder itself" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == before
