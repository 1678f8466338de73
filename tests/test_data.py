"""Readers and the tf.data pipeline: layouts, bad files, bucketing, determinism, trimaps."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import make_folder_dataset, make_person_image
from humanmatting.data import pipeline
from humanmatting.data.readers import read_dataset
from humanmatting.registry import InputSpec

SIZES = [(64, 64), (64, 96), (96, 64)]


def test_folder_reader_reports_missing_and_empty(tmp_path):
    root = make_folder_dataset(tmp_path / "d", count=4)
    (root / "masks" / "p001.png").unlink()
    (root / "images" / "p002.jpg").write_bytes(b"")
    pairs = read_dataset(root)
    assert len(pairs) == 2 and not pairs.refined
    reasons = dict(pairs.problems)
    assert reasons[str(root / "masks" / "p001.png")] == "missing"
    assert reasons[str(root / "images" / "p002.jpg")] == "empty file"
    # x.jpg and x.png would both take masks/x.png: neither is used, both are reported.
    (root / "images" / "p003.png").write_bytes((root / "images" / "p003.jpg").read_bytes())
    pairs = read_dataset(root)
    assert [Path(p).name for p in pairs.images] == ["p000.jpg"]
    reasons = dict(pairs.problems)
    for name in ("p003.jpg", "p003.png"):
        assert reasons[str(root / "images" / name)].startswith(
            f"shares the target {root / 'masks' / 'p003.png'} with ")
    (root / "images" / "p003.png").unlink()
    assert read_dataset(make_folder_dataset(tmp_path / "s", count=1, soft=True)).refined
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images/ folder"):
        read_dataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nothing: no such folder"):
        read_dataset(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="p003.jpg: not a folder"):
        read_dataset(root / "images" / "p003.jpg")
    with pytest.raises(FileNotFoundError, match="none.txt: no such file"):
        read_dataset(tmp_path / "none.txt", "list")
    with pytest.raises(ValueError, match="unknown dataset kind"):
        read_dataset(root, "coco")


def test_aisegment_and_list_readers(tmp_path):
    root = tmp_path / "matting_human"
    (root / "clip_img" / "1803151818" / "clip_00000000").mkdir(parents=True)
    (root / "matting" / "1803151818" / "matting_00000000").mkdir(parents=True)
    image = make_person_image(40, 30)
    cv2.imwrite(str(root / "clip_img/1803151818/clip_00000000/a.jpg"), image)
    rgba = np.dstack([image, np.full((40, 30), 200, np.uint8)])
    cv2.imwrite(str(root / "matting/1803151818/matting_00000000/a.png"), rgba)
    pairs = read_dataset(root, "aisegment")
    assert len(pairs) == 1 and pairs.alpha_channel and pairs.refined
    store = pipeline.ImageStore([pairs])
    sample = store.sample(0)
    assert round(float(sample["alpha"].max()) * 255) == 200   # the PNG's alpha channel
    assert sample["refined"]

    listing = tmp_path / "train.txt"
    listing.write_text("# image matte\nmatting_human/clip_img/1803151818/clip_00000000/a.jpg "
                       "matting_human/matting/1803151818/matting_00000000/a.png\n"
                       "only_one_path.jpg\nmissing.jpg missing.png\n")
    pairs = read_dataset(listing, "list")
    assert len(pairs) == 1
    assert any("expected two paths" in r for _, r in pairs.problems)
    assert any(p.endswith("missing.jpg") for p, _ in pairs.problems)


def test_split_is_fixed_by_stem(tmp_path):
    pairs = read_dataset(make_folder_dataset(tmp_path / "d", count=40))
    train, val = pairs.split(0.25)
    assert len(train) + len(val) == 40 and 3 <= len(val) <= 18
    again_train, again_val = pairs.split(0.25)
    assert val.images == again_val.images
    assert not set(train.images) & set(val.images)
    # Pairs left out stay listed, each in the part its stem falls in.
    val_stem, train_stem = Path(val.images[0]).stem, Path(train.images[0]).stem
    for stem in (val_stem, train_stem):
        (tmp_path / "d" / "masks" / f"{stem}.png").unlink()
    train, val = read_dataset(tmp_path / "d").split(0.25)
    assert [Path(p).stem for p, _ in val.problems] == [val_stem]
    assert [Path(p).stem for p, _ in train.problems] == [train_stem]


def test_store_skips_corrupt_and_mismatched_files(tmp_path):
    root = make_folder_dataset(tmp_path / "d", count=4)
    (root / "images" / "p000.jpg").write_bytes(b"\xff\xd8 garbage")
    cv2.imwrite(str(root / "masks" / "p001.png"), np.zeros((10, 10), np.uint8))
    store = pipeline.ImageStore([read_dataset(root)])
    assert len(store) == 2
    reasons = " ".join(r for _, r in store.problems)
    assert "not a readable image" in reasons and "differs" in reasons


def _dataset(tmp_path, seed=0, epochs=2, initial_epoch=0, steps=3, spec=InputSpec()):
    root = tmp_path / "d"
    if not root.exists():
        make_folder_dataset(root, count=5)
        make_folder_dataset(tmp_path / "s", count=3, soft=True, seed=50)
    store = pipeline.ImageStore([read_dataset(root), read_dataset(tmp_path / "s")])
    return pipeline.train_dataset(store, [0.7, 0.3], input_spec=spec, batch_size=2,
                                  steps_per_epoch=steps, epochs=epochs, seed=seed, sizes=SIZES,
                                  initial_epoch=initial_epoch)


def test_train_batches_are_bucketed_and_typed(tmp_path):
    batches = list(_dataset(tmp_path, epochs=4, steps=5))
    assert len(batches) == 20
    shapes = {tuple(x.shape[1:3]) for x, _ in batches}
    assert shapes <= set(SIZES) and len(shapes) >= 2
    for x, y in batches:
        assert x.shape[0] == 2 and x.shape[-1] == 3 and y.shape[-1] == 2
        assert x.shape[1:3] == y.shape[1:3]
        assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
        refined = np.unique(y[..., 1].numpy())
        assert set(refined.tolist()) <= {0.0, 1.0}
    flags = np.concatenate([y[:, 0, 0, 1].numpy() for _, y in batches])
    assert 0 < flags.mean() < 1   # both datasets are mixed in


def test_gray_raw_input_convention(tmp_path):
    x, _ = next(iter(_dataset(tmp_path, spec=InputSpec(channels=1, normalisation="0-255"))))
    assert x.shape[-1] == 1 and float(tf.reduce_max(x)) > 1.5   # raw 0-255 values


def test_pipeline_is_deterministic_and_epochs_independent(tmp_path):
    a = [(x.numpy(), y.numpy()) for x, y in _dataset(tmp_path, seed=3, epochs=3)]
    b = [(x.numpy(), y.numpy()) for x, y in _dataset(tmp_path, seed=3, epochs=3)]
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Epoch 2 alone (a resumed run) equals epoch 2 of the full run.
    resumed = [(x.numpy(), y.numpy()) for x, y in _dataset(tmp_path, seed=3, epochs=3,
                                                             initial_epoch=2)]
    assert len(resumed) == 3
    for (xa, _), (xr, _) in zip(a[6:], resumed):
        np.testing.assert_array_equal(xa, xr)
    other = next(iter(_dataset(tmp_path, seed=4)))[0].numpy()
    assert other.shape != a[0][0].shape or not np.array_equal(other, a[0][0])


def test_val_dataset_resizes_whole_images(tmp_path):
    make_folder_dataset(tmp_path / "v", count=3, shape=(90, 60))
    store = pipeline.ImageStore([read_dataset(tmp_path / "v")])
    batches = list(pipeline.val_dataset(store, input_spec=InputSpec(), sizes=SIZES,
                                        batch_size=2))
    assert sum(int(x.shape[0]) for x, _ in batches) == 3
    assert all(tuple(x.shape[1:3]) == (96, 64) for x, _ in batches)  # 3:2 portrait


def test_trimap_hand_computed():
    from humanmatting.specs import make_trimap

    alpha = np.zeros((9, 9), np.float32)
    alpha[2:7, 2:7] = 1.0
    alpha[4, 6] = 0.5                   # a soft pixel is unknown however deep it lies
    trimap = make_trimap(alpha, erode=1, dilate=1)
    assert trimap.dtype == np.uint8
    assert trimap[4, 6] == 128 and trimap[4, 5] == 128   # the soft pixel and its neighbour
    assert trimap[4, 4] == 255          # two pixels from it: a 3x3 ellipse is a cross
    assert trimap[3, 3] == 255          # deep inside: foreground
    assert trimap[0, 0] == 0            # far outside: background
    assert trimap[2, 2] == 128          # the edge itself: unknown
    assert trimap[1, 4] == 128          # one pixel outside: unknown (dilated)
    assert set(np.unique(trimap).tolist()) == {0, 128, 255}

def test_person_trimap_scales_each_persons_band_by_hand():
    from humanmatting.specs import make_trimap, person_trimap

    prob = np.zeros((300, 400), np.float32)
    prob[40:240, 60:260] = 0.9           # 200 x 200: sqrt(area) 200 -> 0.03 x 200 = 6 px
    prob[100:110, 330:340] = 0.6         # 10 x 10: 0.3 px -> the floor of 2 px
    prob[250:260, 10:20] = 0.4           # under 0.5: not a person
    trimap = person_trimap(prob)
    big = np.zeros(prob.shape, bool)
    big[40:240, 60:260] = True
    small = np.zeros(prob.shape, bool)
    small[100:110, 330:340] = True
    expected = np.zeros(prob.shape, np.uint8)
    for region, radius in ((big, 6), (small, 2)):
        alone = make_trimap(region, erode=radius, dilate=radius)
        expected[alone == 255] = 255
        expected[alone == 128] = 128
    np.testing.assert_array_equal(trimap, expected)
    # the big square's band: 6 px inside and out along a side, the small one's 2
    assert (trimap[140, 54:66] == 128).all() and trimap[140, 53] == 0 and trimap[140, 66] == 255
    assert (trimap[105, 328:332] == 128).all() and trimap[105, 327] == 0
    assert (trimap[245:265, 0:30] == 0).all()
    assert (person_trimap(prob, band=0.1, most=9)[140, 51:69] == 128).all()   # capped at 9
    assert not person_trimap(np.zeros((20, 30))).any()   # no person: all background
    with pytest.raises(ValueError, match=r"must be \(H, W\)"):
        person_trimap(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="band >= 0"):
        person_trimap(prob, band=-1)


def test_val_batches_of_several_sizes_reach_tensorflow_with_their_own_shapes(tmp_path):
    # Keras's own PyDataset -> tf.data conversion fixes every shape at the first batch's
    make_folder_dataset(tmp_path / "tall", count=2, shape=(90, 60))
    make_folder_dataset(tmp_path / "wide", count=2, shape=(60, 90), seed=7)
    store = pipeline.ImageStore([read_dataset(tmp_path / "tall"), read_dataset(tmp_path / "wide")])
    ds = pipeline.val_dataset(store, input_spec=InputSpec(), sizes=SIZES, batch_size=2)
    assert isinstance(ds, tf.data.Dataset)
    assert sorted(tuple(x.shape[1:3]) for x, _ in ds) == [(64, 96), (96, 64)]
    assert sorted(tuple(x.shape[1:3]) for x, _ in ds) == [(64, 96), (96, 64)]   # re-iterable
