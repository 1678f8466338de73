"""Export parity of every released model: SavedModel, ONNX, TFLite fp32 / fp16 / int8 vs Keras.

    python benchmarks/export_parity.py [--models NAME ...] [--size 384x256] \\
        [--calibrate IMAGE_OR_FOLDER ...] [--json FILE]

Each model is exported (fused, deploy form) to every format in a temporary folder and run with
the format's own runtime (TensorFlow, onnxruntime, the TFLite interpreter) on two non-square
inputs: the bundled sample photo and smooth random structure, both resized to `--size`.
Printed per format: the largest |difference| of the person probability from Keras on each input,
and on the photo the IoU of the alphas thresholded at 0.5 (on the random input the person
region is tiny or empty, so its IoU, kept in --json, says little). fp32 formats must agree to 1e-4 (marked FAIL otherwise);
fp16 and int8 are reported. int8 is calibrated on the given images (default: the sample photo
and generated images); a model that ships a quantized file (Night-Lite's int8, calibrated on
training photographs) also gets a row for that file.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from humanmatting.bench import parse_size  # noqa: E402

FORMATS = [("saved_model", None), ("onnx", None), ("tflite", None), ("tflite", "fp16"),
           ("tflite", "int8")]
TOLERANCE = 1e-4
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def calibration_images(paths):
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"calibration input {path} does not exist")
    return out


def parity(name, size, calibrate, workdir):
    """{format label: {input: {max_abs_diff, iou_thresholded}}} for one model."""
    from humanmatting.export import compare_with_keras, deployable, export
    from humanmatting.io import load_rgb, sample_image_path
    from humanmatting.registry import get_preset, released_tflite

    model, _ = deployable(name)
    spec = get_preset(name).input
    photo = load_rgb(sample_image_path())
    rows = {}
    for fmt, quantize in FORMATS:
        label = fmt if quantize is None else f"{fmt} {quantize}"
        suffix = "" if fmt == "saved_model" else f".{fmt}"
        path = Path(workdir) / f"{name}-{label.replace(' ', '-')}{suffix}"
        export(model, fmt, path, quantize=quantize, representative=calibrate, input_spec=spec)
        rows[label] = {
            "photo": compare_with_keras(model, path, fmt, spec, size=size, image=photo),
            "random": compare_with_keras(model, path, fmt, spec, size=size),
        }
    for quantize in ("fp16", "int8"):   # the quantized files we ship, as users get them
        path = released_tflite(name, quantize)
        if path is not None:
            rows[f"tflite {quantize} (released)"] = {
                "photo": compare_with_keras(model, path, "tflite", spec, size=size, image=photo),
                "random": compare_with_keras(model, path, "tflite", spec, size=size),
            }
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="default: every released model")
    parser.add_argument("--size", default="384x256", help="HxW, non-square")
    parser.add_argument("--calibrate", nargs="*", default=[],
                        help="images or folders to calibrate int8 with")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    from humanmatting.inference import check_sizes
    from humanmatting.registry import get_preset, released_models

    try:
        size = parse_size(args.size)
        check_sizes([size], max(get_preset(m).input.divisor for m in args.models or
                                released_models()))
        calibrate = calibration_images(args.calibrate)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    if not calibrate:
        from humanmatting.io import sample_image_path

        calibrate = [sample_image_path()]
    models = args.models or released_models()
    results, failed = {}, []
    print(f"input {size[0]}x{size[1]}; max |diff| of the person probability vs Keras, and IoU "
          f"of alphas thresholded at 0.5")
    print(f"{'model':30s} {'format':24s} {'photo diff':>11s} {'photo IoU':>10s} "
          f"{'random diff':>12s}")
    with tempfile.TemporaryDirectory(prefix="humanmatting-parity-") as workdir:
        for name in models:
            try:
                results[name] = rows = parity(name, size, calibrate, workdir)
            except (ValueError, FileNotFoundError) as err:
                sys.exit(f"error: {name}: {err}")
            for label, row in rows.items():
                worst = max(row["photo"]["max_abs_diff"], row["random"]["max_abs_diff"])
                fp32 = " " not in label
                mark = ""
                if fp32:
                    mark = "ok" if worst <= TOLERANCE else "FAIL"
                    if worst > TOLERANCE:
                        failed.append(f"{name} {label}")
                print(f"{name:30s} {label:24s} {row['photo']['max_abs_diff']:11.2e} "
                      f"{row['photo']['iou_thresholded']:10.4f} "
                      f"{row['random']['max_abs_diff']:12.2e} {mark}")
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump({"size": list(size), "tolerance": TOLERANCE, "models": results}, f,
                      indent=1)
        os.replace(tmp, args.json)
    if failed:
        sys.exit(f"fp32 exports off by more than {TOLERANCE}: {', '.join(failed)}")


if __name__ == "__main__":
    main()
