"""Reading and writing images and videos: clear errors for bad input, atomic writes."""

import contextlib
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")

#: what `Matter.render` (and so `predict --format` and the service) makes: the alpha as 8-bit
#: gray, a binary mask (alpha >= 0.5), an RGBA cut-out, the person on a new background
OUTPUT_FORMATS = ("alpha", "mask", "rgba", "composite")

#: Named colours accepted wherever a background colour is asked for.
COLORS = {"green": (0, 177, 64), "blue": (0, 71, 187), "white": (255, 255, 255),
          "black": (0, 0, 0), "gray": (128, 128, 128), "red": (220, 20, 60)}


class ImageError(ValueError):
    """An input file that cannot be used; the message names the file and the problem."""


def sample_image_path():
    """Path of the bundled sample photo (NASA astronaut Eileen Collins, public domain)."""
    return Path(__file__).resolve().parent / "assets" / "astronaut.jpg"


def check_file(path):
    """Raises FileNotFoundError / ImageError unless `path` is a non-empty regular file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: file is empty")
    return path


def read_image(path):
    """Reads an image file as RGB.

    Args:
        path: an image file OpenCV can decode.

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageError: the file is empty or not a decodable image.
    """
    path = check_file(path)
    return decode_image(np.fromfile(path, np.uint8), name=path)


def truncation_problem(data):
    """Why encoded image bytes are cut short, or None: a JPEG without its end-of-image marker
    or a PNG without its IEND chunk (OpenCV decodes a cut JPEG into a gray-filled image
    without an error). Other formats are left to the decoder."""
    view = memoryview(np.ascontiguousarray(data, np.uint8)).cast("B")
    head = bytes(view[:8])
    if head[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in bytes(view[-4096:]):
        return "truncated JPEG (no end-of-image marker)"
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in bytes(view[-64:]):
        return "truncated PNG (no IEND chunk)"
    return None


def decode_image(data, name="image", *, max_pixels=None, flags=cv2.IMREAD_COLOR):
    """Encoded image bytes (a file's or an upload's) as (H, W, 3) uint8 RGB, or (H, W) for
    `flags=cv2.IMREAD_GRAYSCALE`.

    Raises:
        ImageError naming `name`: empty, truncated, not decodable, or more than `max_pixels`.
    """
    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if data.size == 0:
        raise ImageError(f"{name}: file is empty")
    if (problem := truncation_problem(data)):
        raise ImageError(f"{name}: not a readable image ({problem})")
    image = cv2.imdecode(data, flags)
    if image is None:
        raise ImageError(f"{name}: not a readable image (corrupt or unsupported format)")
    if max_pixels and image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(f"{name}: {image.shape[1]}x{image.shape[0]} is more than "
                         f"{max_pixels} pixels")
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def as_rgb(image, what="image"):
    """Validates an array image and returns it as (H, W, 3) uint8 RGB.

    Accepts (H, W, 3) RGB, (H, W, 4) RGBA (alpha dropped) and (H, W) or (H, W, 1) grayscale,
    uint8, or float in [0, 1].
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{what} must be (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) gray; "
                         f"got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"{what} must be uint8 or float in [0, 1], got {image.dtype}")
        if not np.isfinite(image).all():
            raise ValueError(f"{what} holds NaN or infinite values")
        low, high = float(image.min()), float(image.max())
        # a little outside [0, 1] (interpolation overshoot) is clipped; far outside is a
        # 0..255 image passed as float, which clipping would turn white
        if low < -0.5 or high > 1.5:
            raise ValueError(f"{what} is float with values {low:g}..{high:g}; floats must be in "
                             "[0, 1] (divide a 0..255 image by 255, or pass it as uint8)")
        image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


