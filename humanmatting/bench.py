"""Latency of a model on a backend, next to a peer TFLite model, in one process."""

import time

import numpy as np


def bench_image(size):
    """A smooth random (H, W, 3) uint8 RGB image of `size` to time models on."""
    import cv2

    small = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC)


def bench_trimap(size):
    """A (H, W) trimap of `size` with a band of unknown pixels, for trimap models."""
    from humanmatting.specs import make_trimap

    mask = np.zeros(size, bool)
    mask[size[0] // 4:, size[1] // 4:3 * size[1] // 4] = True
    return make_trimap(mask, erode=4, dilate=4)


def parse_size(text):
    """'256x320' -> (256, 320) (height x width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} must look like HxW, e.g. 256x256") from None
    return h, w


def time_calls(fn, x, runs=50, warmup=5):
    """Per-call latencies in ms: median, p90 and FPS (1000 / median)."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - start) * 1000)
    median = float(np.median(times))
    return {"median_ms": median, "p90_ms": float(np.percentile(times, 90)),
            "fps": 1000.0 / median}


def set_tensorflow_threads(threads):
    """TensorFlow's intra- and inter-op thread pools, both `threads` wide. They can be set
    once per process, before TensorFlow runs anything: ValueError after that, unless they
    already have this width."""
    import tensorflow as tf

    cfg = tf.config.threading
    if (cfg.get_intra_op_parallelism_threads(),
            cfg.get_inter_op_parallelism_threads()) == (threads, threads):
        return
    try:
        cfg.set_intra_op_parallelism_threads(threads)
        cfg.set_inter_op_parallelism_threads(threads)
    except RuntimeError as err:
        raise ValueError(f"threads={threads}: TensorFlow already runs in this process with "
                         f"other thread pools ({err})") from None


def bench(model, size, backend="keras", *, threads=None, runs=50, peer_tflite=None,
          quantize=None):
    """Times the model alone (input already prepared) at `size` = (H, W).

    Returns:
        {label: {median_ms, p90_ms, fps}} for the model and, when given, the peer (run at its
        own input size, as its authors do).
    """
    from humanmatting.evaluation import TFLitePeer
    from humanmatting.inference import AUTO, Matter, check_sizes
    from humanmatting.registry import get_preset

    # what can be wrong with the request fails before TensorFlow's thread pools are fixed
    if isinstance(model, str) and model != AUTO:
        check_sizes([size], get_preset(model).input.divisor)
    peer = TFLitePeer(peer_tflite, threads=threads or 2) if peer_tflite else None
    if threads:
        set_tensorflow_threads(threads)
    matter = Matter(model, backend=backend, sizes=[size], threads=threads, quantize=quantize)
    x = matter.preprocess(bench_image(size), trimap=bench_trimap(size) if
                          matter.input_spec.trimap else None)
    label = backend + (f" {quantize}" if quantize else "")
    out = {f"{matter.name} ({label}, {size[0]}x{size[1]})": time_calls(
        matter.run, x, runs)}
    if peer is not None:
        px = np.random.default_rng(0).uniform(0, 1, (1, peer.height, peer.width,
                                                     peer.channels)).astype(np.float32)
        out[f"peer {peer_tflite} ({peer.height}x{peer.width})"] = time_calls(peer.run, px, runs)
    return out
