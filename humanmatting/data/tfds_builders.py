"""tensorflow-datasets builders: AISegment matting_human (manual download) and any folder.

Nothing is downloaded: matting_human is read from `manual_dir` (the unpacked Kaggle archive,
`clip_img/` + `matting/`), a folder dataset from its path. Examples are
`{"image": (H, W, 3) uint8, "alpha": (H, W, 1) uint8, "name": str}`.

Example:
    >>> builder = FolderMatting(folder="data/people", data_dir="~/tensorflow_datasets")
    >>> builder.download_and_prepare()
    >>> ds = builder.as_dataset(split="train")
"""

import sys
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from humanmatting.data.readers import read_aisegment, read_folder
from humanmatting.evaluation import read_target
from humanmatting.io import ImageError, read_image


def _features():
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "alpha": tfds.features.Image(shape=(None, None, 1)),
        "name": tfds.features.Text(),
    })


def _examples(pairs, root):
    """Yields (key, example) for every readable pair; a missing, corrupt or mis-sized file
    is skipped, never the end of the preparation, and every skipped pair is listed on
    stderr when the split is done."""
    skipped = list(pairs.problems)
    for image_path, target_path in zip(pairs.images, pairs.targets):
        try:
            image = read_image(image_path)
            alpha = read_target(target_path, pairs.alpha_channel)
            if alpha.shape != image.shape[:2]:
                raise ValueError(f"{target_path}: size {alpha.shape} differs from its image's "
                                 f"{image.shape[:2]}")
        except (ImageError, FileNotFoundError, ValueError, OSError) as err:
            skipped.append((image_path, str(err)))
            continue
        key = str(Path(image_path).relative_to(root))
        yield key, {"image": image,
                    "alpha": np.rint(alpha * 255).astype(np.uint8)[..., None],
                    "name": key}
    for path, reason in skipped:
        print(f"{pairs.name or root}: skipped {path}: {reason}", file=sys.stderr)


class MattingHuman(tfds.core.GeneratorBasedBuilder):
    """AISegment matting_human: 34,427 half-length portraits with soft mattes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download the AISegment matting_human_datasets archive, unpack it and pass its folder "
        "(the one holding clip_img/ and matting/) as manual_dir.")

    def _info(self):
        return self.dataset_info_from_configs(
            features=_features(), supervised_keys=("image", "alpha"),
            description="AISegment matting_human half-length portraits; the matte is the "
                        "alpha channel of the matting PNGs.")

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(Path(dl_manager.manual_dir))}

    def _generate_examples(self, root):
        yield from _examples(read_aisegment(root), root)


class FolderMatting(tfds.core.GeneratorBasedBuilder):
    """A folder dataset (`images/` + `masks/` or `alphas/`) as a TFDS dataset.

    Args:
        folder: the dataset folder.
        val_fraction: fraction put in the "validation" split (by a hash of the file stem,
            the same split `PairList.split` makes); 0 for a single "train" split.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def __init__(self, *, folder, val_fraction=0.0, **kwargs):
        self.folder = Path(folder)
        self.val_fraction = val_fraction
        super().__init__(**kwargs)

    def _info(self):
        return self.dataset_info_from_configs(
            features=_features(), supervised_keys=("image", "alpha"),
            description=f"Folder dataset {self.folder}.")

    def _split_generators(self, dl_manager):
        pairs = read_folder(self.folder)
        if not self.val_fraction:
            return {"train": self._generate_examples(pairs)}
        train, val = pairs.split(self.val_fraction)
        return {"train": self._generate_examples(train),
                "validation": self._generate_examples(val)}

    def _generate_examples(self, pairs):
        yield from _examples(pairs, self.folder)
