"""humanmatting: a Keras 3 model zoo for human (portrait) matting.

Example:
    >>> import humanmatting
    >>> matter = humanmatting.Matter()
    >>> alpha = matter.predict("photo.jpg")          # (H, W) float32 in [0, 1]
    >>> cutout = matter.composite("photo.jpg")       # (H, W, 4) uint8 RGBA
"""

__version__ = "0.1.0"

from humanmatting.fusion import fuse
from humanmatting.inference import Matter
from humanmatting.registry import DEFAULT_MODEL, create_model, list_models, register_model

__all__ = ["DEFAULT_MODEL", "Matter", "create_model", "fuse", "list_models", "register_model"]
