"""Export to SavedModel, ONNX and TFLite agrees with Keras; Matter's onnx/tflite backends."""

import os
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import humanmatting
from conftest import make_person_image, randomize_batchnorm
from humanmatting.export import export, load_runner
from humanmatting.inference import Matter

TINY = {"filters": [4, 8, 8, 8, 8], "bottleneck_filters": 8, "edge_filters": 4}


@pytest.fixture(scope="module")
def tiny_acnet():
    """A small Night-Lite in training form with random BatchNorm statistics."""
    keras.utils.set_random_seed(2)   # fixed: some random kernels make int8 files XNNPACK rejects
    model = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False, **TINY)
    randomize_batchnorm(model, seed=11)
    return model


@pytest.mark.parametrize("fmt", ["saved_model", "onnx", "tflite"])
def test_fp32_export_matches_keras_on_non_square_input(tmp_path, tiny_acnet, fmt):
    out = tmp_path / ("model" if fmt == "saved_model" else f"model.{fmt}")
    result = export(tiny_acnet, fmt, out, check=True)   # training form: fused first
    assert result["check"]["max_abs_diff"] < 1e-4
    assert result["check"]["input_shape"][1] != result["check"]["input_shape"][2]
    assert out.exists()


@pytest.mark.parametrize("quantize", ["fp16", "int8"])
def test_quantized_tflite_reports_agreement(tmp_path, tiny_acnet, quantize):
    images = [make_person_image(120, 90, seed=i) for i in range(4)]
    result = export(tiny_acnet, "tflite", tmp_path / "q.tflite", quantize=quantize,
                    representative=images, check=True)
    assert 0.0 <= result["check"]["iou_thresholded"] <= 1.0
    assert result["check"]["max_abs_diff"] < (0.01 if quantize == "fp16" else 0.5)
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "q.tflite"))
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert (np.float16 if quantize == "fp16" else np.int8) in dtypes   # weights stored quantized
    fp32 = export(tiny_acnet, "tflite", tmp_path / "f.tflite")
    assert fp32["quantize"] is None


