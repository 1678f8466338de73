"""Writes train.ipynb (kept as code here so that its source is reviewable and diffable)."""

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# Training a humanmatting model

This notebook walks through the public API: data, a model, training, curves, evaluation and
export. By default it runs on a **tiny generated dataset** in a few minutes on a CPU (that is
how CI executes it). Set `REAL = True` (or the environment variable `HUMANMATTING_REAL=1`) to
train on real photographs instead: `../shared/data` holds portraits (flickr-portraits),
full-body photos (ccp-persons) and people-free backgrounds."""),
    code("""import os
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import humanmatting
from humanmatting.training import load_config
from humanmatting.training.fit import fit

REAL = os.environ.get("HUMANMATTING_REAL") == "1"
WORK = Path(os.environ.get("HUMANMATTING_NOTEBOOK_DIR", "runs/notebook"))
WORK.mkdir(parents=True, exist_ok=True)
print(humanmatting.list_models())"""),
    md("""## Data

A folder dataset is `images/STEM.jpg` with `masks/STEM.png` (binary) or `alphas/STEM.png`
(soft). For the tiny run we draw a few synthetic "people" (an ellipse body and a round head on
a textured background)."""),
    code("""import cv2

def make_people(root, count, shape=(120, 96), seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i in range(count):
        h, w = shape
        image = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        cx, cy = int(rng.integers(w // 3, 2 * w // 3)), int(h * 0.7)
        cv2.ellipse(mask, (cx, cy), (w // 5, h // 3), 0, 0, 360, 255, -1)
        cv2.circle(mask, (cx, int(h * 0.28)), w // 8, 255, -1)
        colour = rng.integers(120, 255, 3)
        image[mask > 0] = colour
        cv2.imwrite(str(root / "images" / f"{i:03d}.jpg"), image[..., ::-1])
        cv2.imwrite(str(root / "masks" / f"{i:03d}.png"), mask)
    return root

if REAL:
    data = [{"path": "../shared/data/flickr-portraits", "weight": 0.5},
            {"path": "../shared/data/ccp-persons", "weight": 0.42},
            {"path": "../shared/data/backgrounds", "kind": "backgrounds", "weight": 0.08}]
else:
    data = [{"path": str(make_people(WORK / "people", 24)), "weight": 1.0}]
data"""),
    md("""## Configuration

`TrainConfig` is a typed dataclass; `load_config` reads YAML and `key=value` overrides, exactly
like `humanmatting train --config FILE key=value ...`."""),
    code("""overrides = [f"out_dir={WORK / 'run'}", "seed=0"]
if REAL:
    config = load_config("configs/likeunet_night.yaml", overrides)
else:
    config = load_config(None, overrides + [
        "model=likeunet_night", "sizes=[[64, 64], [64, 96], [96, 64]]", "batch_size=4",
        "steps_per_epoch=6", "epochs=4", "val_fraction=0.25", "learning_rate=0.005",
        "image_cache_short_side=128", "jit_compile=false"])
    config.overrides = {"filters": [8, 8, 16, 16, 16], "bottleneck_filters": 16,
                        "edge_filters": 8}
config.data = [humanmatting.training.DataSource(**d) for d in data]
config"""),
    md("""## A look at the training batches

Each batch has one size from the bucket table; image and alpha are augmented together."""),
    code("""from humanmatting.data import pipeline
from humanmatting.data.readers import read_dataset
from humanmatting.registry import get_preset

lists = [read_dataset(d.path, d.kind).split(config.val_fraction)[0] for d in config.data]
store = pipeline.ImageStore(lists, short_side=config.image_cache_short_side)
preview = pipeline.train_dataset(store, [d.weight for d in config.data],
                                 input_spec=get_preset(config.model).input, batch_size=4,
                                 steps_per_epoch=1, epochs=1,
                                 sizes=[tuple(s) for s in config.sizes])
images, targets = next(iter(preview))
fig, axes = plt.subplots(2, 4, figsize=(10, 5))
for i in range(4):
    axes[0, i].imshow(np.clip(images[i].numpy(), 0, 1)); axes[0, i].axis("off")
    axes[1, i].imshow(targets[i, ..., 0], cmap="gray"); axes[1, i].axis("off")
fig.savefig(WORK / "batch.png"); images.shape"""),
    md("""## Training

`fit` checkpoints every epoch (atomically), keeps the best weights by validation IoU, logs
TensorBoard scalars and image grids, and resumes exactly with `resume=True`."""),
    code("""summary = fit(config)
summary["best"], summary["best_epoch"]"""),
    md("## Curves"),
    code("""history = summary["history"]
epochs = [int(r["epoch"]) for r in history]
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
a.plot(epochs, [float(r["loss"]) for r in history], label="train")
a.plot(epochs, [float(r["val_loss"]) for r in history], label="validation")
a.set_title("loss"); a.legend()
b.plot(epochs, [float(r["iou"]) for r in history], label="train")
b.plot(epochs, [float(r["val_iou"]) for r in history], label="validation")
b.set_title("IoU"); b.legend()
fig.savefig(WORK / "curves.png")
assert np.isfinite([float(r["loss"]) for r in history]).all()"""),
    md("""## Evaluation at full resolution

The release of the run (its best epoch, fused to its deploy form), scored with the same code as
`humanmatting eval`."""),
    code("""from humanmatting.evaluation import evaluate
from humanmatting.inference import Matter
from humanmatting.training.fit import release_model

deployed = release_model(config)
matter = Matter(deployed, input_spec=get_preset(config.model).input,
                sizes=[tuple(s) for s in config.sizes])
val = read_dataset(config.data[0].path, config.data[0].kind).split(config.val_fraction)[1]
result = evaluate({"trained": matter}, val)
result["per_model"]"""),
    md("""## Export

The deploy form has every BatchNorm (and ACNet branch) folded in. Save its weights; in a real
run, `export=true` in the config writes them to `models/` with a model card."""),
    code("""path = WORK / f"{config.model}.weights.h5"
deployed.save_weights(path)
again = humanmatting.create_model(config.model, weights=path, **config.overrides)
x = np.random.default_rng(0).uniform(0, 1, (1, 64, 96, 3)).astype("float32")
assert np.allclose(again(x), deployed(x), atol=1e-6)
path, path.stat().st_size"""),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbf.write(nb, "train.ipynb")