def load_rgb(image, what="image"):
    """A path or an array to (H, W, 3) uint8 RGB."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    return as_rgb(image, what)


def load_gray(path):
    """An image file as (H, W) uint8, one channel as stored (a trimap, a mask)."""
    path = check_file(path)
    return decode_image(np.fromfile(path, np.uint8), name=path, flags=cv2.IMREAD_GRAYSCALE)


def parse_color(text):
    """'green', '#00b140', '0,177,64' -> (r, g, b); ValueError otherwise."""
    text = text.strip().lower()
    if text in COLORS:
        return COLORS[text]
    if text.startswith("#") and len(text) == 7:
        try:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            pass
    parts = text.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)
    raise ValueError(f"{text!r} is not a colour: use a name ({', '.join(COLORS)}), "
                     "#rrggbb or r,g,b")


def parse_background(text):
    """A --background value: a colour, or the path of an image (read as RGB)."""
    try:
        return parse_color(text)
    except ValueError:
        if Path(text).exists() or Path(text).suffix.lower() in IMAGE_EXTENSIONS:
            return read_image(text)
        raise


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_exactly(stream, count):
    data = bytearray()
    while len(data) < count:
        chunk = stream.read(count - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def iter_stream_images(stream, raw_size=None, name="stdin"):
    """The images of a binary stream (a pipe), as (H, W, 3) uint8 RGB, one at a time.

    Args:
        stream: a binary file object (`sys.stdin.buffer`).
        raw_size: None: the stream is one encoded image (PNG, JPEG, ...) or PNGs one after
            another (`ffmpeg -f image2pipe -c:v png -`); (W, H): raw RGB24 frames of W x H
            (`ffmpeg -f rawvideo -pix_fmt rgb24 -`).

    Raises:
        ImageError naming `name` and the frame: a cut-short frame, an undecodable image.
    """
    if raw_size is not None:
        width, height = raw_size
        size = width * height * 3
        index = 0
        while True:
            data = _read_exactly(stream, size)
            if not data:
                return
            if len(data) < size:
                raise ImageError(f"{name}: frame {index} has {len(data)} of its {size} bytes "
                                 f"({width}x{height} RGB24); the stream was cut short")
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
            index += 1
    head = _read_exactly(stream, 8)
    if head != PNG_SIGNATURE:   # one image of another format: all of the stream
        yield decode_image(head + stream.read(), name)
        return
    index = 0
    while head:
        if head != PNG_SIGNATURE:
            raise ImageError(f"{name}: image {index} is not a PNG (a stream of images must "
                             "be PNGs one after another)")
        data = bytearray(head)
        while True:   # PNG chunks: length, type, data, CRC, up to IEND
            header = _read_exactly(stream, 8)
            if len(header) < 8:
                raise ImageError(f"{name}: image {index}: truncated PNG (no IEND chunk)")
            length = int.from_bytes(header[:4], "big")
            body = _read_exactly(stream, length + 4)
            data += header + body
            if len(body) < length + 4:
                raise ImageError(f"{name}: image {index}: truncated PNG (no IEND chunk)")
            if header[4:] == b"IEND":
                break
        yield decode_image(bytes(data), f"{name} image {index}")
        index += 1
        head = _read_exactly(stream, 8)


def encode_png(image):
    """(H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA uint8 -> PNG bytes."""
    image = np.asarray(image)
    if image.ndim == 3:
        code = cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        image = cv2.cvtColor(image, code)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ImageError("PNG encoding failed")
    return data.tobytes()


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` (same extension) that replaces it on success.

    On error the temporary file is removed and `path` is left as it was, so a reader never sees
    a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name ends with the full target name, so libraries that check extensions
    # (".png", ".weights.h5", ".keras") accept it.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_image(path, image):
    """Writes an image atomically.

    Args:
        path: destination; the format follows the extension (PNG keeps an alpha channel).
        image: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA uint8.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    try:
        ok, encoded = cv2.imencode(Path(path).suffix, image)
    except cv2.error:
        ok = False
    if not ok:
        raise ImageError(f"{path}: could not write an image with extension "
                         f"{Path(path).suffix!r}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def alpha_to_uint8(alpha):
    """(H, W) float alpha in [0, 1] -> (H, W) uint8."""
    return np.clip(np.rint(np.asarray(alpha) * 255.0), 0, 255).astype(np.uint8)
