"""A config's `needs`: earlier stages, pseudo alphas and files from history, made first."""

import json
import os
import re
import subprocess

import pytest
import yaml

from conftest import make_folder_dataset, run_cli
from humanmatting.training import TrainConfig, load_config
from humanmatting.training import needs as needs_module
from humanmatting.training.needs import make_needs, plan


def write_config(path, **keys):
    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path


@pytest.mark.parametrize("step, message", [
    (1, "each step is a mapping"),
    ({"train": "a.yaml"}, "train step {'train': 'a.yaml'}: missing ['output']"),
    ({"train": "a.yaml", "output": "b", "epochs": 3}, "unknown keys ['epochs']"),
    ({"train": "a.yaml", "git": "r:p", "output": "b"}, "exactly one of"),
    ({"git": "HEAD", "output": "b"}, "'HEAD' is not REV:PATH"),
    ({"refine_masks": "data", "out": ""}, "out must be a path"),
    ({"output": "b"}, "exactly one of"),
])
def test_a_malformed_step_is_refused_when_the_config_is_read(step, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(needs=[step])


def test_needs_is_a_list_and_a_config_without_it_needs_nothing():
    with pytest.raises(ValueError, match="needs must be a list"):
        TrainConfig(needs={"train": "a.yaml"})
    assert plan(TrainConfig()) == []


def test_a_cycle_or_a_missing_config_fails_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(needs_module.subprocess, "call",
                        lambda *a, **k: pytest.fail("nothing may run"))
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    write_config(a, needs=[{"train": str(b), "output": str(tmp_path / "b.out")}])
    write_config(b, needs=[{"train": str(a), "output": str(tmp_path / "a.out")}])
    with pytest.raises(ValueError, match="needs itself"):
        make_needs(load_config(a))
    write_config(b, needs=[{"train": str(tmp_path / "gone.yaml"), "output": "x"}])
    with pytest.raises(FileNotFoundError, match="gone.yaml"):
        make_needs(load_config(a))
    # the tree is read whole, even where an output is already there
    (tmp_path / "b.out").write_text("made")
    with pytest.raises(FileNotFoundError, match="gone.yaml"):
        plan(load_config(a))


def test_a_train_step_runs_until_its_output_is_there_and_its_run_finished(
        tmp_path, monkeypatch):
    run = tmp_path / "run"
    stage1 = write_config(tmp_path / "stage1.yaml", epochs=3, out_dir=str(run))
    output = run / "best.weights.h5"
    config = TrainConfig(needs=[{"train": str(stage1), "output": str(output)}])
    calls = []

    def fake_train(epochs_done, writes):
        def train(command):
            calls.append(command)
            run.mkdir(exist_ok=True)
            (run / "state.json").write_text(json.dumps({"epoch": epochs_done, "wait": 0}))
            if writes:
                output.write_bytes(b"weights")
            return 0
        return train

    monkeypatch.setattr(needs_module.subprocess, "call", fake_train(3, writes=False))
    with pytest.raises(ValueError, match="finished without writing .*best.weights.h5"):
        make_needs(config)
    assert calls[0][-5:] == ["humanmatting", "train", "--config", str(stage1), "--resume"]
    monkeypatch.setattr(needs_module.subprocess, "call", lambda command: 3)
    with pytest.raises(ValueError, match=r"stage1.yaml failed \(exit 3\)"):
        make_needs(config)
    # stopped by max_minutes after 1 of 3 epochs: its best epoch so far is not the stage's
    monkeypatch.setattr(needs_module.subprocess, "call", fake_train(1, writes=True))
    with pytest.raises(ValueError, match="stopped at its time limit .* run the same command"):
        make_needs(config)
    lines = []
    monkeypatch.setattr(needs_module.subprocess, "call", fake_train(3, writes=True))
    make_needs(config, log=lines.append)   # the same command goes on with it
    assert lines == [f"needs: {stage1} has not finished: going on with it"]
    assert len(calls) == 3
    monkeypatch.setattr(needs_module.subprocess, "call",
                        lambda *a, **k: pytest.fail("the run is finished"))
    make_needs(config)


def test_a_git_step_writes_the_file_of_that_revision(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    git = lambda *args: subprocess.run(["git", *args], cwd=repo, env=env, check=True,  # noqa
                                       capture_output=True).stdout.decode().strip()
    git("init", "-q")
    (repo / "w.bin").write_bytes(bytes(range(256)))
    git("add", "w.bin")
    git("commit", "-q", "-m", "first")
    first = git("rev-parse", "--short", "HEAD")
    (repo / "w.bin").write_bytes(b"changed")
    git("commit", "-q", "-am", "second")
    monkeypatch.chdir(repo)
    lines = []
    make_needs(TrainConfig(needs=[{"git": f"{first}:w.bin", "output": "runs/w.bin"}]),
               log=lines.append)
    assert (repo / "runs" / "w.bin").read_bytes() == bytes(range(256))
    assert lines == [f"needs: runs/w.bin written from {first}:w.bin"]
    with pytest.raises(ValueError, match="git show .*:nope.bin failed: fatal"):
        make_needs(TrainConfig(needs=[{"git": f"{first}:nope.bin", "output": "n.bin"}]))
    assert not (repo / "n.bin").exists()


def test_a_refine_step_computes_only_the_missing_pseudo_alphas(tmp_path):
    data = make_folder_dataset(tmp_path / "data", count=2, shape=(48, 40))
    out = tmp_path / "pseudo"
    config = TrainConfig(needs=[{"refine_masks": str(data), "out": str(out), "workers": 1}])
    lines = []
    make_needs(config, log=lines.append)
    assert lines == [f"needs: 2 pseudo alpha(s) written to {out}"]
    alpha = (out / "alphas" / "p000.png").read_bytes()
    lines.clear()
    make_needs(config, log=lines.append)   # all there: nothing recomputed
    assert lines == [] and (out / "alphas" / "p000.png").read_bytes() == alpha
    # the source data is not here (a packed copy on another machine): the made alphas serve
    moved = tmp_path / "elsewhere"
    data.rename(moved)
    make_needs(config, log=lines.append)
    assert lines == [f"needs: {data} is not here; using {out} as it is"]


@pytest.mark.slow
def test_train_makes_an_earlier_stage_first_in_its_own_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_folder_dataset(tmp_path / "data", count=8, shape=(80, 64))
    common = {"model": "likeunet_night",
              "overrides": {"filters": [4, 4, 4, 4, 4], "bottleneck_filters": 4,
                            "edge_filters": 4},
              "data": [{"path": str(data)}], "sizes": [[64, 64]], "batch_size": 2,
              "steps_per_epoch": 2, "epochs": 1, "val_fraction": 0.25, "jit_compile": "false",
              "image_cache_short_side": 96, "seed": 3}
    write_config(tmp_path / "stage1.yaml", **common, out_dir="runs/stage1")
    write_config(tmp_path / "stage2.yaml", **common, out_dir="runs/stage2",
                 init_from="runs/stage1/best.weights.h5",
                 needs=[{"train": "stage1.yaml", "output": "runs/stage1/best.weights.h5"}])
    result = run_cli("train", "--config", "stage2.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "needs: runs/stage1/best.weights.h5 is missing: training stage1.yaml first" \
        in result.stdout
    for stage in ("stage1", "stage2"):
        assert (tmp_path / "runs" / stage / "best.weights.h5").is_file()
    assert (tmp_path / "runs" / "stage1" / "command.txt").read_text() == \
        "humanmatting train --config stage1.yaml --resume\n"
    stage1 = (tmp_path / "runs" / "stage1" / "best.weights.h5").read_bytes()
    # a second run of stage 2 leaves stage 1 as it is
    assert run_cli("train", "--config", "stage2.yaml", cwd=tmp_path).returncode == 0
    assert (tmp_path / "runs" / "stage1" / "best.weights.h5").read_bytes() == stage1
