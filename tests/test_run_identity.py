"""A run is a function of its recipe, with real fairseq runs through ``admin.train``:
a changed recipe starts afresh (old checkpoints moved aside, never resumed), an extended
run continues exactly where a longer run would be, a shortened one starts afresh, a
finished run is only judged again, checkpoints outside the averaging window are deleted
as training goes, and one trainer holds a run at a time."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from admin.common import run_folder as rf
from admin.common.fairseq_log import parse
from tests.conftest import REPO
from tests.steps_support import ok, run_step, step_cmd, step_env, train_args

pytestmark = pytest.mark.slow

UPDATES_PER_EPOCH = 6  # 600 training pairs at max_tokens 4000
ATTEMPT = "==== admin.train attempt"
_INNER = re.compile(
    r"train_inner \| epoch (\d+):.*?loss=([\d.]+).*?wpb=(\d+), bsz=(\d+), num_updates=(\d+), "
    r"lr=([\d.e-]+)"
)


def _inner(text: str) -> dict[int, tuple[int, int, int, str, float]]:
    """update -> (epoch, tokens, sentences, lr, loss) of every train_inner line."""
    return {
        int(m[5]): (int(m[1]), int(m[3]), int(m[4]), m[6], float(m[2]))
        for m in _INNER.finditer(text)
    }


def _train(databin: Path, run: Path, variant: str = "postln", *extra, **hp) -> dict:
    ok(run_step("train", *train_args(databin, run, variant, *extra, **hp)))
    return json.loads((run / "status.json").read_text())


def test_extended_run_continues_exactly_where_a_longer_run_would_be(tiny_databin, tmp_path):
    longer = tmp_path / "longer"
    extended = tmp_path / "extended"
    _train(tiny_databin, longer, max_epoch=3)
    first = _train(tiny_databin, extended, max_epoch=2)
    assert first["num_updates"] == 2 * UPDATES_PER_EPOCH
    # scored with checkpoints.keep: last, so only checkpoint_last.pt is left to go on from
    assert rf.prune_after_scoring(rf.RunFolder(extended), "last") == ["checkpoint2.pt"]
    second = _train(tiny_databin, extended, max_epoch=3)  # same recipe, one epoch more

    assert second["recipe_id"] == first["recipe_id"]
    assert second["num_updates"] == 3 * UPDATES_PER_EPOCH and second["epochs"] == 3
    history = (extended / "train.log").read_text()
    attempts = history.split(ATTEMPT)[1:]
    assert len(attempts) == 2 and "starting afresh" not in history
    assert re.search(r"Loaded checkpoint \S+checkpoint_last\.pt \(epoch 3 @ 12 updates\)",
                     attempts[1])  # fmt: skip
    resumed = _inner(attempts[1])
    reference = _inner((longer / "train.log").read_text())
    # The update count continues (13..18) over the same batches with the same learning
    # rates as a run trained for 3 epochs from the start; the loss agrees to 0.1 %.
    assert sorted(resumed) == list(range(13, 19))
    for update, (*exact, loss) in resumed.items():
        assert exact[0] == 3
        assert exact == list(reference[update][:4]), (update, resumed, reference)
        assert loss == pytest.approx(reference[update][4], rel=1e-3)


def test_a_run_stopped_inside_an_epoch_by_max_update_is_extended_from_where_it_stopped(
    tiny_databin, tmp_path
):
    """fairseq ends an epoch that max_update cut short with its end-of-epoch summary; that
    epoch is not complete, so extending the run resumes it rather than asking for its
    epoch checkpoint, which never existed."""
    run = tmp_path / "run"
    first = _train(tiny_databin, run, max_epoch=3, max_update=9)  # stops inside epoch 2
    assert first["num_updates"] == 9 and first["epochs"] == 1
    assert sorted(rf.RunFolder(run).epoch_checkpoints()) == [1]
    second = _train(tiny_databin, run, max_epoch=3, max_update=None)
    history = (run / "train.log").read_text()
    assert "starting afresh" not in history and len(history.split(ATTEMPT)[1:]) == 2
    assert re.search(r"Loaded checkpoint \S+checkpoint_last\.pt \(epoch 2 @ 9 updates\)",
                     history)  # fmt: skip
    assert second["recipe_id"] == first["recipe_id"]
    assert second["num_updates"] == 3 * UPDATES_PER_EPOCH and second["epochs"] == 3
    assert sorted(_inner(history.split(ATTEMPT)[2])) == list(range(10, 19))


def test_changed_recipe_starts_afresh_and_keeps_the_old_run_aside(tiny_databin, tmp_path):
    run = tmp_path / "run"
    old = _train(tiny_databin, run, max_epoch=1)
    ok(run_step("average", "--checkpoints", run / "checkpoints", "--status", run / "status.json",
                "--last", 1, "--out", run / "average.json"))  # fmt: skip
    new = _train(tiny_databin, run, max_epoch=1, lr=0.001)

    assert new["recipe_id"] != old["recipe_id"]
    assert new["num_updates"] == UPDATES_PER_EPOCH  # trained again, from update 1
    aside = run / f"checkpoints.superseded-{old['recipe_id']}"
    assert (aside / "checkpoint_last.pt").is_file() and (aside / "train.log").is_file()
    # the old recipe's averaged model goes with it: nothing of it is left beside the new run
    assert (aside / "checkpoint_avg.pt").is_file() and not (run / "checkpoint_avg.pt").exists()
    log = (run / "train.log").read_text()
    assert log.startswith(
        f"admin.train: starting afresh for recipe {new['recipe_id']}: "
        f"its checkpoints were trained under recipe {old['recipe_id']}"
    )
    assert "Loaded checkpoint" not in log
    assert min(_inner(log)) == 1
    assert rf.read_record(rf.RunFolder(run))["recipe_id"] == new["recipe_id"]


def test_shortened_run_and_unrecorded_checkpoints_start_afresh(tiny_databin, tmp_path):
    run = tmp_path / "run"
    _train(tiny_databin, run, max_epoch=2)
    status = _train(tiny_databin, run, max_epoch=1)
    assert status["num_updates"] == UPDATES_PER_EPOCH
    log = (run / "train.log").read_text()
    assert "it trained 2 epochs, more than max_epoch 1" in log.splitlines()[0]

    # Checkpoints from before recipes were recorded are never resumed either.
    (run / "checkpoints" / "run.json").unlink()
    status = _train(tiny_databin, run, max_epoch=1)
    assert (run / "checkpoints.superseded-unrecorded" / "checkpoint1.pt").is_file()
    assert "carry no recipe record" in (run / "train.log").read_text().splitlines()[0]
    assert status["num_updates"] == UPDATES_PER_EPOCH


def test_a_finished_run_is_judged_again_without_training(tiny_databin, tmp_path):
    run = tmp_path / "run"
    first = _train(tiny_databin, run, max_epoch=1)
    proc = ok(run_step("train", *train_args(tiny_databin, run, "postln", max_epoch=1)))
    again = json.loads((run / "status.json").read_text())
    history = (run / "checkpoints" / "train.log").read_text()
    assert history.rstrip().endswith("already at its stop conditions; judged only")
    assert history.count("Loaded checkpoint") == 0  # fairseq never ran again
    assert {k: again[k] for k in ("status", "num_updates", "recipe_id")} == {
        k: first[k] for k in ("status", "num_updates", "recipe_id")
    }
    assert "completed" in proc.stdout


def test_disk_holds_the_averaging_window_last_and_latest_mid_epoch(tiny_databin, tmp_path):
    run = tmp_path / "run"
    args = ["--average-last", "2"]
    _train(tiny_databin, run, "postln", *args, max_epoch=4, save_interval_updates=4)
    names = {p.name for p in (run / "checkpoints").glob("*.pt")}
    # epochs 3 and 4 (the window), the last state, and the newest mid-epoch checkpoint
    # (update 20 in epoch 4); no checkpoint_best.pt, no epochs 1-2, no older mid-epoch ones.
    assert names == {"checkpoint3.pt", "checkpoint4.pt", "checkpoint_last.pt",
                     "checkpoint_4_20.pt"}, names  # fmt: skip
    log = (run / "train.log").read_text()
    saved = re.findall(r"Saved checkpoint \S+/(checkpoint\S+\.pt)", log)
    assert {"checkpoint_1_4.pt", "checkpoint1.pt", "checkpoint_2_8.pt"} <= set(saved)

    # an upper bound: the window ends at epoch 2 even when training goes on
    run2 = tmp_path / "bounded"
    _train(tiny_databin, run2, "postln", "--average-last", "1", "--average-upper-bound", "2",
           max_epoch=3)  # fmt: skip
    assert {p.name for p in (run2 / "checkpoints").glob("checkpoint?.pt")} == {"checkpoint2.pt"}


def test_second_trainer_stops_at_once_naming_the_holder(tiny_databin, tmp_path):
    run = tmp_path / "run"
    args = train_args(tiny_databin, run, "postln", max_epoch=1)
    with rf.TrainerLock(rf.RunFolder(run)):
        proc = run_step("train", *args)
    assert proc.returncode == 2, proc.stderr
    assert f"another trainer is working on {run}: process {os.getpid()} on host" in proc.stderr
    assert "is running on this host" in proc.stderr
    assert not (run / "checkpoints" / "train.log").exists()  # it touched nothing

    # A stale lock (its process is gone) is taken over, with a message.
    holder = {"host": os.uname().nodename, "pid": 999999, "pid_start": "1",
              "slurm_job_id": None, "started": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    (run / "trainer.lock").write_text(json.dumps(holder))
    proc = ok(run_step("train", *args))
    assert "took over a stale lock of process 999999" in proc.stderr
    assert not (run / "trainer.lock").exists()
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


def test_a_killed_trainers_lock_is_taken_over_and_the_run_resumes(tiny_databin, tmp_path):
    """SIGKILL leaves the lock file behind; the next trainer finds its process gone."""
    run = tmp_path / "run"
    args = train_args(tiny_databin, run, "postln", max_epoch=2)
    proc = subprocess.Popen(step_cmd("train", *args), cwd=REPO, env=step_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    lock = run / "trainer.lock"
    history = run / "checkpoints" / "train.log"
    try:
        while not (history.is_file() and "Saved checkpoint" in history.read_text()):
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
        holder = json.loads(lock.read_text())
        assert holder["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()
    assert lock.exists()
    status = _train(tiny_databin, run, max_epoch=2)
    assert status["num_updates"] == 2 * UPDATES_PER_EPOCH
    assert parse((run / "train.log").read_text().splitlines()).loaded is not None


def test_prune_after_scoring(tmp_path):
    folder = rf.RunFolder(tmp_path / "run")
    folder.checkpoints.mkdir(parents=True)
    for name in ("checkpoint1.pt", "checkpoint2.pt", "checkpoint_last.pt", "checkpoint_2_9.pt"):
        (folder.checkpoints / name).write_bytes(b"x")
    (folder.checkpoints / "train.log").write_text("history\n")
    assert rf.prune_after_scoring(folder, "all") == []
    removed = rf.prune_after_scoring(folder, "last")
    assert sorted(removed) == ["checkpoint1.pt", "checkpoint2.pt", "checkpoint_2_9.pt"]
    assert {p.name for p in folder.checkpoints.iterdir()} == {
        "checkpoint_last.pt", "train.log", "run.json"}  # fmt: skip
    assert rf.prune_after_scoring(folder, "none") == ["checkpoint_last.pt"]
    assert rf.read_record(folder)["pruned"] == "none"
    with rf.TrainerLock(folder):
        shutil.copy(folder.history, folder.checkpoints / "checkpoint9.pt")
        messages: list[str] = []
        assert rf.prune_after_scoring(folder, "none", say=messages.append) == []
        assert "not pruned: another trainer is working" in messages[0]
