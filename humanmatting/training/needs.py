"""A config's prerequisite steps (`needs`), made before it trains, so that one command
reproduces a multi-stage release.

Each step is a mapping with one action key:

- `{train: CONFIG, output: FILE}`: `humanmatting train --config CONFIG --resume` (in its own
  process, after CONFIG's own needs) when FILE (what this config reads, e.g. an epoch of
  that run named by `init_from`) does not exist yet, or when that run stopped before its
  last epoch (`max_minutes`) and FILE may not be what it ends with. A run that stops at its
  time limit again stops the chain: the same command goes on from there.
- `{refine_masks: DATA, out: FOLDER}` (optionally `method`, `erode`, `dilate`, `max_side`,
  `workers`): `humanmatting refine-masks`, pseudo alphas of a folder dataset; resumable, so it
  only computes the missing ones.
- `{git: REV:PATH, output: FILE}`: a file from the repository's history (`git show`), e.g. an
  earlier release a fine-tune starts from.

A step whose output is there is skipped, and so are its own needs. Paths are relative to the
working directory, as every path of a config.
"""

import json
import subprocess
import sys
from pathlib import Path

from humanmatting.io import atomic_path

ACTIONS = ("train", "refine_masks", "git")
_OPTIONS = {"train": {"output"}, "git": {"output"},
            "refine_masks": {"out", "method", "erode", "dilate", "max_side", "workers"}}
_REQUIRED = {"train": {"output"}, "git": {"output"}, "refine_masks": {"out"}}


def check_step(step):
    """Raises ValueError unless `step` is one well-formed need; returns its action."""
    if not isinstance(step, dict):
        raise ValueError(f"needs: each step is a mapping such as {{train: CONFIG, output: "
                         f"FILE}}, got {step!r}")
    actions = [a for a in ACTIONS if a in step]
    if len(actions) != 1:
        raise ValueError(f"needs: a step has exactly one of {', '.join(ACTIONS)}, got "
                         f"{sorted(step)}")
    action = actions[0]
    unknown = set(step) - {action} - _OPTIONS[action]
    missing = _REQUIRED[action] - set(step)
    if unknown or missing:
        raise ValueError(f"needs: {action} step {step!r}: "
                         + (f"unknown keys {sorted(unknown)}" if unknown else
                            f"missing {sorted(missing)}"))
    for key in (action,) + tuple(sorted(_REQUIRED[action])):
        if not isinstance(step[key], str) or not step[key]:
            raise ValueError(f"needs: {action} step: {key} must be a path, got {step[key]!r}")
    if action == "git" and ":" not in step["git"]:
        raise ValueError(f"needs: git step: {step['git']!r} is not REV:PATH")
    return action


def plan(config, *, _stack=()):
    """Reads the whole tree of needs (the configs of `train` steps, recursively) without
    running anything, so that a missing config or a cycle fails before any training.

    Returns:
        list of (action, step, its config or None, its sub-plan).
    """
    from humanmatting.training.config import load_config

    steps = []
    for step in config.needs:
        sub_config, sub = None, []
        action = check_step(step)
        if action == "train":
            key = Path(step["train"]).resolve()
            if key in _stack:
                raise ValueError(f"needs: {step['train']} needs itself (through "
                                 f"{' -> '.join(str(p) for p in _stack)})")
            sub_config = load_config(step["train"])
            sub = plan(sub_config, _stack=_stack + (key,))
        steps.append((action, step, sub_config, sub))
    return steps


def run_finished(config):
    """Whether `config`'s run folder holds a finished run: every epoch done, or stopped
    early by `early_stopping_patience`. None when it holds no run."""
    state_path = Path(config.out_dir) / "state.json"
    if not state_path.is_file():
        return None
    state = json.loads(state_path.read_text())
    patience = config.early_stopping_patience
    return state["epoch"] >= config.epochs or bool(patience and state["wait"] >= patience)


def make_needs(config, *, log=print):
    """Makes every missing prerequisite of `config`, in order (see the module docstring).

    Raises:
        ValueError: a malformed step, a cycle, or a step that failed.
        FileNotFoundError: a `train` step's config is missing.
    """
    _make(plan(config), log)


def _make(steps, log):
    for action, step, sub_config, sub in steps:
        if action == "refine_masks":
            _refine(step, log)
            continue
        output = Path(step["output"])
        if action == "git":
            if not output.exists():
                _git(step, log)
            continue
        if output.exists() and run_finished(sub_config) is not False:
            continue
        _make(sub, log)
        log(f"needs: {output} is missing: training {step['train']} first" if not
            output.exists() else f"needs: {step['train']} has not finished: going on with it")
        command = [sys.executable, "-m", "humanmatting", "train", "--config", step["train"],
                   "--resume"]
        code = subprocess.call(command)
        if code != 0:
            raise ValueError(f"needs: humanmatting train --config {step['train']} failed "
                             f"(exit {code})")
        if run_finished(sub_config) is False:
            raise ValueError(f"needs: {step['train']} stopped at its time limit (max_minutes) "
                             "before its last epoch; run the same command again to go on")
        if not output.exists():
            raise ValueError(f"needs: {step['train']} finished without writing {output} "
                             "(does the config keep that epoch?)")


def _refine(step, log):
    from humanmatting.data.refine import refine_folder

    if not Path(step["refine_masks"]).is_dir() and Path(step["out"], "alphas").is_dir():
        log(f"needs: {step['refine_masks']} is not here; using {step['out']} as it is")
        return
    options = {k: step[k] for k in _OPTIONS["refine_masks"] - {"out"} if k in step}
    report = refine_folder(step["refine_masks"], step["out"], **options)
    if report["done"]:
        log(f"needs: {report['done']} pseudo alpha(s) written to {step['out']}")
    if report["failed"]:
        log(f"needs: {len(report['failed'])} pair(s) of {step['refine_masks']} could not be "
            f"refined, e.g. {report['failed'][0][0]}: {report['failed'][0][1]}")


def _git(step, log):
    revision_path = step["git"]
    try:
        blob = subprocess.run(["git", "show", revision_path], capture_output=True,
                              check=True).stdout
    except FileNotFoundError:
        raise ValueError(f"needs: {revision_path}: git is not installed") from None
    except subprocess.CalledProcessError as err:
        message = err.stderr.decode(errors="replace").strip()
        raise ValueError(f"needs: git show {revision_path} failed: {message}") from None
    with atomic_path(step["output"]) as tmp:
        tmp.write_bytes(blob)
    log(f"needs: {step['output']} written from {revision_path}")
