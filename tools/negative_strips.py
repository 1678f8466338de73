"""People-free training negatives cut from the photos of person datasets.

    python tools/negative_strips.py --data ../shared/data/flickr-portraits \\
        ../shared/data/ccp-persons --pack .devdata --out .devdata2

For every image of each dataset's *training* split (the fixed 10 % hash split's other side),
the bands of full rows or full columns that the person's mask (dilated by `--margin` pixels)
never touches, at least `--min-side` pixels across, are saved as people-free images (the top
band above a portrait's head, the sides of a full-body photo). `--out` becomes a packed data
folder for `tools/train_device.py train`: the `--pack` folder's datasets (linked, not copied)
plus a `negatives` dataset of these bands (kind backgrounds, training split only; give it a
sampling weight with `--mix negatives=W`). They add negatives from many more scenes than the
few clips of ../shared/data/backgrounds.

`--val-bands DIR` instead writes a people-free test folder from the *validation* split: of each
photo, its longest band (at least 96 pixels across, at most 4:1), as PNG; score it with
`humanmatting eval --data DIR --kind backgrounds --model NAME`.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from humanmatting.io import atomic_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_device import SHORT_SIDE, _shrink  # noqa: E402


def free_bands(mask, margin=10, min_side=64):
    """(start, length, axis) of each run of full columns (axis 1) or rows (axis 0) that the
    dilated mask never touches, at least `min_side` long."""
    size = 2 * margin + 1
    touched = cv2.dilate((mask > 0).astype(np.uint8), np.ones((size, size), np.uint8))
    bands = []
    for free, axis in ((touched.sum(0) == 0, 1), (touched.sum(1) == 0, 0)):
        start = None
        for i, f in enumerate(list(free) + [False]):
            if f and start is None:
                start = i
            elif not f and start is not None:
                if i - start >= min_side:
                    bands.append((start, i - start, axis))
                start = None
    return bands


def _photos(datasets, split, val_fraction, read_dataset):
    """(dataset-stem name, BGR image, mask) of each readable pair of one side of the split."""
    for data in datasets:
        pairs = read_dataset(data).split(val_fraction)[split == "val"]
        for image_path, mask_path in zip(pairs.images, pairs.targets):
            image = cv2.imread(image_path)
            mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
            if image is None or mask is None or mask.shape != image.shape[:2]:
                print(f"skipped {image_path}: unreadable or mask of another size",
                      file=sys.stderr)
                continue
            yield f"{Path(data).name}-{Path(image_path).stem}", image, mask


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="folder datasets")
    parser.add_argument("--pack", help="packed folder to extend")
    parser.add_argument("--out", help="the extended packed folder")
    parser.add_argument("--val-bands", help="or: a folder for the validation photos' bands")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--margin", type=int, default=10)
    parser.add_argument("--min-side", type=int, default=64)
    args = parser.parse_args(argv)
    from humanmatting.data.readers import read_dataset

    if args.val_bands:
        return write_val_bands(args, read_dataset)
    if not (args.pack and args.out):
        parser.error("--pack and --out are needed (or --val-bands)")

    out, pack = Path(args.out), Path(args.pack).resolve()
    manifest = json.loads((pack / "manifest.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    for d in manifest["datasets"]:
        if not (out / d["name"]).exists():
            os.symlink(pack / d["name"], out / d["name"])
    folder = out / "negatives" / "train"
    folder.mkdir(parents=True, exist_ok=True)
    (out / "negatives" / "val").mkdir(exist_ok=True)
    count = 0
    for stem, image, mask in _photos(args.data, "train", args.val_fraction, read_dataset):
        for k, (start, length, axis) in enumerate(free_bands(mask, args.margin, args.min_side)):
            band = image[:, start:start + length] if axis == 1 else image[start:start + length]
            with atomic_path(folder / f"{stem}-{k}.jpg") as tmp:
                cv2.imwrite(str(tmp), _shrink(band, SHORT_SIDE), [cv2.IMWRITE_JPEG_QUALITY, 92])
            count += 1
    manifest["datasets"] = [d for d in manifest["datasets"] if d["name"] != "negatives"]
    manifest["datasets"].append({"name": "negatives", "kind": "backgrounds", "weight": 0.0,
                                 "source": "people-free bands of " + ", ".join(args.data),
                                 "train": count, "val": 0})
    with atomic_path(out / "manifest.json") as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1))
    print(f"{out}: {count} people-free bands")
    return 0


def write_val_bands(args, read_dataset):
    out = Path(args.val_bands)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for stem, image, mask in _photos(args.data, "val", args.val_fraction, read_dataset):
        bands = free_bands(mask, args.margin, min_side=1)
        if not bands:
            continue
        start, length, axis = max(bands, key=lambda b: b[1])
        band = image[:, start:start + length] if axis == 1 else image[start:start + length]
        if min(band.shape[:2]) < 96 or max(band.shape[:2]) / min(band.shape[:2]) > 4:
            continue
        with atomic_path(out / f"{stem}.png") as tmp:
            cv2.imwrite(str(tmp), band)
        count += 1
    print(f"{out}: {count} people-free validation bands")
    return 0


if __name__ == "__main__":
    sys.exit(main())
