"""`humanmatting` command line: thin argparse wrappers over the library."""

import argparse
import functools
import os
import shlex
import sys
from pathlib import Path

from humanmatting.cli.common import (Progress, add_backend_options, check_backend_options,
                                     import_keras, import_tensorflow, open_fraction, parse_arch,
                                     positive_int, quiet_logs, report_failures, user_error)
from humanmatting.io import OUTPUT_FORMATS as FORMATS
from humanmatting.specs import REFINE_METHODS
from humanmatting.registry import (check_max_side, check_min_confidence, check_min_region,
                                   check_scales)


def parse_scales(text):
    """`--scales 0.8,1.2` -> (0.8, 1.2); argparse turns the ValueError into a usage error."""
    try:
        return check_scales([v for v in text.split(",") if v.strip()])
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_threshold(check):
    """An argparse type from a registry check (`check_min_region`, `check_min_confidence`):
    `--min-region 0.005` -> 0.005, a ValueError becomes a usage error naming the option."""
    def parse(text):
        try:
            return check(text, name="")
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def _add_still_options(p):
    """--flip, --scales, --no-zoom, --refine, --min-region and --min-confidence: how `Matter`
    treats each still image (predict, eval); with --backend and --quantize."""
    add_backend_options(p)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time augmentation: average with the mirrored prediction (2x "
                        "time); default: the model's own (on for the LikeUnets trained here)")
    p.add_argument("--scales", type=parse_scales, default=None, metavar="S,S,...",
                   help="test-time multi-scale: multiples of the chosen input size to run "
                        "each image at, alphas averaged (a pass each); default: the model's "
                        "own (0.8,1.2 for the full-size LikeUnets trained here, 1,1.25,1.5 for "
                        "Night-Lite; 1 otherwise)")
    p.add_argument("--no-zoom", dest="zoom", action="store_const", const=False, default=None,
                   help="do not run images whose people are small again at larger scales "
                        "(on by default for the LikeUnets trained here: people covering "
                        "under 30 %% of the image after the first passes)")
    p.add_argument("--refine", nargs="?", const="cf", default=None, choices=REFINE_METHODS,
                   metavar="METHOD",
                   help="matting of the image in a thin band around the alpha's edge, 0 / 1 "
                        "outside it: cf (closed form, the default), knn or lkm (pymatting's); "
                        "default: the model's own (cf for the LikeUnets trained here)")
    p.add_argument("--no-refine", dest="refine", action="store_const", const=False,
                   help="no refinement")
    p.add_argument("--min-region", type=parse_threshold(check_min_region), default=None,
                   metavar="F",
                   help="drop person regions smaller than this fraction of the image (specks "
                        "on people-free parts of a scene); 0: keep all; default: the model's "
                        "own (0.005 for the LikeUnets trained here, 0 otherwise)")
    p.add_argument("--max-side", type=parse_threshold(check_max_side), default=None,
                   metavar="PX",
                   help="run each image at its own size (sides rounded to 32), its long side "
                        "at most PX; 0: at the size from the model's table nearest its "
                        "aspect ratio; default: the model's own (a size from the table for "
                        "the segmentation models)")
    p.add_argument("--min-confidence", type=parse_threshold(check_min_confidence),
                   default=None, metavar="P",
                   help="drop person regions whose mean person probability is under this "
                        "(large regions half-believed on people-free scenes); 0: keep all; "
                        "default: the model's own (0 = off for every model since "
                        "2026-12-04; it deleted real people in street scenes)")


def _still_options(args):
    """Matter's flip / scales / zoom / refine / min_region / min_confidence / max_side (None:
    the model's own default), backend and quantize from those options."""
    return {"flip": args.flip, "scales": args.scales, "refine": args.refine,
            "min_region": args.min_region, "min_confidence": args.min_confidence,
            "max_side": args.max_side, "zoom": args.zoom, "backend": args.backend,
            "quantize": args.quantize}


def _add_list(sub):
    p = sub.add_parser("list", help="list the registered models")
    p.set_defaults(func=cmd_list)


def cmd_list(args):
    import_tensorflow()
    from humanmatting.registry import (DEFAULT_MODEL, get_preset, list_models, weights_dir,
                                       zoom_weights_name)

    for name in list_models():
        preset = get_preset(name)
        spec = preset.input
        colour = "gray" if spec.channels == 1 else "rgb"
        scale = "0-255" if spec.scale == 1.0 else "0-1"
        if preset.weights is None:
            weights = "no weights yet"
        elif (weights_dir() / preset.weights).is_file():
            weights = ("weights + zoom" if (weights_dir() / zoom_weights_name(name)).is_file()
                       else "weights")
        else:
            weights = "weights missing"
        mark = "*" if name == DEFAULT_MODEL else " "
        print(f"{mark} {name:32s} {colour:4s} {scale:5s} {weights:15s} {preset.description}")
    return 0


