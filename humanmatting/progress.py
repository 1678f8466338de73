"""Progress bars: tqdm on stderr, drawn only when stderr is a terminal (logs, pipes and CI
stay quiet). The one place the bar's look and its quiet rule live."""

import sys


def bar(iterable=None, *, total=None, unit="image", desc=None, stream=None):
    """A tqdm bar over `iterable` (or one to `update` by hand, of `total` steps)."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    return tqdm(iterable, total=total, unit=unit, desc=desc, file=stream, dynamic_ncols=True,
                disable=not stream.isatty(), leave=True)


__all__ = ["bar"]
