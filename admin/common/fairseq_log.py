"""Read what ``fairseq-train`` printed: progress, loss curves, fp16 overflows, divergence.

fairseq 0.12 with ``--log-format simple`` prints three kinds of progress line::

    ... | train_inner | epoch 001:      3 / 15 loss=12.9, nll_loss=12.8, ..., num_updates=3, ...
    ... | train | epoch 001 | loss 13.187 | nll_loss 13.1 | ... | num_updates 15 | ...
    ... | valid | epoch 001 | valid on 'valid' subset | loss 12.727 | ... | num_updates 15

and, under ``--fp16``, one line per optimizer step whose gradients overflowed (the
step is skipped: no update is counted)::

    ... | NOTE: gradient overflow detected, ignoring gradient, setting loss scale to: 64.0

:func:`read_line` turns one line into an event; :func:`parse` collects a whole
log; :mod:`admin.divergence` judges a run from the same events, line by line.
The training step uses this to fill ``status.json``; the plots use it for the
loss curves.  No fairseq import here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_INNER = re.compile(r"\| train_inner \| epoch (\d+):(.*)$")
_INNER_FIELD = re.compile(r"\b(\w+)=([^,\s]+)")
_EPOCH = re.compile(r"\| (train|valid) \| epoch (\d+) \|(.*)$")
_FIELD = re.compile(r"\|\s*(\w+) ([^|]+?)\s*(?=\||$)")
_LOADED = re.compile(r"Loaded checkpoint \S+ \(epoch (\d+) @ (\d+) updates\)")
_FRESH = "No existing checkpoint found"
_DONE = "done training in"  # fairseq_cli.train's last line on a run that reached its end
# A stop condition met inside an epoch (max_update, stop_time_hours; patience): fairseq
# still ends that epoch with its end-of-epoch summary, though the epoch is not complete.
_STOPPING = ("Stopping training due to", "early stop since valid performance")
_EPOCH_SAVED = re.compile(r"Saved checkpoint \S*?\bcheckpoint(\d+)\.pt \(epoch (\d+) @")
_WORLD = re.compile(r"training on (\d+) devices")
# fairseq 0.12 ("NOTE: gradient overflow ...") and 0.9, the paper's ("| WARNING: overflow ...").
_OVERFLOW = re.compile(
    r"(?:NOTE: gradient|\| WARNING:) overflow detected, (?:ignoring gradient)?"
    r"(?:.*?setting loss scale to: (\S+))?"
)

# Written by admin.train before each attempt's output in the run's history file.
ATTEMPT_MARKER = "==== admin.train attempt"

# What fairseq raises or logs when the loss or the gradients stop being finite.
# On several ranks a NaN gradient norm surfaces as "gradients are inconsistent
# between workers" (the consistency check runs before the finiteness check),
# so that message counts only when the per-rank norms it lists are nan/inf.
_FLOATING_POINT = "FloatingPointError:"
_NONFINITE_GRADS = "gradients are Nan/Inf"
_MIN_LOSS_SCALE = "Minimum loss scale reached"
_INCONSISTENT = "gradients are inconsistent between workers"
_RANK_NORM = re.compile(r"rank\s+\d+ = (\S+)")


@dataclass
class Point:
    epoch: int
    num_updates: int
    loss: float
    nll_loss: float | None = None  # base 2, per target token (absent for some criteria)
    lr: float | None = None
    loss_scale: float | None = None  # fp16/amp only


@dataclass(frozen=True)
class Progress:
    """A ``train_inner``, ``train`` (end of epoch) or ``valid`` line."""

    kind: str
    point: Point


@dataclass(frozen=True)
class Overflow:
    """One skipped optimizer step: fp16 gradients overflowed."""

    loss_scale: float | None  # the scale fairseq set after the overflow


@dataclass(frozen=True)
class Loaded:
    """fairseq resumed from a checkpoint (``epoch`` is the epoch it resumes into)."""

    epoch: int
    num_updates: int


@dataclass(frozen=True)
class FreshStart:
    """fairseq found no checkpoint: training starts from initialisation."""


@dataclass(frozen=True)
class WorldSize:
    size: int


@dataclass(frozen=True)
class FloatingPoint:
    """A ``FloatingPointError`` line (the message after the colon)."""

    message: str


@dataclass(frozen=True)
class RankNorm:
    """One ``rank N = norm`` line of fairseq's inconsistent-gradients report."""

    norm: float


@dataclass(frozen=True)
class AttemptStart:
    """admin.train's marker before an attempt's output."""


@dataclass(frozen=True)
class Stopping:
    """fairseq met a stop condition at this update (maybe inside an epoch)."""


@dataclass(frozen=True)
class EpochSaved:
    """fairseq saved the end-of-epoch checkpoint ``checkpoint<epoch>.pt``."""

    epoch: int


@dataclass(frozen=True)
class Done:
    """fairseq's "done training": the run reached its stop conditions."""


Event = (
    Progress | Overflow | Loaded | FreshStart | WorldSize | FloatingPoint | RankNorm
    | AttemptStart | Done | Stopping | EpochSaved
)  # fmt: skip


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _optional(fields: dict[str, str], key: str) -> float | None:
    return _number(fields[key]) if fields.get(key, "None") != "None" else None