def _add_predict(sub):
    p = sub.add_parser(
        "predict", help="alpha mattes, masks, cut-outs or composites for images and folders",
        description="Predicts alpha mattes for image files and folders of images (searched "
                    "recursively). Bad files are skipped and listed at the end (exit 1). "
                    "INPUT - reads a pipe: one image, PNGs one after another, or raw RGB24 "
                    "frames (--raw WxH); -o - writes PNGs to stdout, one after another.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders, or -")
    p.add_argument("--model", "-m", default=None,
                   help="registered model (see `humanmatting list`)")
    p.add_argument("--output", "-o", required=True,
                   help="output folder; an image file when there is one input file; - for "
                        "stdout")
    p.add_argument("--format", choices=FORMATS, default="alpha",
                   help="alpha: 8-bit gray matte; mask: binary 0 / 255 (alpha >= 0.5); rgba: "
                        "cut-out PNG; composite: on --background")
    p.add_argument("--background", "--bgcolor", default="white",
                   help="for --format composite: colour name, #rrggbb, r,g,b or an image path")
    p.add_argument("--foreground", choices=("none", "ml"), default="none",
                   help="for rgba / composite: ml solves for the person's colours where the "
                        "alpha is soft (pymatting's estimate_foreground_ml), so that the old "
                        "background does not bleed into hair; none keeps the photo's")
    p.add_argument("--trimap", default=None, metavar="FILE|DIR",
                   help="for a trimap-matting model: the trimap (0 / 128 / 255) of the one "
                        "input image, or a folder of trimaps named as the outputs")
    p.add_argument("--post-process", action="store_true",
                   help="clean binary mask first: opened, smoothed, thresholded (rembg -ppm)")
    p.add_argument("--alpha-matting", action="store_true",
                   help="rembg's alpha matting (-a): closed-form matting of everything between "
                        "the model's confident foreground and background")
    p.add_argument("--matting-fg-threshold", type=int, default=240, metavar="0-255",
                   help="with --alpha-matting: probability x 255 at or above which a pixel is "
                        "foreground (rembg -af)")
    p.add_argument("--matting-bg-threshold", type=int, default=10, metavar="0-255",
                   help="with --alpha-matting: at or below which it is background (-ab)")
    p.add_argument("--matting-erode", type=int, default=10, metavar="PX",
                   help="with --alpha-matting: both regions eroded by this many pixels (-ae)")
    p.add_argument("--watch", action="store_true",
                   help="keep watching the input folders and matte new or changed images "
                        "until interrupted (Ctrl-C)")
    p.add_argument("--watch-interval", type=float, default=1.0, metavar="S",
                   help="with --watch: seconds between looks")
    p.add_argument("--raw", default=None, metavar="WxH",
                   help="with INPUT -: raw RGB24 frames of this size (ffmpeg -f rawvideo "
                        "-pix_fmt rgb24 -)")
    _add_still_options(p)
    p.set_defaults(func=cmd_predict)


def collect_inputs(inputs, exclude=None):
    """Expands files and folders into (path, relative path) pairs and missing paths.

    A folder's images keep their path inside it; a file given by itself is just its name.
    Images a folder holds under `exclude` (the output folder, when it lies inside an input
    folder) are left out, so that running a command again does not take its own outputs in.
    """
    from humanmatting.io import IMAGE_EXTENSIONS

    exclude = Path(exclude).resolve() if exclude is not None else None
    found, missing = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                           and not (exclude and p.resolve().is_relative_to(exclude)))
            found += [(p, p.relative_to(path)) for p in files]
        elif path.exists():
            found.append((path, Path(path.name)))
        else:
            missing.append((path, "no such file or folder"))
    return found, missing


def output_names(relatives, suffix=".png"):
    """One distinct output path per input relative path: the input's with `suffix` for its
    extension (`a/b.v2.jpg` -> `a/b.v2.png`).

    Inputs that would share a name (`x.jpg` and `x.png`, or two folders' `x.jpg`) keep their
    extension in it (`x.jpg.png`, `x.png.png`), and any still equal are numbered (`x.jpg-2.png`),
    in input order, so that no output overwrites another. Returns the names and how many
    were renamed.
    """
    def plain(rel):
        return (rel.parent / (rel.stem + suffix)).as_posix().casefold()

    counts = {}
    for rel in relatives:
        counts[plain(rel)] = counts.get(plain(rel), 0) + 1
    names, taken, renamed = [], set(), 0
    for rel in relatives:
        base = rel.parent / (rel.stem if counts[plain(rel)] == 1 else rel.name)
        name, n = base.parent / (base.name + suffix), 1
        while name.as_posix().casefold() in taken:
            n += 1
            name = base.parent / f"{base.name}-{n}{suffix}"
        renamed += name != rel.parent / (rel.stem + suffix)
        taken.add(name.as_posix().casefold())
        names.append(name)
    return names, renamed


def _folder_output_problem(output, count):
    """Why `output` cannot be the folder that several inputs (or a folder input) write into,
    or None: an existing file, or a name ending in an image extension that is not a folder
    yet (`-o result.png` with a folder input would otherwise make a folder named so)."""
    from humanmatting.io import IMAGE_EXTENSIONS

    if output.exists() and not output.is_dir():
        return (f"--output {output}: is a file, but {count} input(s) need an output folder; "
                "give a folder")
    if not output.exists() and output.suffix.lower() in IMAGE_EXTENSIONS:
        return (f"--output {output}: names an image file, but {count} input(s) (or a folder) "
                "need an output folder; give a folder, or a single input image")
    return None


