"""humanmatting: a Keras 3 model zoo for human (portrait) matting.

Example:
    >>> import humanmatting
    >>> matter = humanmatting.Matter()
    >>> alpha = matter.predict("photo.jpg")          # (H, W) float32 in [0, 1]
    >>> cutout = matter.composite("photo.jpg")       # (H, W, 4) uint8 RGBA

The public names below are imported on first use, so `import humanmatting` (and the command
line's argument checks) does not pay for importing TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "DEFAULT_MODEL": "humanmatting.registry",
    "DEFAULT_GRAY_MODEL": "humanmatting.registry",
    "create_model": "humanmatting.registry",
    "list_models": "humanmatting.registry",
    "register_model": "humanmatting.registry",
    "fuse": "humanmatting.fusion",
    "Matter": "humanmatting.inference",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'humanmatting' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
