"""admin.average: the numbers, the streaming bound, the epoch window, diverged runs,
weights only in the averaged checkpoint (which fairseq loads), and its reuse once the
epoch checkpoints were pruned after scoring."""

from __future__ import annotations

import json
import shutil
import weakref
from pathlib import Path

import pytest
import torch

import admin.average
from admin.common import run_folder as rf
from admin.common.checkpoints import load_checkpoint
from admin.common.fairseq_command import load_plugin
from tests import steps_support
from tests.steps_support import ok, run_step, step_env


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
    # Weights only: the newest checkpoint's config and bookkeeping, no optimizer state.
    assert "last_optimizer_state" in states[2] and "last_optimizer_state" not in avg
    assert "model" in avg and set(avg) <= {"model", *admin.average.KEPT_FIELDS}
    assert avg["optimizer_history"] == states[2]["optimizer_history"]
    size = (tmp_path / "checkpoint_avg.pt").stat().st_size
    assert size < 0.5 * (ckpts / "checkpoint3.pt").stat().st_size  # RAdam keeps 2 moments


@pytest.mark.slow
def test_fairseq_loads_the_averaged_weights(trained_admin_run, tmp_path):
    """fairseq's own loader (what fairseq-generate uses) rebuilds the model from it."""
    from fairseq import checkpoint_utils

    load_plugin()  # registers the model, as fairseq's --user-dir does

    ckpts = trained_admin_run / "checkpoints"
    admin.average.run(ckpts, trained_admin_run / "status.json", 2, None, tmp_path / "a.json")
    avg = tmp_path / "checkpoint_avg.pt"
    models, _cfg = checkpoint_utils.load_model_ensemble(
        [str(avg)], arg_overrides={"admin_profile": str(trained_admin_run / "profile.json")}
    )
    state = load_checkpoint(avg)["model"]
    for name, value in models[0].state_dict().items():
        torch.testing.assert_close(value, state[name])


def test_a_pruned_run_reuses_its_average(trained_admin_run, tmp_path):
    """checkpoints.keep none deletes the epoch checkpoints once scored; averaging the same
    run with the same window again reuses checkpoint_avg.pt instead of failing."""
    run = tmp_path / "run"
    shutil.copytree(trained_admin_run, run)
    first = admin.average.run(run / "checkpoints", run / "status.json", 2, None,
                              run / "average.json")  # fmt: skip
    avg_bytes = (run / "checkpoint_avg.pt").read_bytes()
    rf.prune_after_scoring(rf.RunFolder(run), "none")
    assert not list((run / "checkpoints").glob("*.pt"))
    again = admin.average.run(run / "checkpoints", run / "status.json", 2, None,
                              run / "average.json")  # fmt: skip
    assert again == first and (run / "checkpoint_avg.pt").read_bytes() == avg_bytes
    with pytest.raises(admin.average.AdminError, match="needs 3 epoch checkpoints"):
        admin.average.run(run / "checkpoints", run / "status.json", 3, None, run / "a3.json")
    # trained on since (an extended run): the old average is not its average any more
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "epochs": status["epochs"] + 1}))
    with pytest.raises(admin.average.AdminError, match="needs 2 epoch checkpoints"):
        admin.average.run(run / "checkpoints", run / "status.json", 2, None, run / "a4.json")


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
    rf.write_status(path, rf.RunKey("tiny", "postln", "2-2", 1), status, recipe_id="r1",
                    num_updates=3, epochs=0, reason="x")  # fmt: skip
    return path


def test_a_diverged_run_without_an_epoch_checkpoint_has_nothing_to_average(tmp_path):
    status = _status(tmp_path / "status.json", "diverged")
    proc = ok(run_step(
        "average", "--checkpoints", tmp_path / "checkpoints", "--status", status,
        "--last", 10, "--out", tmp_path / "average.json",
    ))  # fmt: skip
    assert json.loads((tmp_path / "average.json").read_text()) == {
        "status": "diverged", "recipe_id": "r1", "checkpoint": None, "averaged": [],
        "epochs": [],
        "note": "no epoch checkpoint: the run was stopped before its first epoch ended",
    }  # fmt: skip
    assert not (tmp_path / "checkpoint_avg.pt").exists()
    assert "nothing to average (a run flagged diverged)" in proc.stdout


def test_a_flagged_run_is_averaged_over_the_epochs_it_reached(trained_admin_run, tmp_path):
    """A verdict is a label: a run flagged diverged (here stopped after 3 of the window's
    10 epochs) is averaged like any other, over what it has, and keeps every checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(trained_admin_run / "checkpoints", run / "checkpoints")
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    status = _status(run / "status.json", "diverged")
    ok(run_step("average", "--checkpoints", run / "checkpoints", "--status", status,
                "--last", 10, "--out", run / "average.json"))  # fmt: skip
    result = json.loads((run / "average.json").read_text())
    assert result == {
        "status": "diverged", "recipe_id": "r1", "checkpoint": "checkpoint_avg.pt",
        "averaged": ["checkpoint1.pt", "checkpoint2.pt", "checkpoint3.pt"], "epochs": [1, 2, 3],
        "note": "the run reached 3 of the window's 10 epochs",
    }  # fmt: skip
    avg = load_checkpoint(run / "checkpoint_avg.pt")["model"]
    states = [
        load_checkpoint(run / "checkpoints" / f"checkpoint{e}.pt")["model"] for e in (1, 2, 3)
    ]
    key = "encoder.layers.0.omega"
    torch.testing.assert_close(avg[key].double(), sum(m[key].double() for m in states) / 3)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    # Weights that are no longer finite give nothing to score, and a note that says so.
    poisoned = load_checkpoint(run / "checkpoints" / "checkpoint3.pt")
    poisoned["model"][key] = torch.full_like(poisoned["model"][key], float("nan"))
    torch.save(poisoned, run / "checkpoints" / "checkpoint3.pt")
    ok(run_step("average", "--checkpoints", run / "checkpoints", "--status", status,
                "--last", 1, "--out", run / "average.json"))  # fmt: skip
    result = json.loads((run / "average.json").read_text())
    assert result["checkpoint"] is None and result["note"].startswith(
        "the average of epochs [3] is not finite (1 parameters, e.g. encoder.layers.0.omega)"
    )
    assert not (run / "checkpoint_avg.pt").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


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


def test_equal_large_tensors_are_stored_once(tmp_path):
    """A GPU run's checkpoint holds its tied embeddings as three copies (fairseq's
    move_to_cpu); the average stores equal ones once, and only equal ones."""
    emb = torch.randn(1000, 80)
    model = {
        "encoder.embed_tokens.weight": emb.clone(),
        "decoder.embed_tokens.weight": emb.clone(),
        "decoder.output_projection.weight": emb.clone(),
        "other.weight": emb + 1e-3,  # same shape, other values
        "small.bias": torch.zeros(80),
        "other.bias": torch.zeros(80),  # small: never compared
    }
    tied = admin.average.tie_equal(model)
    assert sorted(tied) == [("decoder.embed_tokens.weight", "encoder.embed_tokens.weight"),
                            ("decoder.output_projection.weight",
                             "encoder.embed_tokens.weight")]  # fmt: skip
    assert model["decoder.output_projection.weight"] is model["encoder.embed_tokens.weight"]
    assert model["other.weight"] is not model["encoder.embed_tokens.weight"]
    path = tmp_path / "m.pt"
    torch.save(model, path)
    separate = tmp_path / "s.pt"
    torch.save({k: v.clone() for k, v in model.items()}, separate)
    saved = path.stat().st_size
    assert saved < separate.stat().st_size - 2 * emb.numel() * 4 + 4096
