"""The demo: matting on a webcam, a video or an image, shown on screen and/or written out.

    python demo.py 0                      # webcam 0, q quits
    python demo.py photo.jpg --output cutout.png --no-display
    python demo.py --gray clip.mp4 --output out.mp4 --background beach.jpg
"""

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from humanmatting.cli.common import (add_backend_options, check_backend_options,
                                     import_tensorflow, quiet_logs, user_error)

WINDOW = "humanmatting (q quits)"
FOURCC = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v"}
ALPHA_FORMATS = (".png", ".webp", ".tif", ".tiff")
GREEN = (0, 177, 64)


class DemoError(Exception):
    """A problem to report to the user in one line (exit code 1)."""


def build_parser():
    p = argparse.ArgumentParser(
        prog="demo.py", description="Human matting demo on a webcam, a video or an image.")
    p.add_argument("source", help="camera index (0, 1, ...) or the path of an image or video")
    p.add_argument("--gray", action="store_true",
                   help="use the grayscale model (or check that --model is grayscale)")
    p.add_argument("--model", default=None,
                   help="registered model (see `humanmatting list`), or auto: automatic "
                        "matting (the segmentation model's trimap solved by IndexNet)")
    p.add_argument("--trimap", default=None, metavar="FILE",
                   help="for an image and a trimap-matting model (or auto): its trimap, "
                        "0 background / 128 unknown / 255 foreground, at the image's size")
    p.add_argument("--output", "-o", default=None,
                   help="image: PNG cut-out with alpha, or a composite when --background is "
                        "given; video or camera: a video of the composite")
    add_backend_options(p)
    p.add_argument("--no-display", action="store_true", help="run headless (no window)")
    p.add_argument("--background", default=None,
                   help="colour name, #rrggbb, r,g,b or an image path (default for video and "
                        "the screen: green)")
    return p


def choose_model(args, still):
    """The model name from --model / --gray, checked against --trimap and the kind of
    source (`still`: an image rather than a video or camera)."""
    from humanmatting.registry import DEFAULT_GRAY_MODEL, DEFAULT_MODEL, get_preset

    if args.model is None:
        model = DEFAULT_GRAY_MODEL if args.gray else DEFAULT_MODEL
    else:
        model = args.model
    import_tensorflow()  # the registry imports the model code
    from humanmatting.inference import AUTO, model_trimap

    try:
        takes = model_trimap(model)
    except ValueError as err:
        raise DemoError(str(err)) from None
    if args.gray and (model == AUTO or get_preset(model).input.channels != 1):
        raise DemoError(f"--gray was given but model {model!r} takes RGB input")
    if args.trimap and not takes:
        raise DemoError(f"--trimap: {model} takes no trimap (it is a segmentation model)")
    if args.trimap and not still:
        raise DemoError("--trimap is for a still image, not a video or a camera")
    if takes == "required" and not args.trimap:
        raise DemoError(f"{model} is a trimap-matting model: give --trimap FILE with an "
                        "image, or use --model auto, which makes its own trimap")
    return model


class FPSMeter:
    """Exponentially smoothed frames per second (the overlay), and the mean over every frame
    after the first (`mean`, the summary: the first frame also pays for warm-up)."""

    def __init__(self, smoothing=0.9):
        self.smoothing = smoothing
        self.fps = None
        self._last = self._first = None
        self._ticks = 0

    def tick(self):
        now = time.perf_counter()
        if self._last is not None:
            current = 1.0 / max(now - self._last, 1e-6)
            self.fps = current if self.fps is None else (
                self.smoothing * self.fps + (1 - self.smoothing) * current)
        else:
            self._first = now
        self._last = now
        self._ticks += 1
        return self.fps

    @property
    def mean(self):
        if self._ticks < 2:
            return None
        return (self._ticks - 1) / max(self._last - self._first, 1e-6)


