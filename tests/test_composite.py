"""The composite matting benchmark: exact alphas, the evaluation trimap, fixed by its seed."""

import json

import cv2
import numpy as np
import pytest

from conftest import make_folder_dataset


def _backgrounds(root, count=3):
    root.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(count):   # smaller than the people: scaled up, then cropped
        cv2.imwrite(str(root / f"bg{i}.jpg"), rng.integers(0, 255, (40, 50, 3), np.uint8))
    return root


def _read(path, flags=cv2.IMREAD_UNCHANGED):
    return cv2.imread(str(path), flags)


def test_composites_hold_their_exact_alpha_and_the_evaluation_trimap(tmp_path):
    from humanmatting.data.composite import composite_folder
    from humanmatting.specs import make_trimap

    data = make_folder_dataset(tmp_path / "people", count=4, shape=(80, 60), soft=True)
    scenes = _backgrounds(tmp_path / "scenes")
    fg_of = {}

    def foreground(image, alpha):   # a known foreground: a flat colour per person
        fg = np.zeros_like(image)
        fg[...] = (200, 40 + len(fg_of), 90)
        fg_of[len(fg_of)] = fg
        return fg

    report = composite_folder(data, tmp_path / "out", scenes, split="all", band=3, per_image=2,
                              seed=1, foreground=foreground)
    assert report == {"written": 8, "failed": []}
    names = sorted(p.name for p in (tmp_path / "out" / "images").glob("*.png"))
    assert names == [f"p00{i}_{k}.png" for i in range(4) for k in range(2)]
    for i in range(4):
        alpha8 = _read(data / "alphas" / f"p00{i}.png")
        for k in range(2):
            name = f"p00{i}_{k}.png"
            stored = _read(tmp_path / "out" / "alphas" / name)
            np.testing.assert_array_equal(stored, alpha8)
            trimap = _read(tmp_path / "out" / "trimaps" / name)
            np.testing.assert_array_equal(trimap, make_trimap(alpha8 / 255.0, erode=3,
                                                              dilate=3))
            soft = (alpha8 > 0) & (alpha8 < 255)
            assert (trimap[soft] == 128).all()   # every soft pixel is unknown
            image = _read(tmp_path / "out" / "images" / name, cv2.IMREAD_COLOR)[..., ::-1]
            a = alpha8 / 255.0
            # where the person is solid, the image is its colour; the rest mixes the new scene
            fg = fg_of[i]
            np.testing.assert_array_equal(image[alpha8 == 255], fg[alpha8 == 255])
            # hand-computed: recover the background from the composite where alpha < 1/2
            # and check the blend rounds to the stored image
            bg = np.clip((image.astype(float) - a[..., None] * fg) / (1 - a[..., None]
                                                                       + 1e-9), 0, 255)
            some = alpha8 < 128
            blend = np.rint(a[..., None] * fg + (1 - a[..., None]) * bg)
            assert np.abs(blend[some] - image[some]).max() <= 1
    # the two composites of one person lie on different scenes
    first, second = (_read(tmp_path / "out" / "images" / f"p000_{k}.png") for k in range(2))
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 5
    label = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert label["composited"] and label["trimap_band"] == 3 and label["seed"] == 1


def test_the_same_seed_writes_the_same_files_and_the_val_split_is_the_trainers(tmp_path):
    from humanmatting.data.composite import composite_folder
    from humanmatting.data.readers import read_dataset

    data = make_folder_dataset(tmp_path / "people", count=12, shape=(48, 40), soft=True)
    scenes = _backgrounds(tmp_path / "scenes")

    def flat(image, alpha):
        return image

    for out in ("a", "b"):
        composite_folder(data, tmp_path / out, scenes, val_fraction=0.3, seed=7,
                         foreground=flat)
    val = read_dataset(data, "folder").split(0.3)[1]
    expected = sorted(f"{p.rsplit('/', 1)[1][:-4]}_0.png" for p in val.images)
    written = sorted(p.name for p in (tmp_path / "a" / "images").glob("*.png"))
    assert written == expected and 0 < len(written) < 12
    for name in written:
        for sub in ("images", "alphas", "trimaps"):
            assert (tmp_path / "a" / sub / name).read_bytes() == \
                (tmp_path / "b" / sub / name).read_bytes()
    composite_folder(data, tmp_path / "c", scenes, val_fraction=0.3, seed=8, foreground=flat)
    assert any((tmp_path / "a" / "images" / n).read_bytes() !=
               (tmp_path / "c" / "images" / n).read_bytes() for n in written)


def test_composite_errors_name_the_problem(tmp_path):
    from humanmatting.data.composite import composite_folder

    masks = make_folder_dataset(tmp_path / "masks", count=2, soft=False)
    soft = make_folder_dataset(tmp_path / "soft", count=2, soft=True)
    scenes = _backgrounds(tmp_path / "scenes")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has masks/, not alphas/"):
        composite_folder(masks, tmp_path / "o", scenes)
    with pytest.raises(FileNotFoundError, match="no background images"):
        composite_folder(soft, tmp_path / "o", tmp_path / "empty", split="all")
    with pytest.raises(ValueError, match="band must be an integer >= 0"):
        composite_folder(soft, tmp_path / "o", scenes, band=-1)
    with pytest.raises(ValueError, match="split must be"):
        composite_folder(soft, tmp_path / "o", scenes, split="test")
    # an empty alpha has no edge to matte: listed, the rest written
    cv2.imwrite(str(soft / "alphas" / "p000.png"), np.zeros((96, 72), np.uint8))
    report = composite_folder(soft, tmp_path / "o", scenes, split="all",
                              foreground=lambda image, alpha: image)
    assert report["written"] == 1
    assert len(report["failed"]) == 1 and "no soft edge" in report["failed"][0][1]


@pytest.mark.slow
def test_composite_command_writes_a_trimap_benchmark(tmp_path):
    from test_cli import run_cli

    data = make_folder_dataset(tmp_path / "people", count=3, shape=(64, 48), soft=True)
    scenes = _backgrounds(tmp_path / "scenes")
    out = tmp_path / "bench"
    result = run_cli("composite", "--data", data, "--backgrounds", scenes, "--out", out,
                     "--split", "all", "--band", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 composite(s) written" in result.stdout
    # a folder eval scores with SAD / MSE / Grad / Conn beside closed form
    # (test_cli.test_predict_and_eval_with_trimaps runs that on the same layout)
    from humanmatting.data.readers import read_dataset

    pairs = read_dataset(out, "folder")
    assert pairs.refined and len(pairs.trimaps) == len(pairs) == 3
    result = run_cli("composite", "--data", tmp_path / "nope", "--backgrounds", scenes,
                     "--out", out, cwd=tmp_path)
    assert result.returncode == 1 and "nope" in result.stderr
