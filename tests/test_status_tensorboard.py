"""fairseq's TensorBoard hook through the recipe's runtime options (docs/status.md).

``tensorboard_logdir`` in hparams goes to the training step's ``--runtime``, never into
the recipe; the training step resolves a relative one in the run folder, so a tiny
training writes its event files (``make install`` installs the ``tensorboard`` package)
under the run folder and nothing into the workflow's working directory.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.steps_support import step_cmd, step_env, train_args

pytestmark = pytest.mark.slow

MISSING = "tensorboard not found, please install with: pip install tensorboard"


def test_a_relative_tensorboard_logdir_is_the_run_folders(tiny_databin: Path, tmp_path: Path):
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
    assert f"'tensorboard_logdir': '{run.resolve() / 'tb'}'" in history  # fairseq's config
    assert MISSING not in history
    events = {p.parent.name for p in (run / "tb").rglob("events.out.tfevents.*")}
    assert {"train_inner", "train", "valid"} <= events, events
    assert not (workdir / "tb").exists() and not (REPO / "tb").exists()
