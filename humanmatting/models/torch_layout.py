"""Checkpoints of the original PyTorch code: reading a state dict and moving kernels between
PyTorch's layouts and Keras's (used by the U^2-Net and IndexNet loaders)."""

from pathlib import Path

import numpy as np

#: Keras kernel axes -> PyTorch's: "conv" (kH, kW, in, out) <-> (out, in, kH, kW);
#: "dw" (kH, kW, C, 1) <-> (C, 1, kH, kW); "plain" (biases, BatchNorm) unchanged
_TO_TORCH = {"conv": (3, 2, 0, 1), "dw": (2, 3, 0, 1)}
_FROM_TORCH = {"conv": (2, 3, 1, 0), "dw": (2, 3, 0, 1)}


def to_torch(value, layout="conv"):
    """A Keras kernel (or any weight, layout "plain") in the original code's layout."""
    axes = _TO_TORCH.get(layout)
    return np.asarray(value) if axes is None else np.transpose(value, axes)


def from_torch(value, layout="conv"):
    """An original-code tensor in Keras's layout (the inverse of `to_torch`)."""
    axes = _FROM_TORCH.get(layout)
    return np.asarray(value) if axes is None else np.transpose(value, axes)


def read_state_dict(path):
    """{key: NumPy array} from a `.npz`, `.safetensors` (the `safetensors` package) or
    `.pth` / `.pt` / `.tar` file (PyTorch, `pip install torch`; loaded with
    weights_only=True; a `state_dict` entry is unwrapped). A DataParallel `module.` prefix is
    removed.

    Raises:
        ValueError: the file cannot be read as a state dict, or needs a missing package.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                state = {k: data[k] for k in data.files}
        elif suffix == ".safetensors":
            from safetensors.numpy import load_file

            state = load_file(str(path))
        else:
            import torch

            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
            loaded = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else loaded
            state = {k: v.detach().cpu().numpy() for k, v in loaded.items()}
    except ImportError as err:
        raise ValueError(f"{path}: reading {suffix} files needs the {err.name!r} package "
                         f"(pip install {err.name})") from None
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: not a readable state dict ({err})") from None
    return {k[len("module."):] if k.startswith("module.") else k: np.asarray(v)
            for k, v in state.items()}


__all__ = ["from_torch", "read_state_dict", "to_torch"]
