"""Training: typed config, the resumable `fit`, weight transfer and release export."""

from humanmatting.training.config import DataSource, TrainConfig, load_config

__all__ = ["DataSource", "TrainConfig", "fit", "load_config"]


def fit(config, **kwargs):
    """See `humanmatting.training.fit.fit` (imported on use: it imports TensorFlow)."""
    import importlib

    # the submodule `fit`, not this function of the same name
    return importlib.import_module("humanmatting.training.fit").fit(config, **kwargs)
