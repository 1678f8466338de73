"""Load on `humanmatting serve` next to the same model called in-process, in one run.

    python benchmarks/load.py [--model likeunet_night_lite] [--size 256x256] \\
        [--clients 1 4 16] [--requests 200] [--memory-requests 1000] [--threads 2]

Starts the service on a free local port (one worker, the model's plain pass: no flip, one
scale, no refinement, as a service of video frames would run), then for each number of
concurrent clients sends `--requests` POST /v1/matte requests of the bundled photo resized to
--size and prints requests/s and p50 / p99 latency; beside them, the same image through
`Matter.predict` in this process (one caller). Last, the service's resident memory before and
after `--memory-requests` more requests (it must not grow).
"""

import argparse
import concurrent.futures
import os
import socket
import subprocess
import sys
import time
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from humanmatting.bench import parse_size  # noqa: E402
from humanmatting.cli.common import positive_int  # noqa: E402
from humanmatting.io import read_image, sample_image_path  # noqa: E402

PLAIN = ["--no-flip", "--scales", "1", "--no-refine", "--min-region", "0"]


def post(url, body):
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "image/png"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as answer:
        answer.read()
        ok = answer.status == 200
    return time.perf_counter() - start, ok


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_load(url, body, clients, count):
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        results = list(pool.map(lambda _: post(url, body), range(count)))
        wall = time.perf_counter() - start
    times = np.array([t for t, _ in results]) * 1000
    return {"rps": count / wall, "p50": np.percentile(times, 50),
            "p99": np.percentile(times, 99), "failed": sum(not ok for _, ok in results)}


def start_server(model, threads):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "humanmatting", "serve", "--port", str(port),
                             "--model", model, "--models", model, "--threads", str(threads),
                             "--queue", "256", *PLAIN],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service stopped: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=5):
                return proc, base
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the service did not start within 300 s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="likeunet_night_lite")
    parser.add_argument("--size", default="256x256", help="HxW of the image sent")
    parser.add_argument("--clients", type=positive_int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=positive_int, default=200)
    parser.add_argument("--memory-requests", type=positive_int, default=1000)
    parser.add_argument("--threads", type=positive_int, default=2)
    args = parser.parse_args(argv)
    try:
        height, width = parse_size(args.size)
        from humanmatting.registry import get_preset

        get_preset(args.model)
    except ValueError as err:
        print(f"load.py: {err}", file=sys.stderr)
        return 1
    image = cv2.resize(read_image(sample_image_path()), (width, height),
                       interpolation=cv2.INTER_AREA)
    body = cv2.imencode(".png", image[..., ::-1])[1].tobytes()

    proc, base = start_server(args.model, args.threads)
    try:
        url = base + "/v1/matte?format=alpha"
        post(url, body)   # warm-up
        rows = {clients: run_load(url, body, clients, args.requests)
                for clients in args.clients}
        before = rss_mib(proc.pid)
        memory = run_load(url, body, 4, args.memory_requests)
        after = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    from humanmatting.cli.common import import_tensorflow

    import_tensorflow()
    from humanmatting.inference import Matter

    matter = Matter(args.model, flip=False, scales=(1.0,), refine=False, min_region=0,
                    threads=args.threads)
    matter.predict(image)
    times = []
    for _ in range(args.requests):
        start = time.perf_counter()
        cv2.imencode(".png", (matter.predict(image) * 255).astype(np.uint8))
        times.append((time.perf_counter() - start) * 1000)
    inproc = {"rps": 1000 / np.mean(times), "p50": np.percentile(times, 50),
              "p99": np.percentile(times, 99)}

    print(f"{args.model}, {width}x{height} PNG, {args.threads} threads, "
          f"{args.requests} requests per row")
    print(f"{'caller':28s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'failed':>7s}")
    print(f"{'in-process Matter, 1':28s} {inproc['rps']:8.1f} {inproc['p50']:8.1f} "
          f"{inproc['p99']:8.1f} {0:7d}")
    for clients, r in rows.items():
        print(f"{f'HTTP, {clients} client(s)':28s} {r['rps']:8.1f} {r['p50']:8.1f} "
              f"{r['p99']:8.1f} {r['failed']:7d}")
    print(f"service memory: {before:.0f} MiB before, {after:.0f} MiB after "
          f"{args.memory_requests} more requests ({after - before:+.0f} MiB; "
          f"{memory['failed']} failed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
