"""admin.average: the numbers, the streaming bound, the epoch window, diverged runs,
and that fairseq-train resumes from the averaged checkpoint."""

from __future__ import annotations

import json
import re
import weakref
from pathlib import Path

import pytest
import torch

import admin.average
from admin.checkpoints import load_checkpoint
from admin.fairseq_command import parse_depth, train_argv
from admin.variants import fairseq_flags
from tests import steps_support
from tests.steps_support import DEPTH, HPARAMS, ok, run_step, step_env


@pytest.fixture(scope="session")
def trained_admin_run(tiny_databin, tmp_path_factory):
    return steps_support.trained_admin_run(tiny_databin, tmp_path_factory)


def test_average_is_the_mean_and_streams(trained_admin_run, tmp_path, monkeypatch):
    ckpts = trained_admin_run / "checkpoints"
    alive: list[weakref.ref] = []
    peak = []

    def counting_load(path, **kwargs):
        # How many earlier checkpoints are still in memory when the next one loads.
        peak.append(sum(ref() is not None for ref in alive))
        state = load_checkpoint(path, **kwargs)
        alive.append(weakref.ref(next(iter(state["model"].values()))))
        return state

    monkeypatch.setattr(admin.average, "load_checkpoint", counting_load)
    out = tmp_path / "average.json"
    result = admin.average.run(ckpts, trained_admin_run / "status.json", 3, None, out)
    assert result == json.loads(out.read_text())
    assert result["averaged"] == ["checkpoint1.pt", "checkpoint2.pt", "checkpoint3.pt"]
    assert result["epochs"] == [1, 2, 3] and result["checkpoint"] == "checkpoint_avg.pt"
    assert peak == [0, 0, 0]  # only the running sum survives between checkpoints

    states = [load_checkpoint(ckpts / f"checkpoint{e}.pt") for e in (1, 2, 3)]
    avg = load_checkpoint(tmp_path / "checkpoint_avg.pt")
    assert avg["model"].keys() == states[0]["model"].keys()
    for key, value in avg["model"].items():
        mean = sum(s["model"][key].double() for s in states) / 3
        assert value.dtype == states[0]["model"][key].dtype
        torch.testing.assert_close(value.double(), mean, rtol=1e-6, atol=1e-7)
    assert not torch.equal(
        avg["model"]["encoder.layers.0.omega"], states[2]["model"]["encoder.layers.0.omega"]
    )
    # Shared embeddings stay one tensor, so the average is no bigger than a checkpoint.
    shared = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
    ptrs = [states[2]["model"][k].untyped_storage().data_ptr() for k in shared]
    assert ptrs[0] == ptrs[1]
    assert avg["model"][shared[0]].untyped_storage().data_ptr() == (
        avg["model"][shared[1]].untyped_storage().data_ptr()
    )
    # Everything else comes from the newest checkpoint.
    assert avg["optimizer_history"] == states[2]["optimizer_history"]
    assert avg["extra_state"]["train_iterator"] == states[2]["extra_state"]["train_iterator"]


@pytest.mark.slow
def test_fairseq_train_resumes_from_the_average(trained_admin_run, tiny_databin, tmp_path):
    """The averaged checkpoint restores in fairseq-train: model, optimizer and progress."""
    ckpts = trained_admin_run / "checkpoints"
    admin.average.run(ckpts, trained_admin_run / "status.json", 2, None, tmp_path / "a.json")
    hp = {**HPARAMS, "max_epoch": 4}
    argv = train_argv(
        tiny_databin, hp, parse_depth(DEPTH), 1,
        fairseq_flags("admin", trained_admin_run / "profile.json"), tmp_path / "save",
    )  # fmt: skip
    argv += ["--cpu", "--restore-file", str(tmp_path / "checkpoint_avg.pt")]
    proc = ok(run_step("rank_entry", *argv))
    log = proc.stdout + proc.stderr
    assert re.search(r"Loaded checkpoint \S+checkpoint_avg.pt \(epoch 4 @ 18 updates\)", log)
    assert re.search(r"num_updates=19\b", log) and "done training" in log


def test_epoch_window(tmp_path):
    for e in (1, 2, 3, 4, 5, 10):
        (tmp_path / f"checkpoint{e}.pt").write_bytes(b"")
    for other in ("checkpoint_last.pt", "checkpoint_best.pt", "checkpoint3_40.pt", "crash.pt"):
        (tmp_path / other).write_bytes(b"")
    pick = admin.average.epoch_checkpoints
    assert [e for e, _ in pick(tmp_path, 3, None)] == [4, 5, 10]  # numeric, not lexical
    assert [e for e, _ in pick(tmp_path, 2, 4)] == [3, 4]
    with pytest.raises(admin.average.AdminError, match="needs 5 epoch checkpoints with epoch <= 4"):
        pick(tmp_path, 5, 4)


def _status(path: Path, status: str) -> Path:
    path.write_text(json.dumps({"status": status, "num_updates": 3, "epochs": 0, "reason": "x"}))
    return path


def test_diverged_run_has_nothing_to_average(tmp_path):
    status = _status(tmp_path / "status.json", "diverged")
    proc = ok(run_step(
        "average", "--checkpoints", tmp_path / "checkpoints", "--status", status,
        "--last", 10, "--out", tmp_path / "average.json",
    ))  # fmt: skip
    assert json.loads((tmp_path / "average.json").read_text()) == {
        "status": "diverged", "checkpoint": None, "averaged": [], "epochs": [],
    }  # fmt: skip
    assert not (tmp_path / "checkpoint_avg.pt").exists()
    assert "diverged" in proc.stdout


def test_too_few_checkpoints_is_an_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "checkpoint1.pt").write_bytes(b"")
    status = _status(tmp_path / "status.json", "completed")
    proc = run_step(
        "average", "--checkpoints", tmp_path / "checkpoints", "--status", status,
        "--last", 10, "--out", tmp_path / "average.json", env=step_env(),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "needs 10 epoch checkpoints" in proc.stderr and "found 1: checkpoint1.pt" in proc.stderr
    assert not (tmp_path / "average.json").exists()
