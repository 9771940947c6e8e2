"""A verdict through the real steps: admin.train stops a run that stays on the unigram
plateau and leaves it resumable; admin.average and admin.evaluate score it and delete
nothing of it; a changed criterion continues it from checkpoint_last.pt, not afresh."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from admin.common.fairseq_log import ATTEMPT_MARKER
from tests.steps_support import ok, run_step, train_args

# Post-LN 6-6 at lr 0.03 on the tiny data learns the token frequencies and no more
# (tests/test_divergence.py): ~23 updates an epoch, judged from update 60 (2 warm-ups).
PLATEAU = {"lr": 0.03, "warmup_updates": 30, "max_tokens": 1000, "max_epoch": 8}
JUDGED = {"unigram_margin": 0.1, "bigram_margin": None}  # the tiny data's margin (see there)
GENERATE = json.dumps({"beam": 2, "max_len_b": 20, "batch_size": 20})


def _status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def _files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("*.pt"))


def _train(databin: Path, run: Path, divergence: dict) -> None:
    args = train_args(databin, run, "postln", "--divergence", json.dumps(divergence),
                      depth="6-6", **PLATEAU)  # fmt: skip
    ok(run_step("train", *args))


@pytest.mark.slow
def test_a_run_stopped_by_a_verdict_is_scored_kept_and_continued(tiny_databin, tmp_path):
    run = tmp_path / "results" / "tiny" / "postln" / "6-6" / "seed1"
    # 1. Stopped early, on the third validation in a row on the plateau (update 115 of 184).
    _train(tiny_databin, run, JUDGED)
    status = _status(run)
    assert status["status"] == "diverged" and status["rule"] == "fails to train", status
    assert status["stopped_early"] is True and status["num_updates"] == 115
    assert status["evidence"]["stall"]["plateau_since_update"] == 69
    history = (run / "checkpoints" / "train.log").read_text()
    assert "admin.train: stopped: fails to train" in history
    assert "done training" not in history  # fairseq was stopped, not finished
    kept = _files(run)
    assert "checkpoint_last.pt" in kept, kept

    # 2. Averaged and scored like any other run; checkpoints.keep none deletes nothing.
    ok(run_step("average", "--checkpoints", run / "checkpoints", "--status",
                run / "status.json", "--last", 1, "--out", run / "average.json"))  # fmt: skip
    average = json.loads((run / "average.json").read_text())
    assert average["status"] == "diverged" and average["checkpoint"] == "checkpoint_avg.pt"
    ok(run_step(
        "evaluate", "--data-bin", tiny_databin, "--average", run / "average.json",
        "--hparams", GENERATE, "--device", "cpu", "--keep-checkpoints", "none",
    ))  # fmt: skip
    scores = json.loads((run / "scores.json").read_text())
    assert scores["status"] == "diverged" and isinstance(scores["bleu_tokenized"], float)
    assert scores["num_sentences"] == 60
    assert _files(run) == kept

    # 3. The same criterion without stop_early: the run continues from its checkpoint to
    # its stop conditions (8 epochs) and is judged there; nothing is retrained.
    _train(tiny_databin, run, {**JUDGED, "stop_early": False})
    status = _status(run)
    assert status["num_updates"] == 8 * 23 and status["epochs"] == 8
    assert status["status"] == "diverged" and status["stopped_early"] is False
    history = (run / "checkpoints" / "train.log").read_text()
    second = history.split(ATTEMPT_MARKER)[-1]
    loaded = re.search(r"Loaded checkpoint \S+ \(epoch (\d+) @ (\d+) updates\)", second)
    assert loaded is not None, second[-3000:]
    assert int(loaded[2]) >= 92 and "No existing checkpoint found" not in second
    counts = [int(n) for n in re.findall(r"num_updates (\d+)", second)]
    assert min(counts) > int(loaded[2])  # continues after the checkpoint, not from update 1
    assert not list(run.glob("checkpoints.superseded-*"))  # nothing was moved aside
