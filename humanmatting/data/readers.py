"""Dataset readers: pairs of image and target (mask or alpha) paths, with problems reported.

Layouts:
- folder: `DIR/images/STEM.(jpg|png|...)` with `DIR/masks/STEM.png` (binary, rough) or
  `DIR/alphas/STEM.png` (soft, refined). Images that share a stem (`x.jpg`, `x.png`) would
  share a target, so they are left out and reported.
- AISegment matting_human: `DIR/clip_img/.../NAME.jpg` with `DIR/matting/.../NAME.png`, the
  same relative folders with `clip_` / `matting_` swapped in folder names; the matte is the PNG's
  alpha channel.
- list file: one pair a line, `IMAGE_PATH MATTE_PATH` (space or tab separated; relative paths
  are relative to the list file), as the original LikeUnet training used.
"""

import dataclasses
import hashlib
from pathlib import Path

from humanmatting.io import IMAGE_EXTENSIONS


@dataclasses.dataclass
class PairList:
    """Image/target pairs of one dataset.

    Attributes:
        images, targets: paths (str), one per pair; a target of "" means an all-background
            alpha (a people-free image).
        refined: soft alpha targets (True) or rough binary masks (False).
        alpha_channel: read the target's alpha channel (AISegment PNGs) instead of its gray.
        problems: (path, reason) for every pair that was left out.
        name: for reports.
        trimaps: empty, or one trimap path per pair (a folder dataset with `trimaps/`: the
            given trimaps of a trimap-matting benchmark, 0 / 128 / 255).
    """

    images: list
    targets: list
    refined: bool = False
    alpha_channel: bool = False
    problems: list = dataclasses.field(default_factory=list)
    name: str = ""
    trimaps: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.images)

    def split(self, val_fraction, salt="humanmatting", val_groups=()):
        """Splits by a hash of each image's file stem: fixed, independent of order and size.

        Args:
            val_fraction: the share of stems (by hash) that goes to validation.
            salt: mixed into the hash.
            val_groups: instead, split by group: the stem's prefix before its first "_"
                (a video sequence, as CamVid's `0001TP_008550`); stems of these groups are
                validation, the rest training, so near-duplicate neighbouring frames never
                straddle the split.

        Returns:
            (train, val) PairLists. The pairs left out (`problems`) go to the part their
            file's stem falls in, so that a report on either part still names them.
        """
        groups = set(val_groups)

        def is_val(path):
            stem = Path(path).stem
            if groups:
                return stem.split("_", 1)[0] in groups
            digest = hashlib.sha1(f"{salt}:{stem}".encode()).digest()
            return int.from_bytes(digest[:4], "big") / 2**32 < val_fraction

        parts, problems = ([], []), ([], [])
        trimaps = self.trimaps or [None] * len(self.images)
        for image, target, trimap in zip(self.images, self.targets, trimaps):
            parts[is_val(image)].append((image, target, trimap))
        for problem in self.problems:
            problems[is_val(problem[0])].append(problem)
        return tuple(dataclasses.replace(self, images=[p[0] for p in part],
                                         targets=[p[1] for p in part], problems=left_out,
                                         name=f"{self.name}:{kind}",
                                         trimaps=[p[2] for p in part] if self.trimaps else [])
                     for part, left_out, kind in zip(parts, problems, ("train", "val")))


def _images_in(folder):
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _usable(path, problems):
    if not path.is_file():
        problems.append((str(path), "missing"))
        return False
    if path.stat().st_size == 0:
        problems.append((str(path), "empty file"))
        return False
    return True


def read_folder(root):
    """Reads a folder dataset (`images/` + `masks/` or `alphas/`, and optionally `trimaps/`
    with a trimap per image under the same name as its target)."""
    root = Path(root)
    if not (root / "images").is_dir():
        raise FileNotFoundError(f"{root}: no images/ folder (expected images/ with masks/ or "
                                "alphas/)")
    refined = (root / "alphas").is_dir()
    target_dir = root / ("alphas" if refined else "masks")
    if not target_dir.is_dir():
        raise FileNotFoundError(f"{root}: no masks/ or alphas/ folder next to images/")
    by_target = {}
    for image in _images_in(root / "images"):
        rel = image.relative_to(root / "images").with_suffix(".png")
        by_target.setdefault(target_dir / rel, []).append(image)
    images, targets, problems = [], [], []
    trimap_dir = root / "trimaps"
    trimaps = [] if trimap_dir.is_dir() else None
    for target, sharing in by_target.items():
        if len(sharing) > 1:
            # images/x.jpg and images/x.png both name masks/x.png: which photo it belongs to
            # is unknown, so neither is trained or scored on it.
            names = ", ".join(str(p) for p in sharing)
            problems += [(str(p), f"shares the target {target} with {names}; left out")
                         for p in sharing]
            continue
        image = sharing[0]
        trimap = trimap_dir / target.relative_to(target_dir)
        if _usable(image, problems) and _usable(target, problems) and (
                trimaps is None or _usable(trimap, problems)):
            images.append(str(image))
            targets.append(str(target))
            if trimaps is not None:
                trimaps.append(str(trimap))
    return PairList(images, targets, refined=refined, problems=problems, name=root.name,
                    trimaps=trimaps or [])


