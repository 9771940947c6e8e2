"""Reading fairseq-train's log (admin.common.fairseq_log): which epochs are complete."""

from __future__ import annotations

import pytest

from admin.common.fairseq_log import parse

P = "2026-01-01 00:00:00 | INFO |"


def _summary(epoch: int, updates: int) -> str:
    return f"{P} train | epoch {epoch:03d} | loss 9.1 | nll_loss 9.0 | num_updates {updates}"


def _saved(name: str, epoch: int, updates: int) -> str:
    return (
        f"{P} fairseq.checkpoint_utils | Saved checkpoint run/checkpoints/{name} "
        f"(epoch {epoch} @ {updates} updates, score 8.1) (writing took 0.1 seconds)"
    )


STOP = f"{P} fairseq_cli.train | Stopping training due to num_updates: 9 >= max_update: 9"
LOADED = f"{P} fairseq.trainer | Loaded checkpoint run/checkpoint_last.pt (epoch 2 @ 9 updates)"


@pytest.mark.parametrize(
    ("lines", "epochs"),
    [
        # two whole epochs
        ([_saved("checkpoint1.pt", 1, 6), _summary(1, 6), _saved("checkpoint2.pt", 2, 12),
          _summary(2, 12)], 2),
        # max_update inside epoch 2: fairseq saves checkpoint_last.pt and still prints
        # epoch 2's summary, but epoch 2 is not complete
        ([_saved("checkpoint1.pt", 1, 6), _summary(1, 6), STOP,
          _saved("checkpoint_last.pt", 2, 9), _summary(2, 9)], 1),
        # max_update on the epoch's last update: its epoch checkpoint is saved, complete
        ([_saved("checkpoint1.pt", 1, 6), _summary(1, 6), STOP.replace("9", "12"),
          _saved("checkpoint2.pt", 2, 12), _summary(2, 12)], 2),
        # resumed inside epoch 2 (fairseq names the epoch it is in) and finished it
        ([_summary(1, 6), STOP, _summary(2, 9), LOADED, _saved("checkpoint2.pt", 2, 12),
          _summary(2, 12)], 2),
        # resumed inside epoch 2, killed before its end
        ([_summary(1, 6), STOP, _summary(2, 9), LOADED], 1),
    ],
)  # fmt: skip
def test_an_epoch_counts_complete_only_when_fairseq_finished_it(lines, epochs):
    assert parse(lines).epochs == epochs