def _predict_problem(args):
    """Why the predict options cannot work together, or None."""
    if (problem := check_backend_options(args)):
        return problem
    pipe_in = args.inputs == ["-"]
    if "-" in args.inputs and not pipe_in:
        return "INPUT - (stdin) cannot be mixed with files or folders"
    if args.raw and not pipe_in:
        return "--raw is for INPUT - (frames on stdin)"
    if args.watch and (pipe_in or args.output == "-" or
                       not any(Path(i).is_dir() for i in args.inputs)):
        return "--watch needs an input folder and an output folder"
    if args.watch_interval <= 0:
        return "--watch-interval must be positive"
    for name in ("matting_fg_threshold", "matting_bg_threshold"):
        if not 0 <= getattr(args, name) <= 255:
            return f"--{name.replace('_', '-')} must be in 0..255"
    if args.matting_bg_threshold >= args.matting_fg_threshold:
        return "--matting-bg-threshold must be below --matting-fg-threshold"
    if args.matting_erode < 0:
        return "--matting-erode must be >= 0"
    if args.alpha_matting and args.refine is False:
        return "--alpha-matting refines the alpha; it cannot go with --no-refine"
    if args.trimap and not Path(args.trimap).exists():
        return f"--trimap {args.trimap}: no such file or folder"
    if args.trimap and Path(args.trimap).is_file() and (
            len(args.inputs) != 1 or not Path(args.inputs[0]).is_file()):
        return "--trimap FILE is for one input image; give a folder of trimaps for a folder"
    import_tensorflow()
    from humanmatting.inference import model_trimap
    from humanmatting.registry import DEFAULT_MODEL

    try:
        takes = model_trimap(args.model or DEFAULT_MODEL)
    except ValueError as err:
        return str(err)
    if takes == "required" and pipe_in:
        return f"{args.model} is a trimap-matting model: a pipe carries no trimaps"
    if takes == "required" and not args.trimap:
        return (f"{args.model} is a trimap-matting model: give --trimap FILE or DIR (or use "
                "--model auto, which makes its own)")
    if args.trimap and not takes:
        return f"{args.model or DEFAULT_MODEL} takes no trimap (it is a segmentation model)"
    return None


def _make_matter(args):
    from humanmatting.inference import Matter

    options = _still_options(args)
    if args.alpha_matting:
        options["matting_trimap"] = (args.matting_fg_threshold / 255,
                                     args.matting_bg_threshold / 255, args.matting_erode)
    return Matter(args.model, **options)


def cmd_predict(args):
    if (problem := _predict_problem(args)):
        return user_error(problem)
    from humanmatting.io import IMAGE_EXTENSIONS, parse_background

    background = None
    if args.format == "composite":
        try:
            background = parse_background(args.background)
        except (ValueError, FileNotFoundError) as err:
            return user_error(f"--background: {err}")
    if args.inputs == ["-"]:
        return _predict_pipe(args, background)
    output = Path(args.output)
    for item in args.inputs:
        if Path(item).is_dir() and Path(item).resolve() == output.resolve():
            return user_error(f"--output {output}: is the input folder {item}; the mattes would "
                              "overwrite its PNG images, so give another folder")
    found, failed = collect_inputs(args.inputs, exclude=output)
    if not found and not failed and not args.watch:
        return user_error("no images found in " + ", ".join(args.inputs))
    to_stdout = args.output == "-"
    single = (len(args.inputs) == 1 and len(found) == 1 and Path(args.inputs[0]).is_file()
              and (output.suffix != "" or to_stdout))
    if to_stdout and not single:
        return user_error("-o - (stdout) takes one input image, or INPUT - for a stream")
    if single and not to_stdout and output.suffix.lower() != ".png" and \
            args.format != "composite":
        return user_error(f"{output}: {args.format} output must be a .png file")
    if single and not to_stdout and output.suffix.lower() not in IMAGE_EXTENSIONS:
        return user_error(f"{output}: composite output must be one of "
                          f"{', '.join(IMAGE_EXTENSIONS)}")
    if single and not to_stdout and output.resolve() == found[0][0].resolve():
        return user_error(f"--output {output}: is the input image; give another file name")
    if not single and (problem := _folder_output_problem(output, len(found) + len(failed))):
        return user_error(problem)

    import_tensorflow()
    try:
        matter = _make_matter(args)
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    if to_stdout:
        try:
            trimap = _trimap_for(args, output)
        except FileNotFoundError as err:
            return user_error(str(err))
        return _write_stream(matter, args, background, [found[0][0]], trimap)
    names, renamed = output_names([rel for _, rel in found])
    if renamed and not single:
        print(f"{renamed} input(s) share an output name with another; their names keep the "
              "input's extension (x.jpg -> x.jpg.png)", file=sys.stderr)
    targets = [output if single else output / name for name in names]
    before = _watch_snapshot(args, output) if args.watch else None
    written = _predict_files(matter, args, background, list(zip([p for p, _ in found],
                                                                 targets)), failed)
    print(f"wrote {written} file(s) to {output}", file=sys.stderr if args.watch else sys.stdout)
    if args.watch:
        written += _watch(matter, args, background, output, failed, before)
        print(f"stopped watching; wrote {written} file(s) to {output}")
    return report_failures(failed, "input(s)")


def _render(matter, args, background, image, trimap=None):
    return matter.render(image, args.format, background, post_process=args.post_process,
                         trimap=trimap, foreground=args.foreground)


