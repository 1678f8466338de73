"""Releasing weights: the one writer, and the ways a release is made from trained files.

- `write_release(model, name, folder)`: deploy-form weights written atomically as
  `folder/<name>.weights.h5` (at most 16 MiB: the repository keeps every release in its
  history), their sha256 recorded in `folder/SHA256SUMS`. A preset whose `release_dtype` is
  "float16" is stored at half precision (`half_precision_file`; Keras loads it back into
  float32 variables).
  Every release goes through it (`humanmatting train` with `export: true`, `release`,
  `soup`, `carry`).
- `release_file`: fuse a training-form `.weights.h5` (e.g. a GPU run's `best.weights.h5`).
- `average` / `soup`: average fine-tunes of one starting point (a uniform model soup) and,
  from training-form epoch snapshots, stochastic weight averaging; `soup` releases it.
- `carry`: another variant's release into this one (e.g. Night's RGB weights into Dark's
  gray input), checked to give the same output.
- `write_card`: the model card, in one fixed short form (what it is, use and limits, data,
  the per-kind table beside MediaPipe, the command that reproduces it, a dated history).
"""

from pathlib import Path

import numpy as np

from humanmatting.fusion import fuse
from humanmatting.io import atomic_path
from humanmatting.registry import (create_model, get_preset, released_zoom_weights,
                                   sha256_file, zoom_weights_name)

MAX_RELEASE_BYTES = 16 * 1024 * 1024

__all__ = ["MAX_RELEASE_BYTES", "average", "card_history", "carry", "half_precision_file",
           "release_file", "soup", "update_sums", "write_card", "write_release"]


def update_sums(folder, name, digest):
    """Records `digest` for file `name` in `folder/SHA256SUMS` (sha256sum format, sorted)."""
    sums = Path(folder) / "SHA256SUMS"
    lines = [ln for ln in (sums.read_text().splitlines() if sums.exists() else [])
             if ln.split()[-1:] != [name]]
    lines.append(f"{digest}  {name}")
    with atomic_path(sums) as tmp:
        tmp.write_text("\n".join(sorted(lines, key=lambda ln: ln.split()[-1])) + "\n")


def half_precision_file(source, target):
    """Copies a Keras `.weights.h5` file with every float32 array stored as float16 (half the
    bytes; groups, attributes and other arrays as they are). `target` is written whole or
    not at all."""
    import h5py

    def copy(src, dst):
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for key, item in src.items():
            if isinstance(item, h5py.Group):
                copy(item, dst.create_group(key))
            else:
                data = item[()]
                if getattr(data, "dtype", None) == np.float32:
                    data = data.astype(np.float16)
                copy_attrs = dst.create_dataset(key, data=data)
                for name, value in item.attrs.items():
                    copy_attrs.attrs[name] = value

    with atomic_path(target) as tmp, h5py.File(source, "r") as src, h5py.File(tmp, "w") as dst:
        copy(src, dst)


