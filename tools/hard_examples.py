"""Hard-example mining on a packed training folder, with a peer model as a check on the labels.

    python tools/hard_examples.py --data .devdata2 --model likeunet_night \\
        --peer ../shared/peers/mediapipe/selfie_segmentation.tflite --out .devdata3

Scores `--model` (one plain pass, no flip / scales / refinement) and the `--peer` TFLite file
on every *training* image of the packed folder (`tools/train_device.py pack`, extended by
`tools/negative_strips.py`), then writes `--out`: the input's datasets linked, plus

- `hard` (kind folder): person photos where the model's IoU is under `--iou-below` (per
  dataset, NAME=IoU) *and* the peer's is at least `--peer-margin` higher. A photo both models
  get wrong is more likely a wrong or partial mask (an unmasked second person, a shifted
  outline) than something to learn, so it is left out.
- `negatives_clean` (kind backgrounds): the people-free bands where the peer finds no person
  (person pixels under `--peer-person` of the band). The bands are cut beside the masked
  person, and in street photos they often hold passers-by that nobody masked: training on
  them as "no person" teaches the model to miss people.
- `negatives_hard` (kind backgrounds): those clean bands where the model takes some pixel
  for a person (statues, shelving, foliage, facades).

Nothing is copied (symbolic links), so the folder is small; give the new datasets sampling
weights with `train_device.py train --mix`. The scores of both models are kept in
`--out/scores.json` (and reused when present for the same model and peer).
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np


def _score(predict, files):
    """{path: IoU (alpha >= 0.5) of predict(image) with the mask, or 1 - person share for a
    band}."""
    from humanmatting.metrics import iou

    scores = {}
    for f in files:
        alpha = predict(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB))
        mask_path = f.with_suffix(".png")
        if mask_path.exists():
            mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) / 255.0
            scores[str(f)] = iou(alpha, mask)
        else:
            scores[str(f)] = float(1.0 - (alpha >= 0.5).mean())
    return scores


def select(files, model, peer, thresholds, peer_margin, peer_person):
    """(hard photos, clean bands, hard bands) from the two models' scores.

    Args:
        files: {dataset name: [image Path]}, with "negatives" for the people-free bands.
        model, peer: {str(path): score}, as `_score` gives.
        thresholds: {dataset name: IoU}; a photo is hard when the model's IoU is under it and
            the peer's at least `peer_margin` higher.
        peer_margin: see above.
        peer_person: a band is clean when the peer marks at most this share as person.
    """
    hard = [f for n, th in thresholds.items() for f in files[n]
            if model[str(f)] < th and peer[str(f)] >= model[str(f)] + peer_margin]
    clean = [f for f in files["negatives"] if peer[str(f)] >= 1.0 - peer_person]
    hard_neg = [f for f in clean if model[str(f)] < 1.0]
    return hard, clean, hard_neg


def _link_set(out, name, kind, files, source, manifest):
    if (out / name).is_symlink():
        (out / name).unlink()
    elif (out / name).exists():   # an earlier mining: links only, the images stay
        shutil.rmtree(out / name)
    folder = out / name / "train"
    folder.mkdir(parents=True, exist_ok=True)
    (out / name / "val").mkdir(exist_ok=True)
    for f in files:
        for src in (f, f.with_suffix(".png")):
            if src.exists():
                os.symlink(src.resolve(), folder / src.name)
    manifest["datasets"].append({"name": name, "kind": kind, "weight": 0.0, "source": source,
                                 "train": len(files), "val": 0})
    print(f"{name}: {len(files)}")


def parse_thresholds(text):
    out = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise SystemExit(f"--iou-below: {part!r} is not NAME=IoU") from None
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="packed folder (with `negatives`)")
    parser.add_argument("--model", required=True, help="registered model to mine for")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--peer", required=True, help="TFLite peer (MediaPipe Selfie)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--iou-below", default="flickr-portraits=0.93,ccp-persons=0.90",
                        help="hard photos: the model's IoU under this, NAME=IoU,...")
    parser.add_argument("--peer-margin", type=float, default=0.02)
    parser.add_argument("--peer-person", type=float, default=0.005,
                        help="a band where the peer marks more of it as person is not clean")
    args = parser.parse_args(argv)
    thresholds = parse_thresholds(args.iou_below)

    data, out = Path(args.data).resolve(), Path(args.out)
    manifest = json.loads((data / "manifest.json").read_text())
    names = {d["name"] for d in manifest["datasets"]}
    missing = [n for n in list(thresholds) + ["negatives"] if n not in names]
    if missing:
        raise SystemExit(f"{data}: no dataset {', '.join(missing)} in its manifest")
    files = {n: sorted((data / n / "train").glob("*.jpg")) for n in list(thresholds) +
             ["negatives"]}
    every = [f for n in files for f in files[n]]

    out.mkdir(parents=True, exist_ok=True)
    cache = out / "scores.json"
    key = {"model": args.model, "weights": args.weights, "peer": str(Path(args.peer).name)}
    scores = json.loads(cache.read_text()) if cache.exists() else {}
    if scores.get("key") != key or len(scores.get("model", {})) != len(every):
        from humanmatting.evaluation import TFLitePeer
        from humanmatting.inference import Matter

        start = time.time()
        matter = Matter(args.model, weights=args.weights, flip=False, scales=(1.0,),
                        refine=False, min_region=0)
        peer = TFLitePeer(args.peer)
        scores = {"key": key, "model": _score(matter.predict, every),
                  "peer": _score(peer.predict, every)}
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(scores))
        os.replace(tmp, cache)
        print(f"scored {len(every)} images in {time.time() - start:.0f} s")
    model, peer = scores["model"], scores["peer"]

    for d in manifest["datasets"]:
        if not os.path.lexists(out / d["name"]):
            os.symlink((data / d["name"]).resolve(), out / d["name"])
    new = dict(manifest, datasets=list(manifest["datasets"]))
    hard, clean, hard_neg = select(files, model, peer, thresholds, args.peer_margin,
                                   args.peer_person)
    for n, kind, chosen, source in (
            ("hard", "folder", hard, f"{args.model} IoU under {args.iou_below}, the peer "
                                     f"{args.peer_margin} higher"),
            ("negatives_clean", "backgrounds", clean, "bands where the peer finds no person"),
            ("negatives_hard", "backgrounds", hard_neg, f"clean bands {args.model} takes "
                                                        "some pixel of for a person")):
        new["datasets"] = [d for d in new["datasets"] if d["name"] != n]
        _link_set(out, n, kind, chosen, source, new)
    for n in thresholds:
        got = np.array([model[str(f)] for f in files[n]])
        print(f"{n}: {args.model} IoU mean {got.mean():.4f}, peer "
              f"{np.mean([peer[str(f)] for f in files[n]]):.4f}")
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(new, indent=1))
    os.replace(tmp, out / "manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
