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

from humanmatting.data.readers import read_dataset
from humanmatting.evaluation import TFLitePeer, compare, describe_comparison, evaluate
from humanmatting.inference import Matter
from humanmatting.io import atomic_path
from humanmatting.registry import get_preset
from humanmatting.training.release import write_release
METRIC_ORDER = ("iou", "miou", "boundary_f", "mae")


def validation_sets(config):
    """The validation PairLists of a config's datasets, by dataset name (people only)."""
    out = {}
    for source in config.data:
        pairs = read_dataset(source.path, source.kind)
        _, val = pairs.split(config.val_fraction)
        out[Path(source.path).name] = val
    return out


def _table(results, names):
    header = "| data | model | " + " | ".join(METRIC_ORDER) + " | latency ms |"
    rows = [header, "|" + "---|" * (len(METRIC_ORDER) + 3)]
    for data_name, result in results.items():
        for name in names:
            metrics = result["per_model"].get(name)
            if metrics is None:
                continue
            cells = " | ".join(f"{metrics[m]:.4f}" for m in METRIC_ORDER)
            rows.append(f"| {data_name} ({result['count']}) | {name} | {cells} | "
                        f"{result['latency_ms'][name]:.1f} |")
    return "\n".join(rows)


def _peer_lines(results, name, peer="mediapipe_selfie"):
    """The card's image-by-image comparison with the peer, one line per dataset ("" without)."""
    return "\n".join(
        f"  - {data_name}: {describe_comparison(compare(result, name, peer), name, peer)}"
        for data_name, result in results.items() if peer in result["per_image"])


def export_release(config, *, log=print, run_dir=None):
    """Fuses the run's best weights, writes them and a model card to `config.export_dir`.

    Returns:
        dict with the weights path, its size and sha256, and the validation results.
    """
    from humanmatting.training.fit import load_best

    run_dir = Path(run_dir or config.out_dir)
    state = json.loads((run_dir / "state.json").read_text())
    model = load_best(config)
    name = config.model
    written = write_release(model, name, config.export_dir, log=log)
    path, size, digest = Path(written["weights"]), written["bytes"], written["sha256"]

    predictors = {name: Matter(model, input_spec=get_preset(name).input,
                               output=get_preset(name).output)}
    original = "likeunet_dark_light_original"
    predictors[original] = Matter(original)
    if config.peer_tflite and Path(config.peer_tflite).is_file():
        predictors["mediapipe_selfie"] = TFLitePeer(config.peer_tflite)
    results = {}
    for data_name, pairs in validation_sets(config).items():
        if not any(pairs.targets):  # people-free images: not scored by IoU
            continue
        results[data_name] = evaluate(predictors, pairs)
        log(f"validation {data_name}: " + ", ".join(
            f"{n} iou {r['iou']:.4f}" for n, r in results[data_name]["per_model"].items()))
    write_card(config, run_dir, state, path, digest, model, results, list(predictors))
    return {"weights": str(path), "bytes": size, "sha256": digest, "validation": results}


def write_card(config, run_dir, state, path, digest, model, results, names):
    command_file = run_dir / "command.txt"
    commands = command_file.read_text().split("\n") if command_file.exists() else [
        f"humanmatting train --config {run_dir / 'config.yaml'}"]
    command = "`, then `".join(c for c in commands if c.strip())
    preset = get_preset(config.model)
    spec = preset.input
    data_lines = "\n".join(
        f"  - `{d.path}` ({d.kind}, sampling weight {d.weight})" for d in config.data)
    hours = state.get("train_seconds", 0) / 3600
    peer_lines = _peer_lines(results, config.model)
    peer_block = (f"\n- **Image by image against MediaPipe Selfie** (mean IoU difference, 95 % "
                  f"paired bootstrap interval):\n{peer_lines}\n" if peer_lines else "")
    card = f"""# Model card: `{config.model}`

{preset.description}. Trained here, on CPU, {'fine-tuned from `' + config.init_from + '`' if config.init_from else 'from scratch'}.

- **Weights**: `{path.name}`, deploy form (ACNet branches and BatchNorm folded),
  {model.count_params():,} parameters, {path.stat().st_size / 2**20:.2f} MiB, sha256 `{digest}`.
- **Input**: (1, H, W, {spec.channels}) float32, {'grayscale (BT.601 luma)' if spec.channels == 1 else 'RGB'},
  uint8 values x {spec.scale:.6g}; H and W multiples of {spec.divisor}. `Matter` picks the
  size nearest each image's aspect ratio from {', '.join(f'{h}x{w}' for h, w in spec.sizes)}.
- **Output**: (1, H, W, 2) softmax, channel 1 = person.
- **Data**: real photographs with binary person masks (research licences; see
  `../shared/data/README.md`), mixed by weight:
{data_lines}
  Composited onto `{config.backgrounds or 'none'}` with probability
  {config.augment.get('composite', 0.25)}. Validation: a fixed {config.val_fraction:.0%} of each
  dataset by a hash of the file stem (`PairList.split`), never trained on.
- **Training**: `{command}` (config saved as `{run_dir}/config.yaml`); {state['epoch']} epochs
  of {config.steps_per_epoch or 'one pass'} steps x batch {config.batch_size}, buckets
  {len(config.sizes)} sizes with short side 256, AdamW lr {config.learning_rate} cosine, seed
  {config.seed}; best epoch {state.get('best_epoch')} by {state.get('monitor')}
  ({state.get('best', float('nan')):.4f} at bucket resolution); {hours:.2f} h on
  {platform.machine()} CPU, 2 cores.
- **Validation** (each image at its own full size through `Matter`; masks binary, so the
  matting metrics are left out; latency is the median per image including pre/post-processing,
  one process, this machine):

{_table(results, names)}
{peer_block}
- **Measured with**: `humanmatting.training.export.export_release` on
  {datetime.date.today().isoformat()}; the same numbers come from
  `humanmatting eval --data DIR --split val --model {config.model}`.
- **Limits**: binary training masks, so hair and fine edges are only as soft as the
  upsampling makes them; trained at short side 256.
"""
    with atomic_path(path.with_name(f"{config.model}.md")) as tmp:
        tmp.write_text(card)
    keras.backend.clear_session()
