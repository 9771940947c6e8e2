"""admin.status_log: a history read from its ends, and the time trained across attempts.

The histories here are written line by line in fairseq's logging format, so that the
gaps between attempts are known exactly; tests/test_status.py reads real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from admin.common.fairseq_log import ATTEMPT_MARKER
from admin.status_log import read_history


def _line(stamp: str, text: str) -> str:
    return f"2026-12-07 {stamp} | INFO | {text}\n"


def _write_attempts(history: Path, attempts: list[list[str]]) -> list[int]:
    """Append each attempt after admin.train's marker; the byte offset of each marker."""
    offsets = []
    with history.open("a", encoding="utf-8") as handle:
        for lines in attempts:
            offsets.append(handle.tell())
            handle.write(f"{ATTEMPT_MARKER} 2026-12-07T00:00:00Z: []\n")
            handle.writelines(lines)
    return offsets


def _index(folder: Path, offsets: list[int]) -> Path:
    path = folder / "attempts.jsonl"
    path.write_text("".join(json.dumps({"offset": o}) + "\n" for o in offsets))
    return path


def test_the_time_between_attempts_is_not_trained(tmp_path):
    history = tmp_path / "train.log"
    offsets = _write_attempts(history, [
        # first attempt: 10:00:00 to 10:20:00, then killed; requeued three hours later
        [_line("10:00:00", "fairseq_cli.train | model transformer"),
         _line("10:20:00", "train_inner | epoch 001:     50 / 100 loss=9.1, wps=1000, wpb=500")],
        # second attempt: 13:20:00 to 13:50:30
        [_line("13:20:00", "fairseq_cli.train | model transformer"),
         _line("13:50:30", "train_inner | epoch 002:     10 / 100 loss=8.2, wps=1000, wpb=500")],
    ])  # fmt: skip
    state = read_history(history, _index(tmp_path, offsets))
    assert state.span_seconds == 20 * 60 + 30 * 60 + 30
    # without the index (a history from before it): the whole span, waits included
    assert read_history(history).span_seconds == 3 * 3600 + 50 * 60 + 30


def test_an_attempt_that_has_logged_nothing_yet_adds_nothing(tmp_path):
    history = tmp_path / "train.log"
    offsets = _write_attempts(history, [
        [_line("10:00:00", "fairseq_cli.train | start"), _line("10:05:00", "train | done")],
        [],  # just started: only admin.train's marker so far
    ])  # fmt: skip
    assert read_history(history, _index(tmp_path, offsets)).span_seconds == 5 * 60


def test_a_torn_index_line_is_not_an_attempt(tmp_path):
    history = tmp_path / "train.log"
    offsets = _write_attempts(history, [
        [_line("10:00:00", "start"), _line("10:01:00", "end")],
        [_line("11:00:00", "start"), _line("11:02:00", "end")],
    ])  # fmt: skip
    index = _index(tmp_path, offsets)
    with index.open("a") as handle:
        handle.write('{"offs')  # a kill mid-write
    assert read_history(history, index).span_seconds == 3 * 60
    # a missing index is the history from before it
    assert read_history(history, tmp_path / "none.jsonl").span_seconds == 62 * 60