def _predict_files(matter, args, background, jobs, failed):
    """Mattes (input path, output path) pairs, with a progress bar; failures are appended."""
    from humanmatting.io import ImageError, read_image, write_image

    written = 0
    for path, target in Progress.wrap(jobs, unit="image"):
        try:
            trimap = _trimap_for(args, target)
            write_image(target, _render(matter, args, background, read_image(path), trimap))
            written += 1
        except (ImageError, FileNotFoundError, OSError, ValueError) as err:
            failed.append((path, str(err)))
    return written


def _trimap_for(args, target):
    """The trimap file for an output: --trimap FILE, or DIR/<the output's name inside the
    output folder> (DIR/<input stem>.png for one input written to a file)."""
    if not args.trimap:
        return None
    trimap, output = Path(args.trimap), Path(args.output)
    if trimap.is_dir():
        relative = (Path(target).relative_to(output) if Path(target) != output
                    else Path(Path(args.inputs[0]).stem))
        trimap = trimap / relative.with_suffix(".png")
    if not trimap.is_file():
        raise FileNotFoundError(f"{trimap}: no such trimap")
    return str(trimap)


def _watch_snapshot(args, output):
    """{input path: ((mtime, size), output path)} of the images the input folders hold now."""
    found, _ = collect_inputs(args.inputs, exclude=output)
    names, _ = output_names([rel for _, rel in found])
    out = {}
    for (path, _), name in zip(found, names):
        try:
            stat = path.stat()
        except OSError:
            continue
        out[path] = ((stat.st_mtime_ns, stat.st_size), output / name)
    return out


