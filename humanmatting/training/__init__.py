"""Training: typed config, the resumable `fit`, weight transfer and release export."""

from humanmatting.training.config import DataSource, TrainConfig, load_config

__all__ = ["DataSource", "TrainConfig", "fit", "load_config"]


def fit(config, **kwargs):
    """See `humanmatting.training.fit.fit` (imported on use: it imports TensorFlow)."""
    from humanmatting.training.fit import fit as _fit

    return _fit(config, **kwargs)
