"""admin.profile_run and admin.train through their CLIs, with the real fairseq-train:
a valid profile, a completed run, resume after SIGKILL, divergence as a result,
a crash as a failure; plus the log classification and the resume choice."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from admin.common import profiling
from admin.common.fairseq_log import parse
from admin.train import restore_flags
from tests import steps_support
from tests.conftest import REPO
from tests.steps_support import DEPTH, ok, run_step, step_cmd, step_env, train_args

UPDATES_PER_EPOCH = 6  # 600 training pairs at max_tokens 4000 (see the first log)


@pytest.fixture(scope="session")
def trained_admin_run(tiny_databin, tmp_path_factory):
    return steps_support.trained_admin_run(tiny_databin, tmp_path_factory)


def _status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def test_profile_run_writes_a_valid_profile(trained_admin_run):
    path = trained_admin_run / "profile.json"
    profile = profiling.read_profile(path)  # validates format, counts and values
    enc, dec = (int(n) for n in DEPTH.split("-"))
    assert (profile.encoder.layers, profile.decoder.layers) == (enc, dec)
    assert profile.encoder.embed_dim == profile.decoder.embed_dim == 32
    assert profile.encoder.omegas[0] == profile.decoder.omegas[0] == 1.0
    assert len(set(profile.encoder.omegas)) > 1  # the recurrence ran
    assert "profiling done" in (trained_admin_run / "profile.log").read_text()
    assert not list(trained_admin_run.glob(".profile-save.*"))  # the throwaway save folder


def test_train_completes_and_writes_status(trained_admin_run):
    status = _status(trained_admin_run)
    assert status["status"] == "completed"
    assert status["epochs"] == 3
    assert status["num_updates"] == 3 * UPDATES_PER_EPOCH
    assert status["world_size"] == 1
    ckpts = trained_admin_run / "checkpoints"
    assert {p.name for p in ckpts.glob("checkpoint*.pt")} >= {
        "checkpoint1.pt", "checkpoint2.pt", "checkpoint3.pt", "checkpoint_last.pt",
    }  # fmt: skip
    log = (trained_admin_run / "train.log").read_text()
    assert log == (ckpts / "train.log").read_text()  # the history kept with the checkpoints
    assert "admin: initialised omegas from profile" in log
    assert parse(log.splitlines()).num_updates == status["num_updates"]


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_train_resumes_after_sigkill(tiny_databin, tmp_path):
    run = tmp_path / "postln" / DEPTH / "seed1"
    args = train_args(tiny_databin, run, "postln", max_epoch=2)
    proc = subprocess.Popen(
        step_cmd("train", *args), cwd=REPO, env=step_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    history = run / "checkpoints" / "train.log"
    try:
        # Kill in epoch 2, after epoch 1's checkpoint and at least one more update.
        _wait_for(lambda: history.exists() and "epoch 002:" in history.read_text(), 300, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the step, torch and fairseq: the whole group
        proc.wait()
    killed_at = parse(history.read_text().splitlines()).num_updates
    assert killed_at > UPDATES_PER_EPOCH
    assert not (run / "status.json").exists()
    (run / "train.log").unlink()  # Snakemake deletes a failed job's declared outputs

    ok(run_step("train", *args))
    status = _status(run)
    assert status["status"] == "completed"
    assert status["num_updates"] == 2 * UPDATES_PER_EPOCH
    log = (run / "train.log").read_text()
    assert log.count("==== admin.train attempt") == 2  # the history survived
    second = log.rsplit("==== admin.train attempt", 1)[1]
    # fairseq names the epoch it resumes into: epoch 2, after checkpoint1.pt.
    loaded = re.search(
        r"Loaded checkpoint \S+checkpoint_last.pt \(epoch 2 @ (\d+) updates\)", second
    )
    assert loaded and int(loaded[1]) == UPDATES_PER_EPOCH
    counts = [int(n) for n in re.findall(r"num_updates=(\d+)", second)]
    assert counts[0] == UPDATES_PER_EPOCH + 1  # continues, does not restart at 1
    assert counts[-1] == 2 * UPDATES_PER_EPOCH


@pytest.mark.slow
def test_divergence_is_a_result(tiny_databin, tmp_path):
    """Post-LN with plain SGD at lr 1e8: the gradients are non-finite at the second update."""
    run = tmp_path / "postln" / DEPTH / "seed1"
    unstable = {
        "optimizer": "sgd", "lr": 1e8, "lr_scheduler": "fixed", "adam_betas": None,
        "warmup_updates": None, "max_epoch": 1,
    }  # fmt: skip
    proc = ok(run_step("train", *train_args(tiny_databin, run, "postln", **unstable)))
    status = _status(run)
    assert status["status"] == "diverged", status
    assert "gradients are Nan/Inf" in status["reason"]
    assert status["num_updates"] < UPDATES_PER_EPOCH
    assert "diverged" in proc.stdout


@pytest.mark.slow
def test_other_failures_exit_nonzero_without_status(tiny_databin, tmp_path):
    run = tmp_path / "postln" / DEPTH / "seed1"
    args = train_args(tiny_databin, run, "postln", arch="admin_transformer_no_such_preset")
    proc = run_step("train", *args)
    assert proc.returncode == 1, proc.stderr
    assert "fairseq-train failed" in proc.stderr
    assert not (run / "status.json").exists()
    assert "invalid choice" in (run / "train.log").read_text()


def _bad_input(tmp_path: Path, tiny_databin: Path, variant: str, *extra: str, **hp) -> str:
    run = tmp_path / "run"
    args = [*train_args(tiny_databin, run, variant, **hp), *extra]
    env = step_env()
    env.pop("SLURM_JOB_ID", None)
    proc = subprocess.run(step_cmd("train", *args), cwd=REPO, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ")
    assert not (run / "status.json").exists() and not (run / "checkpoints").exists()
    return proc.stderr


def test_bad_input_exits_2_before_fairseq(tmp_path, tiny_databin):
    assert "needs --profile" in _bad_input(tmp_path, tiny_databin, "admin")
    assert "SLURM" in _bad_input(tmp_path, tiny_databin, "postln", "--nnodes", "2", world=2)
    text = _bad_input(tmp_path, tiny_databin, "postln", "--stop", '{"lr": 1}')
    assert "--stop sets lr" in text
    text = _bad_input(tmp_path, tiny_databin, "postln", "--nproc-per-node", "3", world=2)
    assert "accumulates 2 batches per update, which 3 processes cannot share" in text
    # a recipe edited by hand no longer matches its id
    recipe = tmp_path / "run" / "recipe.json"
    doc = json.loads(recipe.read_text())
    doc["identity"]["hparams"]["lr"] = 1.0
    recipe.write_text(json.dumps(doc))
    args = ["--data-bin", tiny_databin, "--run-dir", tmp_path / "run", "--recipe", recipe,
            "--device", "cpu"]  # fmt: skip
    proc = run_step("train", *args)
    assert proc.returncode == 2 and "was edited" in proc.stderr, proc.stderr


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data.pkl", b"x")


def test_resume_source(tmp_path):
    assert restore_flags(tmp_path) == []  # nothing yet: fairseq starts from scratch
    # fairseq's names: checkpoint<epoch>.pt at an epoch's end, checkpoint_<epoch>_<updates>.pt
    # within it (--save-interval-updates)
    for name in ("checkpoint1.pt", "checkpoint2.pt", "checkpoint_2_40.pt", "checkpoint_3_50.pt"):
        _zip(tmp_path / name)
    (tmp_path / "crash.pt").write_bytes(b"")
    # checkpoint_last.pt missing (killed before fairseq copied it): the newest one.
    assert restore_flags(tmp_path) == ["--restore-file", str(tmp_path / "checkpoint_3_50.pt")]
    (tmp_path / "checkpoint_last.pt").write_bytes(b"PK\x03\x04 truncated")
    assert restore_flags(tmp_path) == ["--restore-file", str(tmp_path / "checkpoint_3_50.pt")]
    assert (tmp_path / "checkpoint_last.pt.truncated").exists()
    _zip(tmp_path / "checkpoint_last.pt")
    assert restore_flags(tmp_path) == []  # fairseq's own resume