def test_int8_file_that_xnnpack_rejects_still_runs(tmp_path):
    """Seed 0 gives int8 scales that TFLite 2.21's XNNPACK delegate fails to prepare."""
    import tensorflow as tf

    from humanmatting.export import load_runner

    keras.utils.set_random_seed(0)
    model = humanmatting.create_model("likeunet_night_lite", weights=None, deploy=False, **TINY)
    randomize_batchnorm(model, seed=11)
    images = [make_person_image(120, 90, seed=i) for i in range(4)]
    path = tmp_path / "q.tflite"
    export(model, "tflite", path, quantize="int8", representative=images)
    x = np.random.default_rng(1).uniform(0, 1, (1, 64, 96, 3)).astype(np.float32)
    plain = tf.lite.Interpreter(model_path=str(path), experimental_op_resolver_type=(
        tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    plain.resize_tensor_input(0, x.shape)
    plain.allocate_tensors()
    plain.set_tensor(plain.get_input_details()[0]["index"], x)
    plain.invoke()
    expected = plain.get_tensor(plain.get_output_details()[0]["index"])[..., 1]
    runner = load_runner(path, "tflite")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = runner(x)
    np.testing.assert_allclose(got, expected, atol=1 / 128)   # int8 output steps are 1/256
    fell_back = [w for w in caught if "XNNPACK delegate cannot prepare" in str(w.message)]
    assert runner.delegated != bool(fell_back)   # warned exactly when it left the delegate
    from humanmatting.evaluation import TFLitePeer   # a peer file gets the same fallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = TFLitePeer(path)
        np.testing.assert_allclose(peer.run(x)[..., 1], expected, atol=1 / 128)
    assert peer.runner.delegated == runner.delegated


def test_tflite_runner_falls_back_when_the_delegate_fails(tmp_path, tiny_acnet, monkeypatch):
    from humanmatting import export as export_module

    path = tmp_path / "f.tflite"
    export(tiny_acnet, "tflite", path)
    x = np.random.default_rng(2).uniform(0, 1, (1, 64, 96, 3)).astype(np.float32)
    expected = export_module.load_runner(path, "tflite")(x)
    real = export_module.TFLiteRunner._allocate

    def failing(self, shape):   # the delegate's failure, as TFLite reports it
        if self.delegated:
            raise RuntimeError("failed to create XNNPACK runtimeNode number 52 "
                               "(TfLiteXNNPackDelegate) failed to prepare.")
        real(self, shape)

    monkeypatch.setattr(export_module.TFLiteRunner, "_allocate", failing)
    runner = export_module.load_runner(path, "tflite")
    with pytest.warns(RuntimeWarning, match=r"f\.tflite: TFLite's XNNPACK delegate cannot"):
        got = runner(x)
    assert not runner.delegated
    np.testing.assert_allclose(got, expected, atol=1e-5)
    monkeypatch.setattr(export_module.TFLiteRunner, "_allocate",
                        lambda self, shape: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):   # other errors are not swallowed
        export_module.load_runner(path, "tflite")(x)


def test_export_errors(tmp_path, tiny_acnet):
    with pytest.raises(ValueError, match="format must be one of"):
        export(tiny_acnet, "coreml", tmp_path / "x")
    with pytest.raises(ValueError, match="tflite format only"):
        export(tiny_acnet, "onnx", tmp_path / "x.onnx", quantize="int8")
    (tmp_path / "sm").mkdir()
    with pytest.raises(FileExistsError, match="sm exists"):
        export(tiny_acnet, "saved_model", tmp_path / "sm")
    # A folder where a file goes, and the other format's extension, are refused before any
    # work, and leave nothing behind.
    for fmt in ("onnx", "tflite"):
        with pytest.raises(FileExistsError, match=rf"sm is a folder; .*sm/model\.{fmt}"):
            export(tiny_acnet, fmt, tmp_path / "sm")
    with pytest.raises(ValueError, match=r"x\.onnx: the tflite format writes a \.tflite file"):
        export(tiny_acnet, "tflite", tmp_path / "x.onnx")
    with pytest.raises(ValueError, match=r"x\.TFLITE: the onnx format writes a \.onnx file"):
        export(tiny_acnet, "onnx", tmp_path / "x.TFLITE")
    with pytest.raises(ValueError, match="saved_model format writes a folder"):
        export(tiny_acnet, "saved_model", tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]
    assert list((tmp_path / "sm").iterdir()) == []


def test_loading_a_bad_exported_file_names_it(tmp_path):
    (tmp_path / "bad.onnx").write_text("garbage")
    with pytest.raises(ValueError, match=r"bad\.onnx: not an ONNX model onnxruntime can load"):
        load_runner(tmp_path / "bad.onnx", "onnx")
    with pytest.raises(FileNotFoundError, match=r"none\.onnx: no such file"):
        load_runner(tmp_path / "none.onnx", "onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: not a SavedModel"):
        load_runner(tmp_path / "empty", "saved_model")
    with pytest.raises(ValueError, match="bad.onnx: is a file; a SavedModel is a folder"):
        load_runner(tmp_path / "bad.onnx", "saved_model")
    with pytest.raises(FileNotFoundError, match="nowhere: no such SavedModel folder"):
        load_runner(tmp_path / "nowhere", "saved_model")
    with pytest.raises(ValueError, match=r"bad\.onnx: not a TFLite model"):
        humanmatting.Matter("likeunet_night_lite", backend="tflite",
                            exported=tmp_path / "bad.onnx")


@pytest.mark.parametrize("backend", ["onnx", "tflite"])
def test_matter_backends_give_the_keras_alphas(backend):
    image = make_person_image(150, 110)
    ref = Matter("likeunet_dark_light_original").predict(image)
    got = Matter("likeunet_dark_light_original", backend=backend).predict(image)
    assert got.shape == ref.shape == (150, 110)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_matter_runs_the_released_int8_night_lite(sample_path):
    """The shipped int8 file (calibrated on training photos) agrees with float32 Keras."""
    import tensorflow as tf

    from humanmatting.registry import weights_dir

    image = humanmatting.io.read_image(sample_path)
    int8 = Matter("likeunet_night_lite", backend="tflite", quantize="int8", realtime=True)
    assert Path(int8._run.path) == weights_dir() / "likeunet_night_lite.int8.tflite"
    assert int8._run._run.threads == min(4, os.cpu_count())    # not TFLite's single thread
    dtypes = {d["dtype"] for d in tf.lite.Interpreter(int8._run.path).get_tensor_details()}
    assert np.int8 in dtypes
    got = int8.predict(image) >= 0.5
    ref = Matter("likeunet_night_lite", realtime=True).predict(image) >= 0.5
    assert ref.mean() > 0.1                                   # a person is found
    # IoU of the two alphas: 0.965 for the stage-3 file on this one photo (0.992 / 0.988 over
    # the validation split, which tools/release_tflite.py checks before a release)
    assert (got & ref).sum() / (got | ref).sum() > 0.95


def test_quantize_needs_the_tflite_backend_and_a_known_form():
    with pytest.raises(ValueError, match="quantize must be None, 'fp16' or 'int8'"):
        Matter("likeunet_night_lite", backend="tflite", quantize="int4")
    with pytest.raises(ValueError, match="needs backend='tflite', not 'onnx'"):
        Matter("likeunet_night_lite", backend="onnx", quantize="int8")


def test_int8_without_a_released_file_is_quantized_with_a_warning(tiny_acnet):
    with pytest.warns(RuntimeWarning, match="no released int8 file; quantizing it now"):
        matter = Matter(tiny_acnet, backend="tflite", quantize="int8")
    alpha = matter.predict(make_person_image(70, 90))
    assert alpha.shape == (70, 90) and 0 <= alpha.min() <= alpha.max() <= 1
