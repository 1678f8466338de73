"""`Matter`: an image in, the person's alpha matte out, at the image's own size."""

import math
import os
import warnings

import cv2
import keras
import numpy as np

from humanmatting.data.refine import estimate_foreground  # noqa: F401 (re-exported)
from humanmatting.fusion import fuse, is_deploy
from humanmatting.io import OUTPUT_FORMATS, load_gray, load_rgb
from humanmatting.registry import (DEFAULT_MODEL, check_max_side, check_min_confidence,
                                   check_min_region, check_scales, check_zoom, create_model,
                                   get_preset, released_tflite, released_zoom_weights)
from humanmatting.specs import (PERSON_BAND, TRIMAP_BG, TRIMAP_FG, TRIMAP_UNKNOWN, InputSpec,
                                OutputSpec, check_trimap, person_probability, person_trimap,
                                to_model_input)

BACKENDS = ("keras", "onnx", "tflite")
#: `Matter(AUTO)`: automatic matting, a segmentation model's trimap solved by a matting model
AUTO = "auto"
#: the matting model of `Matter(AUTO)`
AUTO_MATTING_MODEL = "indexnet_mobilenetv2"
#: Half-width of the refinement's unknown band, as a fraction of the image's long side (on the
#: validation split, 0.003-0.0075 all lifted Night's IoU; 0.02 lowered it on the first 30
#: full-body photos, 0.940 -> 0.932).
REFINE_BAND = 0.005
#: `remove_small_regions`: a region is the connected support of alpha > SUPPORT around one or
#: more pixels of alpha >= 0.5 (so a blob goes with its soft halo, and a hand joined to the body
#: by a soft edge is one region with it).
SUPPORT = 0.1


def post_process_mask(alpha):
    """A clean binary mask from an alpha (rembg's post-processed mask, `-ppm`): thresholded
    at 0.5, opened with a 3x3 ellipse (specks and one-pixel bridges go), blurred 5x5 with
    sigma 2 and thresholded again (smooth outlines). Returns (H, W) float32 0 / 1."""
    mask = np.where(np.asarray(alpha) >= 0.5, 255, 0).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    mask = cv2.GaussianBlur(mask, (5, 5), sigmaX=2, sigmaY=2)
    return (mask >= 128).astype(np.float32)


def remove_small_regions(alpha, min_area, *, prob=None, min_confidence=0.0):
    """Zeroes every person region whose solid part is smaller than `min_area` of the image, or
    (with `min_confidence`) whose model probability is on average under `min_confidence`.

    A region is a connected (8-neighbour) component of alpha > SUPPORT; its size is its number
    of pixels with alpha >= 0.5 (its solid part). Regions under `min_area` x H x W such pixels
    are set to 0, halo included; the rest of the alpha is untouched. This removes the specks a
    segmentation model leaves on people-free parts of a scene (a shelf, a statue's edge)
    without touching the person, whose region is large. The confidence test removes the large
    regions a model half-believes in (shelving, a facade, foliage): it averages `prob` (the
    model's own person probability, e.g. before a refinement made the alpha 0 / 1) over the
    region's solid part.

    Args:
        alpha: (H, W) float alpha in [0, 1].
        min_area: fraction of the image (0 keeps everything; 0.005 = 0.5 %).
        prob: (H, W) person probability the confidence is taken from (default: `alpha`).
        min_confidence: drop regions whose mean `prob` over their solid part is under this
            (0 keeps every region).

    Returns:
        (H, W) float32 alpha (a new array).
    """
    alpha = np.asarray(alpha, np.float32)
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be (H, W), got shape {alpha.shape}")
    min_area = check_min_region(min_area, "min_area")
    min_confidence = check_min_confidence(min_confidence)
    prob = alpha if prob is None else np.asarray(prob, np.float32)
    if prob.shape != alpha.shape:
        raise ValueError(f"prob must have the alpha's shape {alpha.shape}, got {prob.shape}")
    out = alpha.copy()
    if min_area == 0 and min_confidence == 0:
        return out
    count, labels = cv2.connectedComponents((alpha > SUPPORT).astype(np.uint8), connectivity=8)
    is_solid = alpha >= 0.5
    solid_labels = labels[is_solid]
    solid = np.bincount(solid_labels, minlength=count)
    drop = solid < min_area * alpha.size
    if min_confidence:
        total = np.bincount(solid_labels, weights=prob[is_solid], minlength=count)
        drop |= total < min_confidence * solid   # (regions with no solid pixel: 0 < 0)
    drop[0] = False   # label 0 is the background (alpha <= SUPPORT) itself
    if drop.any():
        out[np.take(drop, labels)] = 0.0
    return out


