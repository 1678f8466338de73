"""One augmentation and one trainer on every backend: the tf.data and PyDataset paths give the
same batches, samples keep fg / bg / trimap, and `humanmatting train` runs on JAX in a process
where TensorFlow cannot be imported, writing weights the TensorFlow side fuses and exports."""

import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from conftest import make_folder_dataset, make_person_image
from humanmatting.data import pipeline
from humanmatting.data.augment import AugmentConfig, augment_sample, make_sample
from humanmatting.data.readers import read_dataset
from humanmatting.specs import InputSpec, OutputSpec

SIZES = [(64, 64), (64, 96), (96, 64)]
TINY = {"filters": [4, 4, 4, 4, 4], "bottleneck_filters": 4, "edge_filters": 4}


def _store(tmp_path):
    make_folder_dataset(tmp_path / "d", count=5)
    make_folder_dataset(tmp_path / "s", count=3, soft=True, seed=50)
    return pipeline.ImageStore([read_dataset(tmp_path / "d"), read_dataset(tmp_path / "s")])


@pytest.mark.parametrize("spec", [InputSpec(), InputSpec(channels=1, normalisation="0-255"),
                                  InputSpec(normalisation="imagenet", trimap=True)])
def test_tf_data_and_pydataset_paths_give_the_same_batches(tmp_path, spec):
    store = _store(tmp_path)
    backgrounds = [make_person_image(50, 70, seed=9)[::-1].copy()]
    kwargs = dict(input_spec=spec, batch_size=2, steps_per_epoch=3, epochs=2, seed=5,
                  sizes=SIZES, backgrounds=backgrounds,
                  augment=AugmentConfig(composite=0.5, trimap=spec.trimap))
    tf_batches = [(x.numpy(), y.numpy()) for x, y in
                  pipeline.train_dataset(store, [0.6, 0.4], backend="tensorflow", **kwargs)]
    py = pipeline.train_dataset(store, [0.6, 0.4], backend="jax", **kwargs)
    py_batches = []
    for _ in range(2):   # two epochs, advanced as Keras does
        py_batches += [py[i] for i in range(len(py))]
        py.on_epoch_end()
    assert len(tf_batches) == len(py_batches) == 6
    for (xt, yt), (xp, yp) in zip(tf_batches, py_batches):
        np.testing.assert_array_equal(xt, xp)
        np.testing.assert_array_equal(yt, yp)
        assert xt.shape[-1] == spec.model_channels and tuple(xt.shape[1:3]) in SIZES
    assert len({tuple(x.shape[1:3]) for x, _ in tf_batches}) >= 2
    # a resumed run (epoch 1 alone) sees epoch 1 of the full run
    resumed = pipeline.train_dataset(store, [0.6, 0.4], backend="jax", initial_epoch=1,
                                     **kwargs)
    np.testing.assert_array_equal(resumed[0][0], py_batches[3][0])


def test_dict_outputs_get_one_target_each(tmp_path):
    store = _store(tmp_path)
    spec = OutputSpec(kind="sigmoid", primary="fused", sides=("side1", "side2"))
    x, y = pipeline.BatchMaker(store, [1, 1], input_spec=InputSpec(), batch_size=2,
                               steps_per_epoch=1, sizes=SIZES, output_spec=spec).batch(0, 0)
    assert sorted(y) == ["fused", "side1", "side2"]
    assert all(t.shape == x.shape[:3] + (2,) for t in y.values())


def test_augmented_samples_keep_fg_bg_trimap_and_composite_last():
    rng = np.random.default_rng(0)
    image = make_person_image(90, 70, seed=1)
    alpha = cv2.GaussianBlur(((image[..., 0] > 150) * 255).astype(np.uint8), (5, 5), 0)
    sample = make_sample(image, alpha, refined=True)
    background = np.full((40, 120, 3), (0, 200, 0), np.uint8)
    aug = AugmentConfig(composite=1.0, trimap=True, trimap_band=(2, 2), crop_background=True)
    out = augment_sample(rng, sample, (64, 96), aug, [background])
    assert out["image"].shape == out["fg"].shape == out["bg"].shape == (64, 96, 3)
    assert out["alpha"].shape == out["trimap"].shape == (64, 96) and out["refined"]
    a = out["alpha"][..., None]
    composite = a * out["fg"].astype(np.float32) + (1 - a) * out["bg"].astype(np.float32)
    # composited after the colour change, from the same jittered fg and bg (rounding: 1)
    assert np.abs(composite - out["image"]).max() <= 1.0
    assert out["bg"][..., 1].mean() > 2 * out["bg"][..., 0].mean()   # the green background
    assert set(np.unique(out["trimap"]).tolist()) <= {0, 128, 255}
    assert (out["trimap"][(out["alpha"] > 0.05) & (out["alpha"] < 0.95)] == 128).all()
    # the same generator state gives the same sample
    again = augment_sample(np.random.default_rng(0), sample, (64, 96), aug, [background])
    for key in ("image", "alpha", "fg", "bg", "trimap"):
        np.testing.assert_array_equal(out[key], again[key])


BLOCK_TENSORFLOW = textwrap.dedent('''
    import importlib.abc
    import sys


    class _NoTensorFlow(importlib.abc.MetaPathFinder):
        """As on the GPU machine: TensorFlow is not installed."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_datasets", "tf2onnx",
                                      "tf_keras"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None


    sys.meta_path.insert(0, _NoTensorFlow())
''')


@pytest.mark.slow
def test_jax_trains_without_tensorflow_and_tensorflow_fuses_and_exports(tmp_path):
    pytest.importorskip("jax")
    import humanmatting
    from humanmatting.export import export
    from humanmatting.fusion import fuse

    data = make_folder_dataset(tmp_path / "data", count=12, shape=(80, 64))
    config = tmp_path / "tiny.yaml"
    config.write_text(textwrap.dedent(f"""\
        model: likeunet_dark_light
        overrides: {TINY}
        data: [{{path: {data}, weight: 1}}]
        sizes: [[64, 64], [64, 96]]
        batch_size: 2
        steps_per_epoch: 3
        epochs: 2
        val_fraction: 0.25
        learning_rate: 0.01
        image_cache_short_side: 96
        out_dir: {tmp_path / 'run'}
        export: true
        """))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"),
                                          os.environ.get("PYTHONPATH", "")])}
    check = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env,
                           capture_output=True, text=True)
    assert check.returncode != 0 and "blocked by the test" in check.stderr
    result = subprocess.run([sys.executable, "-m", "humanmatting", "train", "--config",
                             str(config)], env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best val_iou" in result.stdout
    assert "export: skipped on the jax backend" in result.stdout + result.stderr
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    for term in ("loss", "loss_ce", "loss_iou", "loss_alpha_l1", "loss_gradient", "val_iou"):
        assert term in header, header
    assert len(history) == 3   # two epochs

    # TensorFlow side: the JAX-trained training-form weights load, fuse and export with parity
    model = humanmatting.create_model("likeunet_dark_light", weights=tmp_path / "run" /
                                      "best.weights.h5", deploy=False, **TINY)
    fused = fuse(model)
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 96, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(fused(x)), np.asarray(model(x, training=False)),
                               atol=1e-5)
    result = export(fused, "onnx", tmp_path / "m.onnx", check=True,
                    input_spec=humanmatting.registry.get_preset("likeunet_dark_light").input)
    assert result["check"]["max_abs_diff"] < 1e-4