def _watch(matter, args, background, output, failed, before):
    """Mattes images that appear or change in the input folders until interrupted (Ctrl-C,
    SIGINT or SIGTERM, even where the shell started it with SIGINT ignored); `before` is the
    snapshot taken before the first pass (so a file added during it is not missed)."""
    import signal
    import time

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    snapshot = functools.partial(_watch_snapshot, args, output)
    done = {path: key for path, (key, _) in before.items()}
    pending, written = {}, 0
    print(f"watching {', '.join(args.inputs)} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(args.watch_interval)
            jobs = []
            for path, (key, target) in snapshot().items():
                if done.get(path) == key:
                    continue
                if pending.get(path) == key:   # unchanged since the last look: complete
                    jobs.append((path, target))
                    done[path] = key
                    pending.pop(path)
                else:
                    pending[path] = key
            if jobs:
                count = _predict_files(matter, args, background, jobs, failed)
                written += count
                print(f"wrote {count} new file(s) to {output}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        return written
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_stream(matter, args, background, images, trimap=None):
    """Writes each image's result to stdout as a PNG, one after another; returns the exit
    code (a bad frame stops the stream: its frames are in order)."""
    from humanmatting.io import ImageError, encode_png, read_image

    out = sys.stdout.buffer
    count = 0
    try:
        for image in images:
            if isinstance(image, (str, Path)):
                image = read_image(image)
            out.write(encode_png(_render(matter, args, background, image, trimap)))
            out.flush()
            count += 1
    except (ImageError, FileNotFoundError, ValueError) as err:
        return user_error(f"{err} (after {count} image(s))")
    print(f"wrote {count} PNG(s) to stdout", file=sys.stderr)
    return 0


def _predict_pipe(args, background):
    from humanmatting.io import iter_stream_images

    if args.output != "-":
        return user_error("INPUT - writes to stdout: give -o -")
    raw = None
    if args.raw:
        try:
            height, width = _parse_wxh(args.raw)
        except ValueError as err:
            return user_error(f"--raw: {err}")
        raw = (width, height)
    import_tensorflow()
    try:
        matter = _make_matter(args)
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    return _write_stream(matter, args, background, iter_stream_images(sys.stdin.buffer, raw))


def _parse_wxh(text):
    """'640x480' -> (480, 640) as (H, W); ValueError otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{text!r} is not WIDTHxHEIGHT (e.g. 640x480)")
    return int(parts[1]), int(parts[0])


def _add_train(sub):
    p = sub.add_parser(
        "train", help="train a model from a YAML config",
        description="Trains a registered model as a YAML config says; key=value pairs "
                    "override config keys (dotted keys reach into loss.* and augment.*).")
    p.add_argument("--config", required=True, help="YAML file (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run folder's last checkpoint")
    p.set_defaults(func=cmd_train)


def cmd_train(args):
    from humanmatting.training.config import load_config

    try:
        config = load_config(args.config, args.overrides)
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    import_keras()
    from humanmatting.training.fit import fit

    try:
        summary = fit(config, resume=args.resume,
                      command=shlex.join(["humanmatting"] + sys.argv[1:]))
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    print(f"best {config.monitor} {summary['best']:.4f} at epoch {summary['best_epoch']} "
          f"({summary['epochs_done']} epochs done) in {summary['run_dir']}")
    return 0


def _add_release_commands(sub):
    p = sub.add_parser(
        "pack", help="pack a training config's data for another machine (the GPU machine)",
        description="Writes every dataset of a config, shrunk, as folder datasets under OUT "
                    "(the same train/val split there) and OUT/config.yaml pointing at them: "
                    "KERAS_BACKEND=jax humanmatting train --config OUT/config.yaml")
    p.add_argument("--config", required=True, help="YAML training config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--short-side", type=positive_int, default=None,
                   help="shrink images to this short side (default: the config's "
                        "image_cache_short_side)")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("release", help="release a training run (--config) or fuse a "
                                       "training-form weights file into a release",
                       description="With --config: writes what that training run releases "
                                   "(its best epoch, or its release_epochs averaged, with its "
                                   "release_mix files). With --model and --weights: fuses a "
                                   "training-form .weights.h5 (e.g. a GPU run's "
                                   "best.weights.h5). Either way the file goes to the weights "
                                   "folder with its sha256 in SHA256SUMS.")
    p.add_argument("--config", help="the YAML training config of a finished run")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, as for train (with --config)")
    p.add_argument("--model")
    p.add_argument("--weights", help="training-form .weights.h5")
    p.add_argument("--arch", default="", help="builder overrides the file was trained with, "
                                              "as JSON")
    p.add_argument("--zoom-weights", action="store_true",
                   help="write MODEL.zoom.weights.h5: the weights Matter's second look at "
                        "photos of small people runs with")
    p.add_argument("--models", default="models", help="weights folder (default: models)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("soup", help="average weights of one model into a release (model "
                                    "soups, stochastic weight averaging)")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", nargs="+", default=[], help="released (deploy-form) files")
    p.add_argument("--training-weights", nargs="+", default=[],
                   help="training-form files (e.g. one run's epoch snapshots), averaged "
                        "into one more ingredient")
    p.add_argument("--arch", default="", help="builder overrides, as JSON")
    p.add_argument("--zoom-weights", action="store_true",
                   help="write MODEL.zoom.weights.h5: the weights Matter's second look at "
                        "photos of small people runs with")
    p.add_argument("--models", default="models", help="weights folder (default: models)")
    p.set_defaults(func=cmd_soup)

    p = sub.add_parser("carry", help="carry another variant's release into a model (e.g. "
                                     "Night's RGB weights into Dark's gray input)")
    p.add_argument("--model", required=True, help="the model to release")
    p.add_argument("--from", dest="source", required=True, help="the variant to carry from")
    p.add_argument("--weights", default="default",
                   help="the source's deploy-form weights (default: its release)")
    p.add_argument("--zoom-weights", action="store_true",
                   help="carry the zoom weights (the source's released ones by default) "
                        "into MODEL.zoom.weights.h5")
    p.add_argument("--models", default="models", help="weights folder (default: models)")
    p.set_defaults(func=cmd_carry)

    p = sub.add_parser("convert", help="a checkpoint of a family's original code (.pth, "
                                       ".safetensors, .npz) as a .weights.h5 file",
                       description="Loads an original checkpoint (e.g. U^2-Net's u2netp.pth) "
                                   "into the registered model and writes its weights "
                                   "atomically: the deploy form (BatchNorm folded), or the "
                                   "training form with --training-form.")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", required=True, help="the original checkpoint")
    p.add_argument("--output", required=True, help="the .weights.h5 file to write")
    p.add_argument("--training-form", action="store_true",
                   help="keep BatchNorm separate (to fine-tune from)")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args):
    if not args.output.endswith(".weights.h5"):
        return user_error(f"--output {args.output}: must end in .weights.h5")
    import_tensorflow()
    from humanmatting.io import atomic_path
    from humanmatting.registry import create_model

    try:
        model = create_model(args.model, weights=args.weights, deploy=not args.training_form)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.output) as tmp:
            model.save_weights(tmp)
    except (ValueError, FileNotFoundError, OSError) as err:
        return user_error(str(err))
    print(f"wrote {args.output} ({model.count_params():,} parameters, "
          f"{'training' if args.training_form else 'deploy'} form)")
    return 0


def cmd_pack(args):
    from humanmatting.data.pack import pack
    from humanmatting.training.config import load_config

    try:
        config = load_config(args.config, args.overrides)
        path, problems = pack(config, args.out, short_side=args.short_side)
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    print(f"on the other machine: humanmatting train --config {path}")
    return report_failures(problems, "pair(s)")


def _release_command(fn):
    import_tensorflow()
    try:
        fn()
    except (ValueError, FileNotFoundError, OSError) as err:
        return user_error(str(err))
    return 0


def cmd_release(args):
    from humanmatting.training.config import load_config

    if args.config:
        if args.model or args.weights or args.arch:
            return user_error("release: give --config, or --model and --weights, not both")
        try:
            config = load_config(args.config, args.overrides)
        except (ValueError, FileNotFoundError) as err:
            return user_error(str(err))

        def release():
            from humanmatting.training.fit import describe_release, release_model
            from humanmatting.training.release import write_release

            print(f"releasing {describe_release(config)} of {config.out_dir}")
            write_release(release_model(config), config.model, args.models,
                          zoom=args.zoom_weights or config.release_zoom)
        return _release_command(release)
    if args.overrides or not (args.model and args.weights):
        return user_error("release: give --config FILE [KEY=VALUE ...], or --model and "
                          "--weights")
    from humanmatting.training.release import release_file

    return _release_command(lambda: release_file(args.model, args.weights, args.models,
                                                 arch=parse_arch(args.arch),
                                                 zoom=args.zoom_weights))


def cmd_soup(args):
    from humanmatting.training.release import soup

    return _release_command(lambda: soup(args.model, args.models, weights=args.weights,
                                         training_weights=args.training_weights,
                                         arch=parse_arch(args.arch), zoom=args.zoom_weights))


def cmd_carry(args):
    from humanmatting.training.release import carry

    return _release_command(lambda: carry(args.model, args.source, args.models,
                                          weights=args.weights, zoom=args.zoom_weights))


def _add_eval(sub):
    p = sub.add_parser(
        "eval", help="score a model on a dataset (IoU, mIoU, boundary F, MAE; SAD, MSE, "
                     "Grad, Conn with soft ground truth)",
        description="Scores a model on every image of a dataset at the image's own size. "
                    "Bad pairs are skipped and listed at the end (exit 1).")
    p.add_argument("--data", default=None, help="dataset folder or list file")
    p.add_argument("--config", default=None,
                   help="instead of --data: a training config; scores the validation split "
                        "of each of its datasets and prints one row per kind of photo")
    p.add_argument("--kind", default="folder",
                   choices=("folder", "aisegment", "list", "backgrounds"),
                   help="dataset layout; backgrounds: a folder of people-free images, every "
                        "target empty (IoU 1 where no pixel is taken for a person; MAE the "
                        "mean person alpha)")
    p.add_argument("--model", default=None, help="registered model (see `humanmatting list`)")
    p.add_argument("--weights", default="default", help="weights file instead of the released")
    p.add_argument("--split", default="all", choices=("all", "val", "train"),
                   help="score the whole dataset or one side of the fixed hash split")
    p.add_argument("--val-fraction", type=open_fraction, default=0.1,
                   help="with --split: the validation fraction the model was trained with "
                        "(default 0.1, the training config's); a larger one than the "
                        "training's would score training images")
    p.add_argument("--peer-tflite", default=None,
                   help="also score a TFLite peer (e.g. MediaPipe Selfie) on the same images")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--baseline-matting", choices=REFINE_METHODS, default=None,
                   help="on a dataset with trimaps/: also score classical matting (pymatting's "
                        "cf, knn or lkm) on the same trimaps")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="with --data: a picture of the IoU per image (against the peer with "
                        "--peer-tflite) and the worst images with their mattes")
    p.add_argument("--plot-worst", type=int, default=3, metavar="N",
                   help="with --plot: how many worst images to show")
    _add_still_options(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args):
    if (problem := check_backend_options(args)):
        return user_error(problem)
    import json

    from humanmatting.data.readers import read_dataset

    if bool(args.data) == bool(args.config):
        return user_error("eval: give --data or --config (one of them)")
    if args.plot and (args.config or Path(args.plot).suffix.lower() != ".png"):
        return user_error("--plot takes a .png file name, with --data")
    if args.config:
        return _eval_by_kind(args)
    try:
        pairs = read_dataset(args.data, args.kind)
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    if args.split != "all":
        pairs = pairs.split(args.val_fraction)[args.split == "val"]
    if not len(pairs):
        return user_error(f"{args.data}: no image/target pairs")
    import_tensorflow()
    from humanmatting.evaluation import (TFLitePeer, TrimapSolver, compare, describe_comparison,
                                         evaluate)
    from humanmatting.inference import Matter
    from humanmatting.registry import DEFAULT_MODEL

    name = args.model or DEFAULT_MODEL
    try:
        predictors = {name: Matter(name, weights=args.weights, **_still_options(args))}
        if args.peer_tflite:
            predictors["peer"] = TFLitePeer(args.peer_tflite)
        if args.baseline_matting:
            if not pairs.trimaps:
                return user_error(f"--baseline-matting: {args.data} has no trimaps/ folder")
            solver = TrimapSolver(args.baseline_matting)
            predictors[solver.name] = solver
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    bar = Progress(len(pairs))
    result = evaluate(predictors, pairs, progress=lambda i, n, path: bar.update(i, Path(path).name))
    result["data"] = str(args.data)
    result["split"] = args.split if args.split == "all" else f"{args.split} ({args.val_fraction})"
    result["soft_ground_truth"] = pairs.refined
    if args.peer_tflite and result["count"]:
        # is the gap to the peer more than the luck of these images? (paired bootstrap)
        result["comparison"] = compare(result, name, "peer")
    if args.json:
        print(json.dumps(result, indent=1))
    elif not result["count"]:
        print(f"{args.data}: no image could be scored")
    else:
        for model_name, metrics in result["per_model"].items():
            cells = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            print(f"{model_name}: {cells}  latency {result['latency_ms'][model_name]:.1f} ms "
                  f"({result['count']} images)")
        if "comparison" in result:
            print(describe_comparison(result["comparison"], name, "peer"))
    if args.plot and result["count"]:
        _plot_eval(args, result, name, predictors, pairs)
    return report_failures(result["failed"], "pair(s)")


def _plot_eval(args, result, name, predictors, pairs):
    import numpy as np

    from humanmatting.evaluation import read_target
    from humanmatting.io import read_image
    from humanmatting.plots import plot_eval

    targets = dict(zip(map(str, pairs.images), pairs.targets))

    def mattes(image_path):
        image = read_image(image_path)
        truth = read_target(targets[image_path], pairs.alpha_channel)
        truth = np.zeros(image.shape[:2], np.float32) if truth is None else truth
        return image, truth, {n: p.predict(image) for n, p in predictors.items()}

    path = plot_eval(result, args.plot, name=name,
                     reference="peer" if "peer" in predictors else None, mattes=mattes,
                     worst=max(0, args.plot_worst))
    print(f"wrote {path}")


def _eval_by_kind(args):
    """`eval --config`: each kind of photo of a training config's validation split."""
    import json

    from humanmatting.data.readers import validation_by_kind
    from humanmatting.training import load_config

    try:
        config = load_config(args.config)
        by_kind = validation_by_kind(config.data, config.val_fraction)
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    import_tensorflow()
    from humanmatting.evaluation import TFLitePeer, evaluate_by_kind, kind_table
    from humanmatting.inference import Matter

    name = args.model or config.model
    try:
        predictors = {name: Matter(name, weights=args.weights, **_still_options(args))}
        if args.peer_tflite:
            predictors["peer"] = TFLitePeer(args.peer_tflite)
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    bar = Progress(sum(len(p) for p in by_kind.values()))
    done = [0]

    def progress(i, n, path):
        done[0] += 1
        bar.update(done[0], Path(path).name)

    results = evaluate_by_kind(predictors, by_kind, progress=progress)
    if args.json:
        print(json.dumps({k: {"count": r["count"], "per_model": r["per_model"]}
                          for k, r in results.items()}, indent=1))
    else:
        print(kind_table(results, list(predictors)))
    return report_failures([f for r in results.values() for f in r["failed"]], "pair(s)")


def _add_refine(sub):
    p = sub.add_parser(
        "refine-masks", help="soft pseudo alphas from binary masks (pymatting)",
        description="Computes pseudo ground-truth alphas for a folder dataset's binary masks "
                    "(trimap from the mask, then closed-form or KNN matting). Resumable: "
                    "existing outputs are kept. Bad pairs are listed at the end (exit 1).")
    p.add_argument("--data", required=True, help="folder dataset with images/ and masks/")
    p.add_argument("--out", required=True, help="output folder dataset (images/ + alphas/)")
    p.add_argument("--method", choices=REFINE_METHODS, default="cf")
    p.add_argument("--erode", type=int, default=8, help="trimap foreground erosion, pixels")
    p.add_argument("--dilate", type=int, default=8, help="trimap background dilation, pixels")
    p.add_argument("--max-side", type=int, default=480, help="matting resolution cap")
    p.add_argument("--workers", type=int, default=2, help="parallel processes")
    p.set_defaults(func=cmd_refine)


def cmd_refine(args):
    from humanmatting.data.refine import refine_folder

    progress = Progress.callback()
    try:
        report = refine_folder(args.data, args.out, method=args.method, erode=args.erode,
                               dilate=args.dilate, max_side=args.max_side,
                               workers=args.workers, progress=progress)
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    print(f"{report['done']} alpha(s) written, {report['skipped']} already there, to "
          f"{args.out} (pseudo ground truth)")
    return report_failures(report["failed"], "pair(s)")


def _add_composite(sub):
    p = sub.add_parser(
        "composite", help="a trimap-matting benchmark with exact alphas: people composited "
                          "onto new backgrounds",
        description="Composites the people of a folder dataset with soft alphas (e.g. "
                    "refine-masks' output) onto new backgrounds, Composition-1k style: the "
                    "foreground colours solved from the photo (estimate_foreground_ml), the "
                    "8-bit alpha the ground truth of the composite, and the evaluation trimap "
                    "(every soft pixel unknown, widened by --band). Score it with `eval --data "
                    "OUT --model M --baseline-matting cf`. Bad pairs are listed at the end "
                    "(exit 1).")
    p.add_argument("--data", required=True, help="folder dataset with images/ and alphas/")
    p.add_argument("--backgrounds", required=True,
                   help="folder of people-free photos the people are composited onto")
    p.add_argument("--out", required=True, help="output folder (images/, alphas/, trimaps/)")
    p.add_argument("--split", default="val", choices=("val", "train", "all"),
                   help="which side of the fixed hash split of --data (default val)")
    p.add_argument("--val-fraction", type=open_fraction, default=0.1,
                   help="the validation fraction of that split (default 0.1, the trainer's)")
    p.add_argument("--band", type=int, default=None,
                   help="trimap: pixels the soft region is widened by on each side "
                        "(default 10)")
    p.add_argument("--per-image", type=positive_int, default=1,
                   help="composites per person, each on another background")
    p.add_argument("--max-side", type=positive_int, default=640,
                   help="larger images are scaled down to this first")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_composite)


def cmd_composite(args):
    from humanmatting.data.composite import BAND, composite_folder

    progress = Progress.callback()
    try:
        report = composite_folder(args.data, args.out, args.backgrounds, split=args.split,
                                  val_fraction=args.val_fraction,
                                  band=BAND if args.band is None else args.band,
                                  per_image=args.per_image, max_side=args.max_side,
                                  seed=args.seed, progress=progress)
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    print(f"{report['written']} composite(s) written to {args.out}")
    return report_failures(report["failed"], "pair(s)")


def _add_export(sub):
    p = sub.add_parser("export", help="export to SavedModel, ONNX or TFLite",
                       description="Exports a model (fused) with dynamic height and width.")
    p.add_argument("--model", required=True, help="registered model")
    p.add_argument("--format", required=True, choices=("saved_model", "onnx", "tflite"))
    p.add_argument("--output", "-o", required=True, help="folder (saved_model) or file")
    p.add_argument("--quantize", choices=("fp16", "int8"), default=None, help="TFLite only")
    p.add_argument("--representative", nargs="*", default=None,
                   help="images to calibrate int8 with (default: generated images)")
    p.add_argument("--check", action="store_true",
                   help="run the exported file with its own runtime and compare with Keras")
    p.set_defaults(func=cmd_export)


def cmd_export(args):
    import_tensorflow()
    from humanmatting.export import export

    try:
        result = export(args.model, args.format, args.output, quantize=args.quantize,
                        representative=args.representative, check=args.check)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        return user_error(str(err))
    print(f"wrote {result['path']}")
    if "check" in result:
        check = result["check"]
        print(f"check on {check['input_shape']}: max |diff| {check['max_abs_diff']:.2e}, "
              f"IoU of thresholded alphas {check['iou_thresholded']:.4f}")
        if result["quantize"] is None and check["max_abs_diff"] >= 1e-4:
            return user_error("exported model disagrees with Keras (max |diff| >= 1e-4)")
    return 0


def _add_bench(sub):
    p = sub.add_parser("bench", help="latency of a model (and a peer) on this machine")
    p.add_argument("--model", default=None, help="registered model")
    p.add_argument("--size", default="256x256", help="HxW, multiples of 32")
    add_backend_options(p)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--runs", type=positive_int, default=50, help="timed runs (after warm-up)")
    p.add_argument("--peer-tflite", default=None, help="e.g. MediaPipe selfie_segmentation")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args):
    if (problem := check_backend_options(args)):
        return user_error(problem)
    from humanmatting.bench import parse_size

    try:
        size = parse_size(args.size)
    except ValueError as err:
        return user_error(str(err))
    import_tensorflow()
    from humanmatting.bench import bench
    from humanmatting.registry import DEFAULT_MODEL

    try:
        rows = bench(args.model or DEFAULT_MODEL, size, args.backend, threads=args.threads,
                     runs=args.runs, peer_tflite=args.peer_tflite, quantize=args.quantize)
    except (ValueError, FileNotFoundError) as err:
        return user_error(str(err))
    print(f"{'model':60s} {'median ms':>10s} {'p90 ms':>8s} {'FPS':>7s}")
    for label, r in rows.items():
        print(f"{label:60s} {r['median_ms']:10.2f} {r['p90_ms']:8.2f} {r['fps']:7.1f}")
    if len(rows) == 2:
        ours, peer = (r["median_ms"] for r in rows.values())
        print(f"latency ratio (ours / peer): {ours / peer:.2f}x")
    return 0