def choose_size(height, width, sizes):
    """The (H, W) in `sizes` whose aspect ratio is nearest (in log ratio) to height:width."""
    ratio = math.log(height / width)
    return min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - ratio))


def scaled_size(size, scale, divisor):
    """(H, W) times `scale`, each side rounded to the nearest multiple of `divisor` (at least
    one divisor)."""
    return tuple(max(divisor, int(round(v * scale / divisor)) * divisor) for v in size)


#: the largest model input side accepted: 4096 x 4096 already takes several GiB of activations
MAX_SIDE = 4096


def check_sizes(sizes, divisor):
    """Validates a table of (H, W) sizes; returns it as a tuple of int pairs."""
    sizes = tuple((int(h), int(w)) for h, w in sizes)
    if not sizes:
        raise ValueError("sizes must hold at least one (H, W) pair")
    for h, w in sizes:
        if h <= 0 or w <= 0 or h % divisor or w % divisor:
            raise ValueError(f"size {h}x{w} is not accepted: height and width must be "
                             f"positive multiples of {divisor}")
        if max(h, w) > MAX_SIDE:
            raise ValueError(f"size {h}x{w} is not accepted: height and width must be at most "
                             f"{MAX_SIDE}")
    return sizes


class KerasBackend:
    """Runs a Keras model through one compiled `tf.function` for every input size.

    The input signature leaves batch, height and width unknown, so the function is traced once
    and reused for every frame and size (an eager call per frame is about 5x slower).
    """

    def __init__(self, model, output="softmax2"):
        import tensorflow as tf

        self.model = model
        self.output = OutputSpec.of(output)
        channels = model.input_shape[-1]
        self._fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((None, None, None, channels), tf.float32)])

    @property
    def tracing_count(self):
        return self._fn.experimental_get_tracing_count()

    def __call__(self, batch):
        """(B, h, w, C) float32 -> (B, h, w) person probability."""
        output = self._fn(batch)
        if isinstance(output, dict):
            output = {k: np.asarray(v) for k, v in output.items()}
        return person_probability(np.asarray(output) if not isinstance(output, dict)
                                  else output, self.output)


class ExportedBackend:
    """Runs the model exported to ONNX (onnxruntime) or TFLite (the TFLite interpreter).

    The Keras model is exported once into a temporary folder (or `path` names an exported
    file to use); pre- and post-processing stay in `Matter`, so the alphas equal the Keras
    backend's up to the runtime's float rounding.
    """

    def __init__(self, model, fmt, path=None, threads=None, quantize=None, output="softmax2"):
        import tempfile

        from humanmatting.export import export, load_runner, single_output_spec

        if path is None:
            if quantize == "int8":
                warnings.warn(f"{model.name}: no released int8 file; quantizing it now, "
                              "calibrated on generated images (its accuracy can suffer: pass "
                              "`exported=` a file made by `humanmatting export --quantize int8 "
                              "--representative PHOTOS`)", RuntimeWarning, stacklevel=3)
            self._tmp = tempfile.TemporaryDirectory(prefix="humanmatting-")
            path = f"{self._tmp.name}/model.{fmt}"
            export(model, fmt, path, quantize=quantize)
        self.path = str(path)
        self._run = load_runner(path, fmt, threads=threads,
                                output_spec=single_output_spec(output))

    def __call__(self, batch):
        return self._run(np.ascontiguousarray(batch, np.float32))


def model_trimap(name):
    """How the model called `name` (a registered name or `AUTO`) takes a trimap: "required"
    (a trimap-matting model), "optional" (`AUTO` makes its own unless one is given) or None (a
    segmentation model); ValueError naming the known names otherwise."""
    if name == AUTO:
        return "optional"
    try:
        preset = get_preset(name)
    except ValueError as err:
        raise ValueError(f"{err}; or {AUTO!r} (automatic matting)") from None
    return "required" if preset.input.trimap else None


