"""The checks every registered model must pass (config round trip, shapes, save/load, fit)."""

import keras
import numpy as np


def _outputs(model, x):
    out = model(x, training=False)
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    return np.asarray(out)


def _assert_close(a, b, atol):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], atol=atol)
    else:
        np.testing.assert_allclose(a, b, atol=atol)


def check_model(build, *, input_shape, output_shape, tmp_path, fit_loss=None, seed=0):
    """Runs the common checks on a freshly built model.

    Args:
        build: zero-argument function returning a new keras.Model in training form.
        input_shape: (B, H, W, C) of a non-square test input.
        output_shape: expected output shape for that input.
        tmp_path: folder for the saved model.
        fit_loss: loss for the two-step fit (default sparse categorical cross entropy on a
            2-class output).
    """
    assert input_shape[1] != input_shape[2], "use a non-square input"
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build()
    x = rng.uniform(0.0, 1.0, input_shape).astype("float32")

    # Shapes on a non-square input.
    y = _outputs(model, x)
    assert y.shape == tuple(output_shape)
    assert np.all(np.isfinite(y))

    # Config round trip: the rebuilt model has the same config and, with the same weights,
    # the same outputs.
    clone = model.__class__.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    _assert_close(_outputs(clone, x), y, 1e-6)

    # .keras save/load with equal outputs.
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    _assert_close(_outputs(loaded, x), y, 1e-6)

    # Two steps of fit on a few generated samples: finite, decreasing loss.
    batch = input_shape[0]
    xs = rng.uniform(0.0, 1.0, (batch * 2,) + tuple(input_shape[1:])).astype("float32")
    masks = (xs[..., 0] > 0.5).astype("int32")  # learnable pixel by pixel
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=fit_loss or keras.losses.SparseCategoricalCrossentropy())
    history = model.fit(xs, masks, batch_size=batch * 2, epochs=2, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)), losses
    assert losses[1] < losses[0], losses
    return model
