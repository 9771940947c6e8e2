"""Read what ``fairseq-train`` printed: progress, loss curves and divergence.

fairseq 0.12 with ``--log-format simple`` prints three kinds of progress line::

    ... | train_inner | epoch 001:      3 / 15 loss=12.9, ..., num_updates=3, ...
    ... | train | epoch 001 | loss 13.187 | ... | num_updates 15 | ...
    ... | valid | epoch 001 | valid on 'valid' subset | loss 12.727 | ... | num_updates 15

The training step uses this to fill ``status.json`` and to tell divergence from
a crash; the plots use it for the loss curves.  No fairseq import here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_INNER = re.compile(r"\| train_inner \| epoch (\d+):.*?\bloss=([^,\s]+).*?\bnum_updates=(\d+)")
_EPOCH = re.compile(r"\| (train|valid) \| epoch (\d+) \|(.*)$")
_FIELD = re.compile(r"\|\s*(\w+) ([^|]+?)\s*(?=\||$)")
_LOADED = re.compile(r"Loaded checkpoint \S+ \(epoch (\d+) @ (\d+) updates\)")
_WORLD = re.compile(r"training on (\d+) devices")

# What fairseq raises or logs when the loss or the gradients stop being finite.
# On several ranks a NaN gradient norm surfaces as "gradients are inconsistent
# between workers" (the consistency check runs before the finiteness check),
# so that message counts only when the per-rank norms it lists are nan/inf.
_NONFINITE_GRADS = "gradients are Nan/Inf"
_MIN_LOSS_SCALE = "Minimum loss scale reached"
_INCONSISTENT = "gradients are inconsistent between workers"
_RANK_NORM = re.compile(r"rank\s+\d+ = (\S+)")


@dataclass
class Point:
    epoch: int
    num_updates: int
    loss: float


@dataclass
class TrainLog:
    """Progress and curves of one run (possibly several attempts, appended)."""

    train_inner: list[Point] = field(default_factory=list)
    train_epochs: list[Point] = field(default_factory=list)
    valid: list[Point] = field(default_factory=list)
    loaded: tuple[int, int] | None = None  # (epoch, num_updates) as fairseq logs a resume
    world_size: int | None = None

    @property
    def num_updates(self) -> int:
        counts = [p.num_updates for p in (*self.train_inner, *self.train_epochs, *self.valid)]
        if self.loaded:
            counts.append(self.loaded[1])
        return max(counts, default=0)

    @property
    def epochs(self) -> int:
        """Completed epochs: the last end-of-epoch summary, or what a resume started from.

        fairseq's "Loaded checkpoint ... (epoch E @ U updates)" names the epoch the
        resumed run is in (E = 2 after checkpoint1.pt), so E - 1 are complete.
        """
        done = [p.epoch for p in self.train_epochs]
        if self.loaded:
            done.append(self.loaded[0] - 1)
        return max(done, default=0)

    def train_curve(self) -> list[Point]:
        """Training loss by update, the latest attempt winning where attempts overlap."""
        return _dedupe(self.train_inner or self.train_epochs)

    def valid_curve(self) -> list[Point]:
        return _dedupe(self.valid)


def _dedupe(points: list[Point]) -> list[Point]:
    by_update = {p.num_updates: p for p in points}
    return [by_update[k] for k in sorted(by_update)]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def parse(lines: Iterable[str]) -> TrainLog:
    log = TrainLog()
    for line in lines:
        if m := _INNER.search(line):
            log.train_inner.append(Point(int(m[1]), int(m[3]), _number(m[2])))
        elif m := _EPOCH.search(line):
            fields = dict(_FIELD.findall("|" + m[3]))
            if "loss" not in fields or "num_updates" not in fields:
                continue
            point = Point(int(m[2]), int(fields["num_updates"]), _number(fields["loss"]))
            (log.train_epochs if m[1] == "train" else log.valid).append(point)
        elif m := _LOADED.search(line):
            log.loaded = (int(m[1]), int(m[2]))
        elif m := _WORLD.search(line):
            log.world_size = int(m[1])
    return log


def divergence_reason(text: str, log: TrainLog | None = None) -> str | None:
    """Why this attempt diverged, or ``None`` if nothing in ``text`` says it did.

    ``text`` is one attempt's output.  Divergence is fairseq's non-finite
    gradient check, its minimum fp16 loss scale, or a logged non-finite loss.
    Any other ``FloatingPointError`` is left to the caller as a failure.
    """
    for line in text.splitlines():
        if "FloatingPointError:" not in line:
            continue
        message = line.split("FloatingPointError:", 1)[1].strip()
        if _MIN_LOSS_SCALE in message or _NONFINITE_GRADS in message:
            return message
        if _INCONSISTENT in message:
            norms = [_number(v) for v in _RANK_NORM.findall(text)]
            if norms and not all(math.isfinite(v) for v in norms):
                listed = ", ".join(str(v) for v in norms)
                return f"{_NONFINITE_GRADS} (gradient norms across workers: {listed})"
    log = log if log is not None else parse(text.splitlines())
    for point in (*log.train_inner, *log.train_epochs, *log.valid):
        if not math.isfinite(point.loss):
            return f"loss became {point.loss} at update {point.num_updates}"
    return None