def _add_serve(sub):
    from humanmatting import service

    p = sub.add_parser(
        "serve", help="an HTTP service with a web page (FastAPI on uvicorn)",
        description="Serves POST /v1/matte, GET /v1/models, GET /health, the web page at / "
                    "and OpenAPI docs at /docs. Each worker process loads a model once and "
                    "runs requests through it one at a time from a bounded queue.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=positive_int, default=8000)
    p.add_argument("--model", default=None, help="the default model (default: "
                   "humanmatting's default)")
    p.add_argument("--models", nargs="*", default=None,
                   help="the models requests may name (default: every released model)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker processes, each with its own copy of the models")
    p.add_argument("--max-megabytes", type=float, default=service.MAX_BYTES / 2 ** 20,
                   help="largest upload accepted")
    p.add_argument("--max-megapixels", type=float, default=service.MAX_PIXELS / 1e6,
                   help="largest image accepted")
    p.add_argument("--timeout", type=float, default=service.TIMEOUT_S,
                   help="seconds a request may wait and run (then 503)")
    p.add_argument("--queue", type=positive_int, default=service.QUEUE,
                   help="requests that may wait at once per worker (more: 503)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="with --backend onnx or tflite: the runtime's threads per worker")
    _add_still_options(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args):
    if (problem := check_backend_options(args)):
        return user_error(problem)
    if args.max_megabytes <= 0 or args.max_megapixels <= 0 or args.timeout <= 0:
        return user_error("--max-megabytes, --max-megapixels and --timeout must be positive")
    from humanmatting.registry import DEFAULT_MODEL, get_preset

    try:
        for name in [args.model or DEFAULT_MODEL, *(args.models or [])]:
            get_preset(name)
    except ValueError as err:
        return user_error(str(err))
    import_tensorflow()
    from humanmatting.service import serve

    options = {k: v for k, v in _still_options(args).items() if v is not None}
    if args.threads:
        options["threads"] = args.threads
    serve(host=args.host, port=args.port, workers=args.workers, default_model=args.model,
          models=args.models, max_bytes=int(args.max_megabytes * 2 ** 20),
          max_pixels=int(args.max_megapixels * 1e6), timeout=args.timeout, queue=args.queue,
          **options)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="humanmatting", description="Human (portrait) matting model zoo.")
    from humanmatting import __version__

    parser.add_argument("--version", action="version", version=f"humanmatting {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_list(sub)
    _add_predict(sub)
    _add_train(sub)
    _add_release_commands(sub)
    _add_eval(sub)
    _add_refine(sub)
    _add_composite(sub)
    _add_export(sub)
    _add_bench(sub)
    _add_serve(sub)
    return parser


def main(argv=None):
    quiet_logs()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `humanmatting list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