def write_release(model, name, folder, *, zoom=False, log=print):
    """Writes a deploy-form model's weights as `folder/<name>.weights.h5` (with `zoom`:
    `<name>.zoom.weights.h5`, the weights of `Matter`'s second look at photos of small
    people), as float16 where the preset's `release_dtype` says so, and records their
    sha256; returns {"weights", "bytes", "sha256"}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (zoom_weights_name(name) if zoom else f"{name}.weights.h5")
    staged = folder / f".staged-{path.name}"   # checked before it replaces a release
    with atomic_path(staged) as tmp:
        model.save_weights(tmp)
    if get_preset(name).release_dtype == "float16":
        half_precision_file(staged, staged)
    size = staged.stat().st_size
    if size > MAX_RELEASE_BYTES:
        staged.unlink()
        raise ValueError(f"{path} would be {size / 2**20:.1f} MiB, over the "
                         f"{MAX_RELEASE_BYTES / 2**20:g} MiB release limit; nothing was "
                         "written")
    staged.replace(path)
    digest = sha256_file(path)
    update_sums(folder, path.name, digest)
    log(f"wrote {path} ({model.count_params():,} parameters, {size / 2**20:.2f} MiB, "
        f"sha256 {digest})")
    return {"weights": str(path), "bytes": size, "sha256": digest}


def release_file(name, weights, folder, *, arch=None, zoom=False, log=print):
    """Fuses a training-form weights file of `name` (built with `arch` overrides) and
    releases it (as its zoom weights with `zoom`)."""
    model = create_model(name, weights=weights, deploy=False, **(arch or {}))
    return write_release(fuse(model), name, folder, zoom=zoom, log=log)


def _mean(weight_lists):
    return [np.mean(tensors, axis=0) for tensors in zip(*weight_lists)]


def average(name, *, weights=(), training_weights=(), arch=None, log=print):
    """The deploy-form model whose weights are the tensor-by-tensor mean of its ingredients.

    Args:
        name: the registered model.
        weights: released (deploy-form) files, each one ingredient (a file given twice
            counts twice).
        training_weights: training-form files (e.g. every epoch snapshot of one run, with
            BatchNorm frozen so that its statistics agree): averaged into one more
            ingredient, fused first (stochastic weight averaging).
        arch: builder overrides the files were trained with.
    """
    if not weights and not training_weights:
        raise ValueError("an average needs weights and/or training_weights files")
    arch = arch or {}
    for path in (*weights, *training_weights):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such weights file")
    models = [create_model(name, weights=w, deploy=True, **arch) for w in weights]
    ingredients = [m.get_weights() for m in models]
    if training_weights:
        trained = create_model(name, weights=None, deploy=False, **arch)
        snapshots = []
        for path in training_weights:
            trained.load_weights(path)
            snapshots.append(trained.get_weights())
        trained.set_weights(_mean(snapshots))
        models.append(fuse(trained))
        ingredients.append(models[-1].get_weights())
        log(f"averaged {len(snapshots)} training-form files into one ingredient")
    models[0].set_weights(_mean(ingredients))
    log(f"averaged {len(ingredients)} ingredients")
    return models[0]


def soup(name, folder, *, weights=(), training_weights=(), arch=None, zoom=False, log=print):
    """Averages weights of one model (`average`: a uniform model soup, stochastic weight
    averaging) and releases the average (as its zoom weights with `zoom`)."""
    model = average(name, weights=weights, training_weights=training_weights, arch=arch,
                    log=log)
    return write_release(model, name, folder, zoom=zoom, log=log)


def carry(name, source, folder, *, weights="default", tolerance=1e-4, zoom=False, log=print):
    """Carries `source`'s deploy-form weights into `name` (first-layer kernels adapted to its
    channels and scale) and releases it, after checking that both give the same output on a
    gray image (max |diff| <= tolerance). With `zoom`, the zoom weights: by default the
    source's released ones."""
    from humanmatting.training.transfer import transfer_deploy

    if zoom and weights == "default":
        weights = released_zoom_weights(source)
        if weights is None:
            raise FileNotFoundError(f"{zoom_weights_name(source)}: {source} has no released "
                                    "zoom weights to carry")
    src_model = create_model(source, weights=weights)
    target = create_model(name, weights=None)
    src_spec, spec = get_preset(source).input, get_preset(name).input
    copied = transfer_deploy(src_model, target, input_scale=src_spec.scale / spec.scale)
    if len(copied) != len([layer for layer in target.layers if layer.weights]):
        raise ValueError(f"{source} does not fit {name}: only {copied} carried")
    gray = np.random.default_rng(0).uniform(0, 255, (1, 320, 256, 1)).astype("float32")
    src_in = np.repeat(gray, src_model.input_shape[-1], -1) * src_spec.scale
    ours = np.asarray(target(np.repeat(gray, target.input_shape[-1], -1) * spec.scale))
    diff = float(np.abs(np.asarray(src_model(src_in)) - ours).max())
    log(f"carried {len(copied)} layers from {source}; max output difference on a gray image "
        f"{diff:.2g}")
    if diff > tolerance:
        raise ValueError(f"the carried {name} differs from {source} by {diff:.2g}")
    return write_release(target, name, folder, zoom=zoom, log=log)


CARD_SECTIONS = ("What it is", "Intended use and limits", "Training data",
                 "Validation, per kind of photo", "Reproduce", "History")


def card_history(path):
    """The entries (lines starting with "- ") of an existing card's History section."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    try:
        start = lines.index("## History") + 1
    except ValueError:
        return []
    out = []
    for line in lines[start:]:
        if line.startswith("## "):
            break
        if line.startswith("- "):
            out.append(line)
        elif line.startswith("  ") and out:
            out[-1] += "\n" + line
    return out


def card_numbers(path):
    """{kind of photo: IoU} of this release from a card's per-kind validation table (the
    section's first table, its first numeric column; "mean over kinds" as "mean"); {} without
    a card or a table."""
    path = Path(path)
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    try:
        start = lines.index("## " + CARD_SECTIONS[3]) + 1
    except ValueError:
        return {}
    out, in_table = {}, False
    for line in lines[start:]:
        if line.startswith("## ") or (in_table and not line.startswith("|")):
            break   # the next section, or the end of the first table
        in_table = line.startswith("|")
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.startswith("|"):
            continue
        try:
            value = float(cells[1])
        except ValueError:
            continue
        kind = cells[0].split(" (")[0]
        out["mean" if kind == "mean over kinds" else kind] = value
    return out


def write_card(folder, name, *, what, use, data, table, reproduce, history, log=print):
    """Writes `folder/<name>.md` in the fixed form, atomically.

    Args:
        what, use, data: Markdown text of the first three sections.
        table: the per-kind table (`humanmatting.evaluation.kind_table`) with the line that
            says how it was measured.
        reproduce: the commands that make the released file from the previous one.
        history: dated entries, newest first ("- 2026-12-04: ..."); the card's earlier
            entries are kept after them.
    """
    path = Path(folder) / f"{name}.md"
    entries = list(history) + [e for e in card_history(path) if e not in history]
    body = dict(zip(CARD_SECTIONS, (what, use, data, table, reproduce, "\n".join(entries))))
    text = f"# Model card: `{name}`\n\n" + "\n\n".join(
        f"## {title}\n\n{body[title].strip()}" for title in CARD_SECTIONS) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    log(f"wrote {path}")
    return path
