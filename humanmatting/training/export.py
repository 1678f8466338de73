"""Release a trained run: fuse its best weights into `models/` and write the model card.

The card records the data and split, the exact command, epochs and training time, and the
validation metrics of the released model measured at each image's full size next to the same
metrics of the original Dark-Light release and, when given, MediaPipe Selfie Segmentation on
the same validation images.
"""

import datetime
import json
import platform
from pathlib import Path

import keras

from humanmatting.data.readers import validation_by_kind
from humanmatting.evaluation import (TFLitePeer, compare, describe_comparison,
                                     evaluate_by_kind, kind_table)
from humanmatting.inference import Matter
from humanmatting.registry import get_preset
from humanmatting.training.release import write_card, write_release


def _peer_lines(results, name, peer="mediapipe_selfie"):
    """The image-by-image comparison with the peer, one line per kind ("" without)."""
    return "\n".join(
        f"- {kind}: {describe_comparison(compare(result, name, peer), name, peer)}"
        for kind, result in results.items() if peer in result["per_image"] and result["count"])


def export_release(config, *, log=print, run_dir=None):
    """Writes the run's release (`fit.release_model`: its best epoch, or what the config's
    `release_epochs` / `release_mix` say) and a model card to `config.export_dir`.

    Returns:
        dict with the weights path, its size and sha256, and the validation results.
    """
    from humanmatting.training.fit import release_model

    run_dir = Path(run_dir or config.out_dir)
    state = json.loads((run_dir / "state.json").read_text())
    model = release_model(config, log=log)
    name = config.model
    written = write_release(model, name, config.export_dir, zoom=config.release_zoom, log=log)
    path, size, digest = Path(written["weights"]), written["bytes"], written["sha256"]
    if config.release_zoom:   # a companion of the release: its card says what it does
        log(f"{path}: the zoom weights of {name}; its model card is not rewritten")
        return {"weights": str(path), "bytes": size, "sha256": digest}

    predictors = {name: Matter(model, input_spec=get_preset(name).input,
                               output=get_preset(name).output)}
    original = "likeunet_dark_light_original"
    predictors[original] = Matter(original)
    if config.peer_tflite and Path(config.peer_tflite).is_file():
        predictors["mediapipe_selfie"] = TFLitePeer(config.peer_tflite)
    results = evaluate_by_kind(predictors, validation_by_kind(config.data, config.val_fraction))
    for kind, result in results.items():
        log(f"validation {kind}: " + ", ".join(
            f"{n} iou {r['iou']:.4f}" for n, r in result["per_model"].items()))
    write_card_of_run(config, run_dir, state, model, results, list(predictors), log=log)
    return {"weights": str(path), "bytes": size, "sha256": digest, "validation": results}


def write_card_of_run(config, run_dir, state, model, results, names, *, log=print):
    """The fixed-form card (`release.write_card`) of a release made by `humanmatting train`."""
    from humanmatting.training.fit import describe_release

    command_file = run_dir / "command.txt"
    commands = [c for c in (command_file.read_text().split("\n") if command_file.exists()
                            else [f"humanmatting train --config {run_dir / 'config.yaml'}"])
                if c.strip()]
    preset = get_preset(config.model)
    spec = preset.input
    data = "\n".join(f"- `{d.path}` ({d.photos}; {d.kind}, sampling weight {d.weight})"
                     for d in config.data)
    data += (f"\n\nValidation: each dataset's fixed held-back split (`DataSource` "
             f"val_fraction {config.val_fraction} by stem hash unless it sets its own, or "
             "whole sequences), never trained on. Binary masks: soft edges are not measured.")
    peers = _peer_lines(results, config.model)
    table = (kind_table(results, names) + "\n\nPerson IoU, mean per image at the image's own "
             "size through `Matter` (this run's model as a keras.Model: one pass, no "
             "filters); the last row weighs every kind alike. "
             f"Printed by `python benchmarks/compare_peers.py --config {run_dir / 'config.yaml'}"
             "`." + (f"\n\n{peers}" if peers else ""))
    hours = state.get("train_seconds", 0) / 3600
    start = f"fine-tuned from `{config.init_from}`" if config.init_from else "from scratch"
    write_card(
        config.export_dir, config.model,
        what=(f"{preset.description}. {model.count_params():,} parameters (deploy form), "
              f"input (1, H, W, {spec.channels}) float32 x {spec.scale:.6g}, H and W "
              f"multiples of {spec.divisor}; trained here, {start}."),
        use="Cut-outs of people in photos and video frames. Trained on binary masks: hair and "
            "fine edges are only as soft as refinement makes them.",
        data=data, table=table,
        reproduce="\n".join(f"`{c}`" for c in commands) + (
            f"\n\n{state['epoch']} epochs of {config.steps_per_epoch or 'one pass'} x "
            f"{config.batch_size}, best epoch {state.get('best_epoch')} by "
            f"{state.get('monitor')}, {hours:.2f} h on {platform.machine()} CPU; released: "
            f"{describe_release(config)}."),
        history=[f"- {datetime.date.today().isoformat()}: trained by `humanmatting train`."],
        log=log)
    keras.backend.clear_session()
