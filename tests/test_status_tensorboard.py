"""fairseq's TensorBoard hook through the recipe's runtime options (docs/status.md).

``tensorboard_logdir`` in hparams goes to the training step's ``--runtime``, never into
the recipe; fairseq resolves a relative one in the step's working directory (the
workflow's), not in the run folder.  Where the ``tensorboard`` package is installed, a
tiny training writes its event files there; where it is not (the project's environment
does not install it), fairseq says so and the run trains to its end all the same.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.steps_support import step_cmd, step_env, train_args

pytestmark = pytest.mark.slow

MISSING = "tensorboard not found, please install with: pip install tensorboard"


def _installed() -> bool:
    # fairseq takes torch.utils.tensorboard (the tensorboard package), else tensorboardX
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def test_a_relative_tensorboard_logdir_is_the_workflows_not_the_run_folders(
    tiny_databin: Path, tmp_path: Path
):
    workdir = tmp_path / "work"  # the workflow's working directory
    run = workdir / "results" / "tiny" / "postln" / "2-2" / "seed1"
    workdir.mkdir()
    args = train_args(tiny_databin, run, "postln", tensorboard_logdir="tb", max_epoch=1)
    runtime = json.loads(args[args.index("--runtime") + 1])
    assert runtime["tensorboard_logdir"] == "tb"  # a runtime option, not the recipe's
    recipe = json.loads((run / "recipe.json").read_text())
    assert "tensorboard_logdir" not in recipe["identity"]["hparams"]
    proc = subprocess.run(step_cmd("train", *args), cwd=workdir, env=step_env(),
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    history = (run / "checkpoints" / "train.log").read_text(encoding="utf-8")
    assert "'tensorboard_logdir': 'tb'" in history  # fairseq's config, as it got it
    assert not (run / "tb").exists() and not (REPO / "tb").exists()
    if _installed():
        events = {p.parent.name for p in (workdir / "tb").rglob("events.out.tfevents.*")}
        assert {"train_inner", "train", "valid"} <= events, events
        assert MISSING not in history
    else:
        assert MISSING in history
        assert not (workdir / "tb").exists()
