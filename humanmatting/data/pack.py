"""Packing a training config's data for a trip to another machine (the lent GPU machine).

`pack(config, out)` writes every dataset of the config (and its backgrounds folder) as a
folder dataset under `out/<name>/` (`images/*.jpg` shrunk to a short side, JPEG quality 90;
`masks/*.png` 1-bit, or `alphas/*.png` for soft targets), keeping every stem, so the
stem-hash split (`PairList.split`) puts each image in the same part there as here; and a
copy of the config, `out/config.yaml`, whose paths point at the packed folders. There:

    KERAS_BACKEND=jax humanmatting train --config OUT/config.yaml out_dir=RUN

Every file is written atomically and `config.yaml` last, so a killed pack has none.
"""

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from humanmatting.data.readers import read_dataset
from humanmatting.io import ImageError, atomic_path, load_rgb

JPEG_QUALITY = 90


def shrink(image, short_side, interpolation=cv2.INTER_AREA):
    """`image` resized so that its short side is at most `short_side`."""
    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=interpolation)


def _write(path, image, params):
    ok, data = cv2.imencode(Path(path).suffix, image, params)
    if not ok:
        raise ImageError(f"{path}: could not encode")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.tobytes())


def _read_target(path, alpha_channel):
    flag = cv2.IMREAD_UNCHANGED if alpha_channel else cv2.IMREAD_GRAYSCALE
    target = cv2.imdecode(np.fromfile(str(path), np.uint8), flag)
    if target is None:
        raise ImageError(f"{path}: not a readable image")
    return target[..., 3] if alpha_channel else target


def pack_dataset(pairs, out, short_side, *, log=print):
    """Writes one PairList as a folder dataset in `out`; returns the problems [(path, why)]."""
    out = Path(out)
    soft = pairs.refined
    target_dir = out / ("alphas" if soft else "masks")
    (out / "images").mkdir(parents=True, exist_ok=True)
    problems = list(pairs.problems)
    written = 0
    for image_path, target_path in zip(pairs.images, pairs.targets):
        stem = Path(image_path).stem
        try:
            rgb = shrink(load_rgb(image_path), short_side)
            if target_path:
                target = _read_target(target_path, pairs.alpha_channel)
                target = cv2.resize(target, rgb.shape[1::-1], interpolation=cv2.INTER_AREA)
                if soft:
                    _write(target_dir / f"{stem}.png", target, [cv2.IMWRITE_PNG_COMPRESSION, 9])
                else:
                    _write(target_dir / f"{stem}.png",
                           np.where(target > 127, 255, 0).astype(np.uint8),
                           [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 9])
            _write(out / "images" / f"{stem}.jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            written += 1
        except (OSError, ValueError) as err:
            problems.append((image_path, str(err)))
    log(f"{out}: {written} pairs")
    return problems


def pack(config, out, *, short_side=None, log=print):
    """Packs a TrainConfig's datasets and backgrounds into `out`; writes `out/config.yaml`.

    Args:
        config: a TrainConfig.
        out: the folder to write (created).
        short_side: images are shrunk to at most this short side (default: the config's
            `image_cache_short_side`, what training would shrink them to anyway).

    Returns:
        (path of the packed config, problems [(path, reason)]).
    """
    import yaml

    out = Path(out)
    short_side = short_side or config.image_cache_short_side
    problems, names, data = [], set(), []
    for source in config.data:
        name = Path(source.path).name
        if name in names:
            raise ValueError(f"two datasets are named {name!r}; rename one folder")
        names.add(name)
        pairs = read_dataset(source.path, source.kind)
        problems += pack_dataset(pairs, out / name, short_side, log=log)
        kind = "backgrounds" if source.kind == "backgrounds" else "folder"
        data.append({"path": str(out / name), "kind": kind, "weight": source.weight})
    # the packed data is what the needs made: the other machine trains this stage alone
    packed = dataclasses.replace(config, data=data, needs=[])
    if config.backgrounds:
        name = Path(config.backgrounds).name
        if name not in names:
            problems += pack_dataset(read_dataset(config.backgrounds, "backgrounds"),
                                     out / name, short_side, log=log)
        packed = dataclasses.replace(packed, backgrounds=str(out / name))
    path = out / "config.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(packed.to_dict(), sort_keys=False))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"{path}: {len(data)} dataset(s), {size / 2**20:.1f} MiB")
    return path, problems
