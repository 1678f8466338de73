"""tensorflow-datasets builders on small generated folders."""

import cv2
import numpy as np
import pytest

from conftest import make_folder_dataset, make_person_image


@pytest.mark.slow
def test_folder_builder_round_trip(tmp_path, capfd):
    from humanmatting.data.tfds_builders import FolderMatting

    folder = make_folder_dataset(tmp_path / "people", count=13, shape=(48, 40), soft=True)
    # three bad pairs are skipped and listed, not the end of the preparation
    (folder / "images" / "p010.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cv2.imwrite(str(folder / "alphas" / "p011.png"), np.zeros((20, 20), np.uint8))
    (folder / "alphas" / "p012.png").unlink()
    builder = FolderMatting(folder=folder, val_fraction=0.3, data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare()
    train = list(builder.as_dataset(split="train").as_numpy_iterator())
    val = list(builder.as_dataset(split="validation").as_numpy_iterator())
    assert len(train) + len(val) == 10 and val
    err = capfd.readouterr().err
    assert "p010.jpg" in err and "p011.png: size (20, 20) differs" in err
    assert "p012.png: missing" in err
    example = train[0]
    name = example["name"].decode()
    expected = cv2.imread(str(folder / "alphas" / name.replace("images/", "").replace(
        ".jpg", ".png")), cv2.IMREAD_GRAYSCALE)
    assert example["image"].shape == (48, 40, 3) and example["alpha"].shape == (48, 40, 1)
    np.testing.assert_array_equal(example["alpha"][..., 0], expected)


@pytest.mark.slow
def test_matting_human_builder_reads_manual_dir(tmp_path):
    from humanmatting.data.tfds_builders import MattingHuman

    root = tmp_path / "manual"
    (root / "clip_img/1803151818/clip_00000000").mkdir(parents=True)
    (root / "matting/1803151818/matting_00000000").mkdir(parents=True)
    for i in range(3):
        image = make_person_image(40, 32, seed=i)
        cv2.imwrite(str(root / f"clip_img/1803151818/clip_00000000/{i}.jpg"), image)
        rgba = np.dstack([image, np.full((40, 32), 60 * i, np.uint8)])
        cv2.imwrite(str(root / f"matting/1803151818/matting_00000000/{i}.png"), rgba)
    import tensorflow_datasets as tfds

    builder = MattingHuman(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(root)))
    examples = sorted(builder.as_dataset(split="train").as_numpy_iterator(),
                      key=lambda e: e["name"])
    assert [int(e["alpha"].max()) for e in examples] == [0, 60, 120]