def read_backgrounds(root):
    """People-free images as pairs with an all-background target."""
    images = [str(p) for p in _images_in(root) if p.stat().st_size > 0]
    if not images:
        raise FileNotFoundError(f"{root}: no background images")
    return PairList(images, [""] * len(images), refined=True, name=Path(root).name)


def read_aisegment(root):
    """Reads the AISegment matting_human layout (`clip_img/` + `matting/`)."""
    root = Path(root)
    clip = root / "clip_img"
    if not clip.is_dir() or not (root / "matting").is_dir():
        raise FileNotFoundError(f"{root}: expected clip_img/ and matting/ (AISegment layout)")
    images, targets, problems = [], [], []
    for image in _images_in(clip):
        rel = image.relative_to(clip)
        parts = [p.replace("clip_", "matting_") for p in rel.parent.parts]
        target = root / "matting" / Path(*parts) / (image.stem + ".png")
        if _usable(image, problems) and _usable(target, problems):
            images.append(str(image))
            targets.append(str(target))
    return PairList(images, targets, refined=True, alpha_channel=True, problems=problems,
                    name=root.name)


def read_list(list_file, *, refined=True, alpha_channel=False):
    """Reads a list file of `IMAGE MATTE` lines (# starts a comment)."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: no such list file")
    images, targets, problems = [], [], []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            problems.append((f"{list_file}:{number}", "expected two paths"))
            continue
        image, target = ((list_file.parent / f) for f in fields)
        if _usable(image, problems) and _usable(target, problems):
            images.append(str(image))
            targets.append(str(target))
    return PairList(images, targets, refined=refined, alpha_channel=alpha_channel,
                    problems=problems, name=list_file.stem)


READERS = {"folder": read_folder, "aisegment": read_aisegment, "list": read_list,
           "backgrounds": read_backgrounds}


def read_dataset(path, kind="folder"):
    """Reads a dataset of the given layout kind ("folder", "aisegment", "list", "backgrounds")."""
    if kind not in READERS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {', '.join(READERS)}")
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such " + ("file" if kind == "list" else "folder"))
    if kind != "list" and not Path(path).is_dir():
        raise FileNotFoundError(f"{path}: not a folder (a {kind} dataset is a folder)")
    return READERS[kind](path)


def read_split(source, val_fraction=0.1):
    """(all, train, val) PairLists of one dataset of a training mix: the one split rule that
    training, evaluation and the benchmarks share.

    Args:
        source: a `DataSource`-like object (path, kind, and optionally val_fraction,
            val_groups) or a path (a folder dataset).
        val_fraction: the fraction held back when the source sets none.
    """
    if isinstance(source, (str, Path)):
        path, kind, fraction, groups = source, "folder", None, ()
    else:
        path, kind = source.path, source.kind
        fraction = getattr(source, "val_fraction", None)
        groups = getattr(source, "val_groups", ()) or ()
    pairs = read_dataset(path, kind)
    train, val = pairs.split(val_fraction if fraction is None else fraction,
                             val_groups=groups)
    return pairs, train, val


def merge(pair_lists, name=""):
    """One PairList of several (all of one target kind: soft or binary)."""
    pair_lists = list(pair_lists)
    if len({p.refined for p in pair_lists}) > 1 or len({p.alpha_channel for p in pair_lists}) > 1:
        raise ValueError("cannot merge soft-alpha and binary-mask datasets into one list")
    return PairList([i for p in pair_lists for i in p.images],
                    [t for p in pair_lists for t in p.targets],
                    refined=pair_lists[0].refined, alpha_channel=pair_lists[0].alpha_channel,
                    problems=[x for p in pair_lists for x in p.problems],
                    name=name or "+".join(p.name for p in pair_lists),
                    trimaps=([t for p in pair_lists for t in p.trimaps]
                             if all(p.trimaps for p in pair_lists) else []))


def validation_by_kind(sources, val_fraction=0.1):
    """{kind of photo: validation PairList} of a training mix's datasets, in their order;
    the datasets of one kind (`DataSource.photos`) merged."""
    by_kind = {}
    for source in sources:
        _, _, val = read_split(source, val_fraction)
        kind = getattr(source, "photos", "") or Path(source.path).name
        by_kind.setdefault(kind, []).append(val)
    return {kind: merge(lists, kind) for kind, lists in by_kind.items()}
