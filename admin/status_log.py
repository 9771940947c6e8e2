"""What a run's training history says now, read from its ends only (``admin.status``).

A history (``<run>/checkpoints/train.log``, every attempt appended) grows with the run;
a status refresh over a whole target must not read every byte of every one.  So only
its tail is read (from 64 KiB, doubled up to :data:`MAX_TAIL` until it holds what is
wanted) and its head (the first fairseq timestamp).  Lines are read with
:func:`admin.common.fairseq_log.read_line`, as everywhere else; this module adds the
speed fields (``wps``, ``wpb``) and the position in the epoch that the training step
has no use for.  No fairseq or torch import.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from admin.common.fairseq_log import Loaded, Progress, read_line

FIRST_TAIL = 64 * 1024
MAX_TAIL = 8 * 2**20  # a WMT epoch logs a few dozen lines: far less than this
HEAD = 256 * 1024  # hydra's warnings and the model's summary come before the first stamp
RECENT = 5  # train_inner lines whose speed is averaged ("recent tokens/s")

# fairseq's logging prefix (node-local time): "2026-12-07 07:55:03 | INFO | ..."
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \|")
# the position in the epoch of a train_inner line: "epoch 008:     22 / 104 loss=..."
_POSITION = re.compile(r"\| train_inner \| epoch \d+:\s+(\d+) / (\d+) ")
_WPS = re.compile(r"\bwps[= ]([0-9.]+)")
_WPB = re.compile(r"\bwpb[= ]([0-9.]+)")


@dataclass
class LogState:
    """The newest progress of a history, as far as its tail shows it."""

    epoch: int | None = None  # epoch of the newest progress line (in progress or ended)
    num_updates: int | None = None
    # the newest train_inner line's (epoch, updates into it, updates per epoch)
    position: tuple[int, int, int] | None = None
    epoch_ended: bool = False  # the newest progress line is an end-of-epoch summary
    valid_nll: float | None = None  # nll_loss (bits) of the newest validation
    speeds: list[tuple[float, float]] = field(default_factory=list)  # (wps, wpb), newest first
    first_stamp: datetime | None = None  # the history's first fairseq line
    last_stamp: datetime | None = None  # its newest one
    indexed: bool = False  # the attempts' index was read (then the next two hold)
    earlier_seconds: float = 0.0  # the spans of the attempts before the newest
    newest_start: datetime | None = None  # the newest attempt's first fairseq line

    @property
    def tokens_per_second(self) -> float | None:
        """Mean target tokens/s (fairseq's ``wps``, summed over ranks) of the recent lines."""
        if not self.speeds:
            return None
        return sum(w for w, _ in self.speeds) / len(self.speeds)

    @property
    def seconds_per_update(self) -> float | None:
        tps = self.tokens_per_second
        if not tps:
            return None
        return sum(b for _, b in self.speeds) / len(self.speeds) / tps

    @property
    def span_seconds(self) -> float | None:
        """The time trained: each attempt's first to last fairseq line, summed, so the
        waits between attempts (a queue, a requeue) are not counted.  Without the
        attempts' index (a history from before it) the whole history's span.  All
        stamps are the nodes' local time, so no time zone enters."""
        if not self.indexed:
            first = self.first_stamp
        elif self.newest_start is None:  # the newest attempt has logged nothing yet
            return self.earlier_seconds
        else:
            first = self.newest_start
        if first is None or self.last_stamp is None:
            return None
        return self.earlier_seconds + max(0.0, (self.last_stamp - first).total_seconds())


def _stamp(line: str) -> datetime | None:
    m = _STAMP.match(line)
    return datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S") if m else None


def _read_end(path: Path, size: int, length: int) -> tuple[str, bool]:
    """The last ``length`` bytes of the file as text, and whether that is all of it."""
    start = max(0, size - length)
    with path.open("rb") as handle:
        handle.seek(start)
        data = handle.read(size - start)
    text = data.decode("utf-8", errors="replace")
    if start:
        text = text.split("\n", 1)[1] if "\n" in text else ""  # a partial first line
    return text, start == 0


def _complete(state: LogState) -> bool:
    return (
        state.num_updates is not None and state.valid_nll is not None
        and state.position is not None and len(state.speeds) >= RECENT
    )  # fmt: skip


def _scan(lines: list[str], state: LogState) -> bool:
    """Fill ``state`` from lines, newest first; True once nothing more is wanted."""
    for line in reversed(lines):
        if state.last_stamp is None:
            state.last_stamp = _stamp(line)
        # only progress and resume lines matter here: skip the rest before any regex
        if "| train" not in line and "| valid |" not in line and "Loaded checkpoint" not in line:
            continue
        event = read_line(line)
        if isinstance(event, Loaded) and state.num_updates is None:
            # a resumed attempt that has not logged progress yet
            state.epoch, state.num_updates = event.epoch, event.num_updates
        if not isinstance(event, Progress):
            continue
        point = event.point
        if state.num_updates is None:
            state.epoch, state.num_updates = point.epoch, point.num_updates
            state.epoch_ended = event.kind == "train"
        if event.kind == "valid" and state.valid_nll is None:
            state.valid_nll = point.nll_loss if point.nll_loss is not None else point.loss
        if event.kind == "train_inner":
            if state.position is None and (m := _POSITION.search(line)):
                state.position = (point.epoch, int(m[1]), int(m[2]))
            wps, wpb = _WPS.search(line), _WPB.search(line)
            if len(state.speeds) < RECENT and wps and wpb:
                state.speeds.append((float(wps[1]), float(wpb[1])))
        if _complete(state):
            return True
    return False


def read_history(path: Path, attempts: Path | None = None) -> LogState | None:
    """The newest progress of a history file, or None without one; ``attempts``: the
    run's index of where each attempt starts in it (RunFolder.attempts)."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return None
    length = FIRST_TAIL
    while True:
        state = LogState()
        text, whole = _read_end(path, size, length)
        done = _scan(text.splitlines(), state)
        if done or whole or length >= MAX_TAIL:
            break
        length *= 2
    head, _ = (text, True) if whole else _read_head(path)
    state.first_stamp = _first_stamp(head)
    if attempts is not None:
        _attempt_spans(path, size, _offsets(attempts), state)
    return state


def _first_stamp(text: str) -> datetime | None:
    return next((s for line in text.splitlines() if (s := _stamp(line))), None)


def _last_stamp(text: str) -> datetime | None:
    return next((s for line in reversed(text.splitlines()) if (s := _stamp(line))), None)


def _offsets(attempts: Path) -> list[int]:
    try:
        lines = attempts.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    # a line cut by a kill mid-write is not an attempt's start
    offsets = []
    for line in lines:
        try:
            offsets.append(int(json.loads(line)["offset"]))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(set(offsets))


def _attempt_spans(path: Path, size: int, offsets: list[int], state: LogState) -> None:
    """Each earlier attempt's span into ``state.earlier_seconds``, the newest's start
    into ``state.newest_start``: two short reads per attempt (its head, its end)."""
    offsets = [o for o in offsets if 0 <= o < size]
    if not offsets:
        return
    with path.open("rb") as handle:
        starts = []
        for offset in offsets:
            handle.seek(offset)
            starts.append(_first_stamp(handle.read(HEAD).decode("utf-8", errors="replace")))
        for offset, start, end_at in zip(offsets, starts, offsets[1:], strict=False):
            length = min(FIRST_TAIL, end_at - offset)
            handle.seek(end_at - length)
            last = _last_stamp(handle.read(length).decode("utf-8", errors="replace"))
            if start is not None and last is not None:
                state.earlier_seconds += max(0.0, (last - start).total_seconds())
    state.indexed, state.newest_start = True, starts[-1]


def _read_head(path: Path) -> tuple[str, bool]:
    with path.open("rb") as handle:
        data = handle.read(HEAD)
    return data.decode("utf-8", errors="replace"), len(data) < HEAD