def cover(background, height, width):
    """Resizes and centre-crops `background` to fill (height, width) without distortion."""
    bh, bw = background.shape[:2]
    if (bh, bw) == (height, width):   # e.g. a video's background, covered once for all frames
        return background
    scale = max(height / bh, width / bw)
    nh, nw = max(height, round(bh * scale)), max(width, round(bw * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(background, (nw, nh), interpolation=interp)
    top, left = (nh - height) // 2, (nw - width) // 2
    return resized[top:top + height, left:left + width]


def _call(runner, x):
    """A backend (`KerasBackend` / `ExportedBackend`) on a (B, h, w, C) batch, as float32."""
    return np.asarray(runner(np.ascontiguousarray(x, np.float32)))


class Matter:
    """Predicts alpha mattes of people with a registered model or your own Keras model.

    Args:
        model: a registered name (default `DEFAULT_MODEL`), a keras.Model (training-form
            models are fused first), or "auto": automatic matting with no trimap from the
            user, the survey's two stages: the `segmenter`'s person probability (its own
            flip, scales and region filters, no refinement) -> `person_trimap` (a band
            around its 0.5 edge, its width following each person's size) -> the matting
            model `AUTO_MATTING_MODEL` in that trimap. The other arguments (weights, sizes,
            backend, ...) are the matting model's; a trimap given to `predict` is used
            instead of the segmenter's.
        backend: "keras" (a compiled tf.function), "onnx" (onnxruntime) or "tflite" (the
            TFLite interpreter); the last two export the model first.
        weights: for a registered name: "default", None or a path (see `create_model`).
        input_spec: the input convention of a keras.Model passed directly (default: its input
            channels, values scaled to [0, 1], the standard size table).
        sizes: (H, W) sizes to run at instead of the preset's table; each image runs at the
            one nearest its aspect ratio. Multiples of the input divisor (32).
        max_side: 0 to run at a size from the table; N to run each still image at its own
            size (sides rounded to the divisor), scaled down to a long side of N first
            (None: the preset's; `sizes=` turns it off).
        output: "softmax2" or "sigmoid", for a keras.Model passed directly.
        exported: with backend onnx/tflite, an already exported file to run instead.
        threads: with backend onnx/tflite, the runtime's thread count (default: onnxruntime's
            own choice; for TFLite up to 4 of the machine's cores, where the interpreter
            alone would use one).
        quantize: with backend tflite: None (float32), "fp16" or "int8". A registered model
            with its default weights uses the released file when there is one (Night-Lite's
            int8, calibrated on training photographs); otherwise the model is quantized on the
            spot (int8 calibrated on generated images, with a warning).
        flip: test-time augmentation: also run the mirrored input and average the two
            alphas (twice the compute; on the validation split of ../shared/data it lifts
            likeunet_night's IoU by 0.003 on portraits and 0.005 on full-body photos).
            None: the preset's default (on for the registered LikeUnets and IndexNet, off
            for a keras.Model passed directly; a trimap is mirrored with its image).
        scales: test-time multi-scale: run each still image at every one of these multiples
            of its chosen size (sides rounded to the divisor) and average the alphas at the
            image's own size (each scale costs a pass, or two with `flip`). None: the
            preset's default ((0.8, 1.2) for the full-size LikeUnets, e.g. short sides 256
            and 384 instead of Night's 320; (1.0, 1.25, 1.5) for Night-Lite, short sides
            256, 320 and 384; (1.0,) otherwise).
        refine: matting refinement of each alpha: "cf" (closed form, Levin et al., solved
            with SciPy: `humanmatting.data.refine.closed_form_alpha`) or "knn" (pymatting)
            solves the image inside a band of `REFINE_BAND` x the long side around the alpha's
            0.5 edge, and makes the alpha 0 / 1 outside it (about 0.07 s per photo; "knn"
            imports pymatting, whose numba kernels compile for about a minute on their first
            use after installation, then load from numba's cache). False: none. None: the
            preset's default ("cf" for the registered LikeUnets, none for a keras.Model
            passed directly).
        zoom: for still images whose people are small: (below, scales). When the person
            pixels (>= 0.5) of the first passes cover less than `below` of the image, and
            more than none, the image runs again at `scales` (larger multiples of its
            size) and that answer replaces the first: people in street scenes and groups are
            found better when they are larger in the model's input, while close portraits
            lose there. None: the preset's default ((0.2, (1.2, 1.8)) for the full-size
            LikeUnets, (0.3, (1.8, 2.4)) for Night-Lite: `humanmatting.models.likeunet`);
            False: off.
        zoom_weights: the weights the zoom passes run with: "default": the model's released
            zoom weights (`registry.released_zoom_weights`: the same network fine-tuned for
            people small in the frame, which close portraits, never zoomed, do not need) when
            the model is a registered name with its default weights and such a file is
            released, else the model itself (so also with `quantize`: only the model's own
            quantized file is released); a `.weights.h5` path; None: the model itself. With
            an exported backend the zoom weights are exported when an image first zooms.
        min_region: drop person regions smaller than this fraction of the image
            (`remove_small_regions`, after refinement; 1-7 ms at 640x480 on this 2-core
            machine, so video frames keep it). None: the preset's default (0.005 for the
            LikeUnets trained here, 0 = off for the original release and a keras.Model passed
            directly).
        min_confidence: drop person regions whose mean person probability (the model's,
            before refinement, over the region's solid part) is under this: the large
            regions a model half-believes in on people-free scenes (shelving, a facade,
            foliage). It also deletes real people the model is unsure of (street scenes,
            groups: `humanmatting.models.likeunet.MIN_CONFIDENCE`), so it is off by default
            (0 for every preset; 0.75 was the LikeUnets' default until 2026-12-04).
        realtime: for video and webcam frames: the defaults of `flip`, `scales`, `zoom` and
            `refine` become one plain pass (no flip, (1.0,), no zoom, no refinement) whatever
            the preset says;
            arguments given explicitly still win. `min_region` and `min_confidence` stay as
            they are.
        matting_trimap: None (refinement solves a band around the 0.5 edge), or
            (foreground threshold, background threshold, erode px): rembg's alpha matting,
            the trimap is the model's probability >= foreground / <= background, each
            eroded by `erode` pixels, and the refinement solves everything else (it turns
            `refine` on, "cf" unless named).
        segmenter: for "auto": the segmentation model's name (default `DEFAULT_MODEL`).
        person_band: for "auto": `person_trimap`'s band (default `PERSON_BAND`).

    Example:
        >>> matter = Matter("likeunet_dark_light_original")
        >>> alpha = matter.predict("photo.jpg")                # (H, W) float32 in [0, 1]
        >>> green = matter.composite("photo.jpg", (0, 177, 64))  # (H, W, 3) uint8
    """

    def __init__(self, model=None, *, backend="keras", weights="default", input_spec=None,
                 sizes=None, output="softmax2", exported=None, threads=None, flip=None,
                 scales=None, refine=None, realtime=False, quantize=None, min_region=None,
                 min_confidence=None, matting_trimap=None, segmenter=None, person_band=None,
                 max_side=None, zoom=None, zoom_weights="default"):
        self.segmenter = None
        if isinstance(model, str) and model == AUTO:
            self.segmenter = Matter(segmenter or DEFAULT_MODEL, backend=backend,
                                    threads=threads, realtime=realtime, refine=False,
                                    min_region=min_region, min_confidence=min_confidence)
            if self.segmenter.task != "segmentation":
                raise ValueError(f"segmenter {segmenter!r} is not a segmentation model")
            self.person_band = PERSON_BAND if person_band is None else float(person_band)
            if not 0 < self.person_band < 1:
                raise ValueError(f"person_band is a share of a person's size in (0, 1), "
                                 f"got {person_band}")
            model, min_region, min_confidence = AUTO_MATTING_MODEL, 0.0, 0.0
        elif segmenter is not None or person_band is not None:
            raise ValueError("segmenter and person_band are options of Matter('auto')")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
        if quantize not in (None, "fp16", "int8"):
            raise ValueError(f"quantize must be None, 'fp16' or 'int8', got {quantize!r}")
        if quantize and backend != "tflite":
            raise ValueError(f"quantize={quantize!r} needs backend='tflite', not {backend!r}")
        model = DEFAULT_MODEL if model is None else model
        if realtime:   # one plain pass a frame unless asked otherwise
            flip = False if flip is None else flip
            scales = (1.0,) if scales is None else scales
            refine = False if refine is None else refine
            zoom = False if zoom is None else zoom
        if isinstance(model, str):
            preset = get_preset(model)
            self.name = model
            self.input_spec = preset.input
            self.output = preset.output
            self.task = preset.task
            keras_model = create_model(model, weights=weights)
            flip = preset.flip if flip is None else flip
            scales = preset.scales if scales is None else scales
            refine = preset.refine if refine is None else refine
            min_region = preset.min_region if min_region is None else min_region
            min_confidence = (preset.min_confidence if min_confidence is None
                              else min_confidence)
            max_side = preset.max_side if max_side is None else max_side
            zoom = preset.zoom if zoom is None else zoom
        elif isinstance(model, keras.Model):
            self.name = model.name
            self.input_spec = input_spec or InputSpec(channels=model.input_shape[-1])
            self.output = OutputSpec.of(output)
            self.task = "trimap_matting" if self.input_spec.trimap else "segmentation"
            keras_model = model if is_deploy(model) else fuse(model)
        else:
            raise ValueError(f"model must be a registered name or a keras.Model, got "
                             f"{type(model).__name__}")
        if matting_trimap is not None:
            fg, bg, erode = matting_trimap
            if not (0 <= bg < fg <= 1) or int(erode) != erode or erode < 0:
                raise ValueError("matting_trimap must be (foreground, background, erode) with "
                                 f"0 <= background < foreground <= 1 and erode >= 0 pixels, "
                                 f"got {matting_trimap}")
            matting_trimap = (float(fg), float(bg), int(erode))
            refine = refine or "cf"
        self.matting_trimap = matting_trimap
        self.sizes = check_sizes(sizes or self.input_spec.sizes, self.input_spec.divisor)
        # sizes= given: the table is what the caller asked for
        self.max_side = 0 if sizes else check_max_side(max_side or 0)
        self.model = keras_model
        self.backend = backend
        self.flip = bool(flip)
        self.scales = check_scales((1.0,) if scales is None else scales)
        self.zoom = check_zoom(zoom)
        self.refine = refine or None
        self.min_region = check_min_region(min_region or 0.0)
        self.min_confidence = check_min_confidence(min_confidence or 0.0)
        if self.refine is not None:
            from humanmatting.data.refine import METHODS

            if self.refine not in METHODS:
                raise ValueError(f"refine must be one of {METHODS} or False, got {refine!r}")
        if backend == "keras":
            self._run = KerasBackend(keras_model, self.output)
        else:
            if (quantize and exported is None and isinstance(model, str)
                    and weights == "default"):
                exported = released_tflite(model, quantize)
            self._run = ExportedBackend(keras_model, backend, path=exported, threads=threads,
                                        quantize=quantize, output=self.output)
        self.zoom_weights = None   # the path the zoom passes load, if not the model's own
        self._zoom_run = self._run
        if zoom_weights == "default":   # a quantized file has no zoom counterpart released
            zoom_weights = (released_zoom_weights(model) if isinstance(model, str)
                            and weights == "default" and self.zoom and not quantize else None)
        if zoom_weights is not None and self.zoom:
            if not isinstance(model, str):
                raise ValueError("zoom_weights needs a registered model name, not a "
                                 "keras.Model")
            self.zoom_weights = str(zoom_weights)
            zoom_model = create_model(model, weights=zoom_weights)
            if backend == "keras":
                self._zoom_run = KerasBackend(zoom_model, self.output)
            else:   # exported when a still image first zooms, not before
                self._zoom_run = None
                self._zoom_backend = lambda: ExportedBackend(
                    zoom_model, backend, threads=threads, quantize=quantize,
                    output=self.output)
        self.quantize = quantize
        if self.segmenter is not None:
            self.name = AUTO

    def auto_trimap(self, image):
        """For "auto": the trimap `predict` solves, from the segmenter's probability; None
        when it sees no person."""
        prob = self.segmenter.predict(image)
        trimap = person_trimap(prob, band=self.person_band)
        return trimap if (trimap == TRIMAP_UNKNOWN).any() else None

    def preprocess(self, image, scale=1.0, trimap=None):
        """(H, W, 3) uint8 RGB (and (H, W) uint8 trimap) -> (1, h, w, C) float32 model input
        at the chosen size (times `scale`, sides rounded to the divisor)."""
        height, width = image.shape[:2]
        if self.max_side:   # the image's own size, its long side at most max_side
            shrink = min(1.0, self.max_side / max(height, width))
            size = (height * shrink, width * shrink)
        else:
            size = choose_size(height, width, self.sizes)
        h, w = scaled_size(size, scale, self.input_spec.divisor)
        interp = cv2.INTER_AREA if h * w < height * width else cv2.INTER_LINEAR
        x = cv2.resize(image, (w, h), interpolation=interp)
        if trimap is not None:
            trimap = cv2.resize(trimap, (w, h), interpolation=cv2.INTER_NEAREST)
        return to_model_input(x, self.input_spec, trimap)[None]

    def run(self, x):
        """The model alone on a prepared batch, as timed by the benchmarks.

        Args:
            x: (B, h, w, C) float32 from `preprocess` (h, w multiples of the divisor).

        Returns:
            (B, h, w) float32 person probability at the model's resolution (no flip, no
            resize back).
        """
        return _call(self._run, x)

    def predict(self, image, trimap=None):
        """Alpha matte of the people in an image.

        Args:
            image: (H, W, 3) uint8 RGB array (RGBA, gray and float [0, 1] are converted) or
                the path of an image file.
            trimap: for a trimap-matting model: (H, W) uint8 0 / 128 / 255 (background /
                unknown / foreground) or the path of such an image; its known regions are
                copied into the alpha.

        Returns:
            (H, W) float32 alpha in [0, 1], 1 = person, at the image's own size.

        Raises:
            FileNotFoundError, humanmatting.io.ImageError: a path that is missing, empty or not
                an image.
            ValueError: an array of the wrong shape or dtype, or floats that are not finite
                or lie far outside [0, 1]; a trimap given to a model that takes none, missing
                for one that does, or not a usable trimap (`humanmatting.specs.check_trimap`).
        """
        image = load_rgb(image)
        parts = self.predict_parts(image, trimap)
        alpha = parts["alpha"]
        if self.min_region or self.min_confidence:
            # after refinement: its alpha is 0 or 1 outside a thin band, so a speck is its own
            # region; in the averaged alpha before it, a soft haze (> SUPPORT) often joins
            # specks to each other or to the person (on the people-free validation bands,
            # Night: 5 of 13 taken for a person with the regions removed before refinement,
            # 4 after)
            alpha = remove_small_regions(alpha, self.min_region, prob=parts["prob"],
                                         min_confidence=self.min_confidence)
        return alpha

    def predict_parts(self, image, trimap=None):
        """`predict` before the region filters: {"prob": the model's averaged belief (flip,
        scales, known trimap regions), "alpha": it refined}, both (H, W) float32; so that
        the filters' settings can be compared on one set of passes
        (`benchmarks/defaults_sweep.py`)."""
        image = load_rgb(image)
        height, width = image.shape[:2]
        if self.segmenter is not None and trimap is None:
            trimap = self.auto_trimap(image)
            if trimap is None:   # no person: nothing to matte
                empty = np.zeros((height, width), np.float32)
                return {"prob": empty, "alpha": empty.copy()}
        if self.input_spec.trimap:
            if trimap is None:
                raise ValueError(f"{self.name} is a trimap-matting model: pass trimap= (an "
                                 "(H, W) uint8 0 / 128 / 255 array or an image file)")
            what = str(trimap) if isinstance(trimap, (str, os.PathLike)) else "trimap"
            if isinstance(trimap, (str, os.PathLike)):
                trimap = load_gray(trimap)
            trimap = check_trimap(trimap, (height, width), what)
        elif trimap is not None:
            raise ValueError(f"{self.name} takes no trimap (it is a {self.task} model)")
        alpha = self._passes(image, self.scales, trimap)
        if self.zoom and trimap is None:
            below, scales = self.zoom
            if 0 < np.count_nonzero(alpha >= 0.5) < below * alpha.size:   # small people
                if self._zoom_run is None:
                    self._zoom_run = self._zoom_backend()
                alpha = self._passes(image, scales, trimap, self._zoom_run)
        if trimap is not None:   # the user's known regions are the answer there
            alpha[trimap == TRIMAP_FG] = 1.0
            alpha[trimap == TRIMAP_BG] = 0.0
        prob = alpha   # the model's own belief, which the confidence test reads
        if self.refine:
            from humanmatting.data.refine import refine_alpha

            band = max(2, round(REFINE_BAND * max(height, width)))
            thresholds = None
            if self.matting_trimap:
                *thresholds, band = self.matting_trimap
            # SciPy's solve: pymatting's would first compile its kernels (~1 min, once)
            alpha = refine_alpha(image, alpha, method=self.refine, erode=band, dilate=band,
                                 cf_solver="scipy", thresholds=thresholds)
        return {"prob": prob, "alpha": alpha}

    def _passes(self, image, scales, trimap, runner=None):
        """The model's (or `runner`'s: the zoom weights') person probability at the image's
        size: one pass per scale (two with the flip), averaged."""
        height, width = image.shape[:2]
        total = np.zeros((height, width), np.float32)
        runner = self._run if runner is None else runner
        for scale in scales:
            x = self.preprocess(image, scale, trimap)
            alpha = _call(runner, x)[0]
            if self.flip:
                mirrored = _call(runner, x[:, :, ::-1])[0]
                alpha = (alpha + mirrored[:, ::-1]) / 2
            total += cv2.resize(alpha.astype(np.float32), (width, height),
                                interpolation=cv2.INTER_LINEAR)
        return np.clip(total / len(scales), 0.0, 1.0)

    def render(self, image, fmt="rgba", background=None, *, alpha=None, post_process=False,
               trimap=None, foreground=None):
        """One of `OUTPUT_FORMATS` for an image, as the uint8 array to write.

        Args:
            image: as for `predict`.
            fmt: "alpha" ((H, W)), "mask" ((H, W) 0 / 255), "rgba" ((H, W, 4)) or
                "composite" ((H, W, 3) on `background`: a colour or an image; white if None).
            alpha: a precomputed alpha; predicted when None (with `trimap`).
            post_process: `post_process_mask` the alpha first (a clean binary mask).
            foreground: for rgba / composite: None, or "ml" (see `composite`).
        """
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
        image = load_rgb(image)
        alpha = self.predict(image, trimap=trimap) if alpha is None else alpha
        if post_process:
            alpha = post_process_mask(alpha)
        if fmt == "alpha":
            return np.clip(np.rint(np.asarray(alpha) * 255.0), 0, 255).astype(np.uint8)
        if fmt == "mask":
            return np.where(np.asarray(alpha) >= 0.5, 255, 0).astype(np.uint8)
        if fmt == "rgba":
            return self.composite(image, None, alpha=alpha, foreground=foreground)
        return self.composite(image, (255, 255, 255) if background is None else background,
                              alpha=alpha, foreground=foreground)

    def composite(self, image, background=None, *, alpha=None, foreground=None):
        """Cuts the person out, or puts them on a new background.

        Args:
            image: as for `predict`.
            background: None for an RGBA cut-out; an (r, g, b) colour; or an RGB image (array
                or path), resized and centre-cropped to cover the image.
            alpha: a precomputed (H, W) alpha for `image`; predicted when None.
            foreground: None (the photo's own colours), or "ml": pymatting's multilevel
                foreground estimation (`estimate_foreground_ml`) solves for the person's
                colours where the alpha is soft, so that the old background does not bleed
                into hair (its numba kernels compile for about a minute on first use).

        Returns:
            (H, W, 4) uint8 RGBA when background is None, else (H, W, 3) uint8 RGB.
        """
        image = load_rgb(image)
        alpha = self.predict(image) if alpha is None else np.asarray(alpha, np.float32)
        if alpha.shape != image.shape[:2]:
            raise ValueError(f"alpha shape {alpha.shape} does not match image {image.shape[:2]}")
        if foreground not in (None, "none", "ml"):
            raise ValueError(f"foreground must be None, 'none' or 'ml', got {foreground!r}")
        if foreground == "ml":
            image = estimate_foreground(image, alpha)
        if background is None:
            a = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
            return cv2.merge((image, a))
        height, width = image.shape[:2]
        # image x alpha + background x (1 - alpha) in float32, rounded half to even; OpenCV's
        # per-channel arithmetic gives the same bits as NumPy's broadcasting, 2-3x faster on
        # video frames
        alpha = np.ascontiguousarray(alpha, np.float32)
        a3 = cv2.merge((alpha, alpha, alpha))
        rest = np.subtract(np.float32(1.0), a3)
        if isinstance(background, (tuple, list)) and len(background) == 3 and all(
                np.isscalar(c) for c in background):
            if not all(0 <= c <= 255 for c in background):
                raise ValueError(f"background colour {tuple(background)} must be 0-255 RGB")
            rest = cv2.multiply(rest, tuple(float(c) for c in background) + (0.0,))
        else:
            bg = cover(load_rgb(background, "background"), height, width)
            rest = cv2.multiply(rest, bg.astype(np.float32))
        out = cv2.add(cv2.multiply(image.astype(np.float32), a3), rest)
        np.rint(out, out=out)
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)


__all__ = ["AUTO", "AUTO_MATTING_MODEL", "BACKENDS", "Matter", "check_sizes", "choose_size",
           "estimate_foreground", "model_trimap", "post_process_mask", "scaled_size"]
