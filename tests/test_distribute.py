"""Training under tf.distribute strategies on CPU with two logical devices (subprocesses:
logical devices must be set before TensorFlow starts)."""

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import make_folder_dataset

SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from humanmatting.training import load_config
    from humanmatting.training.fit import fit
    config = load_config(None, sys.argv[2:])
    config.overrides = {"filters": [4, 4, 4, 4, 4], "bottleneck_filters": 4,
                        "edge_filters": 4}
    summary = fit(config, log=lambda *a: None)
    print(json.dumps({"epochs": summary["epochs_done"], "best": summary["best"],
                      "replicas": summary["replicas"], "precision": summary["precision"]}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("strategy, extra, replicas", [
    ("mirrored", ["devices=['/cpu:0', '/cpu:1']"], 2),
    ("multi_worker", [], 1),   # one worker without TF_CONFIG
])
def test_strategy_trains(tmp_path, strategy, extra, replicas):
    data = make_folder_dataset(tmp_path / "data", count=8, shape=(80, 64))
    args = [f"data=[{{path: {data}}}]", f"out_dir={tmp_path / 'run'}", "sizes=[[64, 64]]",
            "batch_size=4", "steps_per_epoch=2", "epochs=2", "val_fraction=0.25",
            "image_cache_short_side=96", f"strategy={strategy}", *extra]
    result = subprocess.run([sys.executable, "-c", SCRIPT, "x", *args], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and 0.0 <= summary["best"] <= 1.0
    assert summary["replicas"] == replicas
    assert summary["precision"] == "float32"   # "auto" on a machine without a GPU
