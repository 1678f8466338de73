"""Pictures of results, as PNG files (matplotlib's Agg backend: no display needed).

- `plot_history(history.csv, png)`: training curves (losses; validation IoU per kind);
- `plot_eval(result, png, ...)`: per-image IoU of a model against a peer, and the images
  where it does worst, with the ground truth and both mattes.
"""

import csv
from pathlib import Path

import numpy as np

from humanmatting.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def plot_history(history_csv, path):
    """Training curves of a run's history.csv: training and validation losses (left), the
    validation IoU of each kind of photo and their mean `val_iou_mix` (right)."""
    rows = list(csv.DictReader(Path(history_csv).open()))
    if not rows:
        raise ValueError(f"{history_csv}: no epochs yet")
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in rows]

    def series(key):   # the epochs that logged `key` (validation may skip some)
        got = [(e, float(r[key])) for e, r in zip(epochs, rows) if r.get(key) not in (None, "")]
        return [e for e, _ in got], [v for _, v in got]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "val_loss"):
        if key in rows[-1]:
            left.plot(*series(key), marker="o", label=key)
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    left.legend()
    kinds = [k for k in rows[-1] if k.startswith("val_iou_")]
    if not kinds:
        kinds = [k for k in rows[-1] if k.startswith("val_") and k.endswith("iou")]
    for key in kinds:
        style = {"linewidth": 3, "color": "black"} if key == "val_iou_mix" else {}
        right.plot(*series(key), marker=".", label=key.removeprefix("val_iou_"),
                   **style)
    right.set(xlabel="epoch", ylabel="IoU", title="validation IoU per kind", ylim=(0, 1))
    if kinds:   # none yet before the first validated epoch
        right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_eval(result, path, *, name, reference=None, mattes=None, worst=3, metric="iou"):
    """Per-image `metric` of `name` against `reference` (or, alone, sorted), then the
    `worst` images of `name` (the largest losses to the reference, else the lowest scores).

    Args:
        result: `humanmatting.evaluation.evaluate`'s dict.
        mattes: callable(image path) -> (image, ground truth, {predictor: alpha}), for the
            worst cases' row of pictures; None leaves them out.
    """
    plt = _pyplot()
    scores = np.asarray(result["per_image"][name][metric])
    images = result["images"]
    if not len(scores):
        raise ValueError("no image was scored")
    if reference is not None:
        other = np.asarray(result["per_image"][reference][metric])
        order = np.argsort(scores - other)
    else:
        other = None
        order = np.argsort(scores)
    chosen = order[:min(worst, len(order))] if mattes is not None else []
    columns = 4 if reference is not None else 3
    fig = plt.figure(figsize=(3.2 * columns, 3.4 * (1 + len(chosen))))
    grid = fig.add_gridspec(1 + len(chosen), columns)
    top = fig.add_subplot(grid[0, :])
    if other is not None:
        top.scatter(other, scores, s=12)
        top.plot([0, 1], [0, 1], color="gray", linewidth=1)
        top.set(xlabel=f"{reference} {metric}", ylabel=f"{name} {metric}", xlim=(0, 1.02),
                ylim=(0, 1.02), title=f"{metric} per image ({len(scores)}): above the line, "
                                      f"{name} is better (wins {int((scores > other).sum())}, "
                                      f"loses {int((scores < other).sum())})")
    else:
        top.plot(np.sort(scores), marker=".")
        top.set(xlabel="image (sorted)", ylabel=metric, ylim=(0, 1.02),
                title=f"{name}: {metric} per image ({len(scores)}), mean {scores.mean():.3f}")
    for row, index in enumerate(chosen, start=1):
        image, truth, alphas = mattes(images[index])
        panels = [(image, Path(images[index]).name), (truth, "ground truth"),
                  (alphas[name], f"{name} {scores[index]:.3f}")]
        if reference is not None:
            panels.append((alphas[reference], f"{reference} {other[index]:.3f}"))
        for col, (picture, title) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(picture, cmap=None if picture.ndim == 3 else "gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["plot_eval", "plot_history"]