def has_screen():
    """False on a Linux/BSD machine with neither an X11 nor a Wayland display.

    OpenCV's Qt back end aborts the whole process (no Python exception) when it opens a window
    without one, so this must be checked before the first imshow.
    """
    if sys.platform.startswith(("linux", "freebsd", "openbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Display:
    """An OpenCV window; a clear error when there is no screen."""

    def __init__(self, enabled):
        if enabled and not has_screen():
            raise DemoError("no display available to show the result; use --no-display "
                            "(and --output to save it)")
        self.enabled = enabled
        self.opened = False

    def show(self, rgb, fps=None, wait=1):
        """Shows a frame; returns False when the user pressed q or closed the window."""
        if not self.enabled:
            return True
        import cv2

        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if fps is not None:
            text = f"{fps:5.1f} FPS"
            cv2.putText(bgr, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4)
            cv2.putText(bgr, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        try:
            cv2.imshow(WINDOW, bgr)
            self.opened = True
            key = cv2.waitKey(wait) & 0xFF
        except cv2.error:
            raise DemoError("no display available to show the result; use --no-display "
                            "(and --output to save it)") from None
        if key in (ord("q"), 27):
            return False
        return cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1

    def close(self):
        if self.opened:
            import cv2

            cv2.destroyAllWindows()


def open_capture(source):
    """A cv2.VideoCapture for a camera index or a video file, with its first frame."""
    import cv2

    if source.isdigit():
        cap = cv2.VideoCapture(int(source))
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            raise DemoError(f"camera {source} could not be opened")
        return cap, frame
    cap = cv2.VideoCapture(source)
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok or frame is None:
        raise DemoError(f"{source}: not a readable video (corrupt or unsupported format)")
    return cap, frame


def check_output(output, *, still, cutout):
    """Refuses an --output name the result cannot be written to, before the model loads: a
    still image needs an image extension (one that keeps alpha for a cut-out), a video or
    camera stream one of FOURCC's."""
    from humanmatting.io import IMAGE_EXTENSIONS

    suffix = output.suffix.lower()
    if not still:
        if suffix not in FOURCC:
            raise DemoError(f"{output}: video output must be one of {', '.join(sorted(FOURCC))}")
    elif cutout and suffix not in ALPHA_FORMATS:
        raise DemoError(f"{output}: a cut-out with alpha needs a .png file (or give "
                        "--background for a composite)")
    elif suffix not in IMAGE_EXTENSIONS:
        raise DemoError(f"{output}: image output must be one of {', '.join(IMAGE_EXTENSIONS)}")


def run_image(args, image, matter, background, display, trimap=None):
    from humanmatting.io import ImageError, write_image

    start = time.perf_counter()
    alpha = matter.predict(image, trimap=trimap)
    elapsed = time.perf_counter() - start
    if args.output:
        output = Path(args.output)
        try:
            write_image(output, matter.composite(image, background, alpha=alpha))
        except (ImageError, OSError) as err:
            raise DemoError(str(err)) from None
        print(f"wrote {output}")
    print(f"{args.source}: {image.shape[1]}x{image.shape[0]}, person covers "
          f"{100 * float(alpha.mean()):.1f}% of the image ({matter.name}, "
          f"{1000 * elapsed:.0f} ms)")
    preview = GREEN if background is None else background
    display.show(matter.composite(image, preview, alpha=alpha), wait=0)
    display.close()


def open_writer(stack, output, fps, width, height):
    """A cv2.VideoWriter on a temporary file that `stack` renames to `output` on success."""
    import cv2

    from humanmatting.io import atomic_path

    suffix = Path(output).suffix.lower()
    tmp = stack.enter_context(atomic_path(output))
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC[suffix]), fps,
                             (width, height))
    if not writer.isOpened():
        raise DemoError(f"{output}: could not open a video writer")
    stack.callback(writer.release)  # runs before the rename: callbacks unwind in reverse
    return writer


def run_stream(args, cap, first_frame, matter, background, display):
    """Webcam or video: composite every frame; write a video with the same frames and fps."""
    import cv2

    height, width = first_frame.shape[:2]
    if not isinstance(background, tuple):   # an image: scaled to cover the frame once, not
        from humanmatting.inference import cover   # on every frame

        background = cover(background, height, width)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps > 0 else 30.0
    meter = FPSMeter()
    frames = 0
    with contextlib.ExitStack() as stack:
        stack.callback(cap.release)
        stack.callback(display.close)
        writer = open_writer(stack, args.output, fps, width, height) if args.output else None
        frame = first_frame
        while frame is not None:
            out = matter.composite(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), background)
            if writer is not None:
                writer.write(cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
            frames += 1
            if not display.show(out, meter.tick()):
                break
            ok, frame = cap.read()
            frame = frame if ok else None
    what = f"camera {args.source}" if args.source.isdigit() else args.source
    fps_text = f", {meter.mean:.1f} FPS" if meter.mean else ""
    print(f"{what}: {frames} frame(s) at {width}x{height}{fps_text}")
    if args.output:
        print(f"wrote {args.output}")


def run(args):
    from humanmatting.io import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ImageError, check_file,
                                 parse_background, read_image)

    if (problem := check_backend_options(args)):
        raise DemoError(problem)
    background = None
    if args.background is not None:
        try:
            background = parse_background(args.background)
        except (ValueError, FileNotFoundError) as err:
            raise DemoError(f"--background: {err}") from None
    display = Display(not args.no_display)

    # Open the source before loading the model, so a bad source fails fast.
    image = cap = first = None
    if args.source.isdigit():
        cap, first = open_capture(args.source)
    else:
        try:
            path = check_file(args.source)
        except (FileNotFoundError, ImageError) as err:
            raise DemoError(str(err)) from None
        if args.output and Path(args.output).resolve() == path.resolve():
            raise DemoError(f"--output {args.output}: is the input file; give another name")
        suffix = path.suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            try:
                image = read_image(path)
            except ImageError as err:
                raise DemoError(str(err)) from None
        elif suffix in VIDEO_EXTENSIONS:
            cap, first = open_capture(args.source)
        else:
            raise DemoError(f"{path}: unknown file type {suffix!r}; expected an image "
                            f"({', '.join(IMAGE_EXTENSIONS)}) or a video "
                            f"({', '.join(VIDEO_EXTENSIONS)})")

    if args.output:
        check_output(Path(args.output), still=image is not None, cutout=background is None)
    model = choose_model(args, still=image is not None)
    trimap = None
    if args.trimap:   # checked before the model loads
        from humanmatting.io import load_gray
        from humanmatting.specs import check_trimap

        try:
            trimap = check_trimap(load_gray(args.trimap), image.shape[:2], args.trimap)
        except (FileNotFoundError, ValueError) as err:
            raise DemoError(f"--trimap: {err}") from None

    from humanmatting.inference import Matter

    try:
        # still images get the model's test-time flip, scales and refinement; video and webcam
        # frames stay real time (one pass at the chosen size)
        matter = Matter(model, realtime=image is None, backend=args.backend,
                        quantize=args.quantize)
    except (ValueError, FileNotFoundError) as err:
        raise DemoError(str(err)) from None
    if image is not None:
        run_image(args, image, matter, background, display, trimap)
    else:
        run_stream(args, cap, first, matter, GREEN if background is None else background,
                   display)


def main(argv=None):
    quiet_logs()
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except DemoError as err:
        return user_error(str(err))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