def _point(epoch: str, fields: dict[str, str]) -> Point | None:
    # An epoch without a single update (every step overflowed) logs "loss None".
    if not fields.get("num_updates", "").isdigit() or fields.get("loss", "None") == "None":
        return None
    return Point(
        int(epoch), int(fields["num_updates"]), _number(fields["loss"]),
        _optional(fields, "nll_loss"), _optional(fields, "lr"), _optional(fields, "loss_scale"),
    )  # fmt: skip


def read_line(line: str) -> Event | None:
    """The event one line of fairseq-train's output (or admin.train's marker) carries."""
    if m := _INNER.search(line):
        point = _point(m[1], dict(_INNER_FIELD.findall(m[2])))
        return Progress("train_inner", point) if point else None
    if m := _EPOCH.search(line):
        point = _point(m[2], dict(_FIELD.findall("|" + m[3])))
        return Progress(m[1], point) if point else None
    if m := _OVERFLOW.search(line):
        return Overflow(_number(m[1]) if m[1] else None)
    if _FLOATING_POINT in line:
        return FloatingPoint(line.split(_FLOATING_POINT, 1)[1].strip())
    if m := _RANK_NORM.search(line):
        return RankNorm(_number(m[1]))
    if m := _LOADED.search(line):
        return Loaded(int(m[1]), int(m[2]))
    if _FRESH in line:
        return FreshStart()
    if m := _WORLD.search(line):
        return WorldSize(int(m[1]))
    if line.startswith(ATTEMPT_MARKER):
        return AttemptStart()
    if _DONE in line:
        return Done()
    if any(stop in line for stop in _STOPPING):
        return Stopping()
    if m := _EPOCH_SAVED.search(line):
        return EpochSaved(int(m[2]))
    return None


@dataclass
class TrainLog:
    """Progress and curves of one run (possibly several attempts, appended)."""

    train_inner: list[Point] = field(default_factory=list)
    train_epochs: list[Point] = field(default_factory=list)
    valid: list[Point] = field(default_factory=list)
    loaded: tuple[int, int] | None = None  # (epoch, num_updates) as fairseq logs a resume
    complete: list[int] = field(default_factory=list)  # epochs whose summary ended them
    world_size: int | None = None
    overflows: int = 0  # skipped fp16 steps

    @property
    def num_updates(self) -> int:
        counts = [p.num_updates for p in (*self.train_inner, *self.train_epochs, *self.valid)]
        if self.loaded:
            counts.append(self.loaded[1])
        return max(counts, default=0)

    @property
    def epochs(self) -> int:
        """Completed epochs: the last end-of-epoch summary of a complete epoch, or what a
        resume started from.

        fairseq prints the summary also when a stop condition ends an epoch early (at
        ``max_update``); such an epoch counts only if its ``checkpoint<E>.pt`` was saved
        (the stop fell on its last update).  fairseq's "Loaded checkpoint ... (epoch E @
        U updates)" names the epoch the resumed run is in (E = 2 after checkpoint1.pt,
        E = 1 after a stop inside epoch 1), so E - 1 are complete.
        """
        done = list(self.complete)
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


def parse(lines: Iterable[str]) -> TrainLog:
    log = TrainLog()
    lists = {"train_inner": log.train_inner, "train": log.train_epochs, "valid": log.valid}
    stopped, saved = False, set()  # in the epoch fairseq is in
    for line in lines:
        event = read_line(line)
        if isinstance(event, Progress):
            lists[event.kind].append(event.point)
            if event.kind == "train":  # the end-of-epoch summary
                if not stopped or event.point.epoch in saved:
                    log.complete.append(event.point.epoch)
                stopped, saved = False, set()
        elif isinstance(event, Stopping):
            stopped = True
        elif isinstance(event, EpochSaved):
            saved.add(event.epoch)
        elif isinstance(event, AttemptStart | FreshStart):
            stopped, saved = False, set()
        elif isinstance(event, Overflow):
            log.overflows += 1
        elif isinstance(event, Loaded):
            log.loaded = (event.epoch, event.num_updates)
        elif isinstance(event, WorldSize):
            log.world_size = event.size
    return log


def attempts(text: str) -> list[str]:
    """A run history's attempts, in order, each with its marker line (if it has one)."""
    parts = re.split(rf"(?m)^(?={re.escape(ATTEMPT_MARKER)})", text)
    return [p for p in parts if p]


def nonfinite_error(message: str, rank_norms: Iterable[float] = ()) -> str | None:
    """The divergence a ``FloatingPointError`` message reports, or ``None`` for another error.

    ``rank_norms`` are the per-rank gradient norms fairseq lists after an
    inconsistent-gradients error; that error is divergence only when one is nan/inf.
    """
    if _MIN_LOSS_SCALE in message or _NONFINITE_GRADS in message:
        return message
    if _INCONSISTENT in message:
        norms = list(rank_norms)
        if norms and not all(math.isfinite(v) for v in norms):
            listed = ", ".join(str(v) for v in norms)
            return f"{_NONFINITE_GRADS} (gradient norms across workers: {listed})"
    return None
