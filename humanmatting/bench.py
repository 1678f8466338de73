"""Latency of a model on a backend, next to a peer TFLite model, in one process."""

import time

import numpy as np


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


def bench(model, size, backend="keras", *, threads=None, runs=50, peer_tflite=None,
          quantize=None):
    """Times the model alone (input already prepared) at `size` = (H, W).

    Returns:
        {label: {median_ms, p90_ms, fps}} for the model and, when given, the peer (run at its
        own input size, as its authors do).
    """
    from humanmatting.inference import Matter

    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    matter = Matter(model, backend=backend, sizes=[size], threads=threads, quantize=quantize)
    x = np.random.default_rng(0).uniform(
        0, 255 * matter.input_spec.scale, (1, *size, matter.input_spec.channels)
    ).astype(np.float32)
    label = backend + (f" {quantize}" if quantize else "")
    out = {f"{matter.name} ({label}, {size[0]}x{size[1]})": time_calls(
        matter.run, x, runs)}
    if peer_tflite:
        from humanmatting.evaluation import TFLitePeer

        peer = TFLitePeer(peer_tflite, threads=threads or 2)
        px = np.random.default_rng(0).uniform(0, 1, (1, peer.height, peer.width,
                                                     peer.channels)).astype(np.float32)
        out[f"peer {peer_tflite} ({peer.height}x{peer.width})"] = time_calls(peer.run, px, runs)
    return out
