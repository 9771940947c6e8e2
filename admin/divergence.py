"""Was a run ``diverged``, as the paper uses the word?  Judged from fairseq-train's log.

    python -m admin.divergence --log RUN/train.log --data-bin DATA_BIN \\
        [--hparams '{"warmup_updates": 4000, "log_interval": 100}'] [--target-lang en] \\
        [--overflow-window 1000] [--overflow-share 0.5] [--unigram-margin 0.5|null] \\
        [--bigram-margin 0|null] [--stall-after-warmup 2] [--plateau-patience 3] \\
        [--stuck-patience 3] [--stuck-min-improvement 0.1]

A run diverged (docs/divergence.md gives the why of each rule and default) when

1. its loss or gradients stopped being finite (fairseq's ``FloatingPointError``:
   non-finite gradients or the minimum fp16 loss scale, or a logged nan/inf loss);
2. an fp16 overflow storm: at least ``overflow_share`` of the last
   ``overflow_window`` optimizer steps (updates + skipped overflow steps) overflowed;
3. it fails to train: its last ``plateau_patience`` validations from
   ``stall_after_warmup`` x ``warmup_updates`` on all have a valid ``nll_loss`` (bits per
   target token) that is not below the cross-entropy of the target side's unigram
   distribution minus ``unigram_margin`` (it never left the unigram plateau, or fell back
   onto it and stayed there);
4. it is stuck: at the end of a run (fairseq's "done training", whatever stopped it) of at
   least ``stall_after_warmup`` x ``warmup_updates``, its best valid ``nll_loss`` is not
   ``bigram_margin`` below the cross-entropy of a bigram model of the target side
   (:mod:`admin.baselines`), *and* it had stopped improving: its last ``stuck_patience``
   validations did not improve on the best before them by ``stuck_min_improvement`` bits.
   A run still improving when its budget ends is slow or short, not stuck.

A verdict is a label: the run keeps its checkpoints and is averaged and scored like any
other (docs/divergence.md, "What is kept").

:class:`Monitor` is fed fairseq's output line by line and says as soon as the
run is diverged (so the training step can stop it); :func:`judge` reads a
whole log.  A history of several attempts is judged since its last fresh start.
No fairseq import: plain Python over log lines and fairseq's binarized files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from admin.baselines import BigramBaseline, UnigramBaseline
from admin.baselines import read as read_baselines
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.common.fairseq_log import (
    AttemptStart,
    Done,
    FloatingPoint,
    FreshStart,
    Loaded,
    Overflow,
    Progress,
    RankNorm,
    nonfinite_error,
    read_line,
)

# fairseq's defaults where a recipe leaves these unset.
FAIRSEQ_LOG_INTERVAL = 100
FAIRSEQ_INVERSE_SQRT_WARMUP = 4000


@dataclass(frozen=True)
class Criterion:
    """When a run counts as diverged; every threshold is a config choice (docs/divergence.md)."""

    overflow_window: int = 1000  # optimizer steps (updates + skipped overflow steps)
    overflow_share: float = 0.5  # of those, at least this share overflowed: a storm
    unigram_margin: float | None = 0.5  # bits below the unigram; None: training not judged
    bigram_margin: float | None = 0.0  # bits below the target bigram at the end; None: not judged
    stall_after_warmup: float = 2.0  # the training test starts at this many warm-ups
    plateau_patience: int = 3  # rule 3: validations in a row on the plateau before a verdict
    stuck_patience: int = 3  # rule 4: the last this many validations ...
    stuck_min_improvement: float = 0.1  # ... improved the best by less than this (bits)
    warmup_updates: int = 0  # the recipe's
    log_interval: int = FAIRSEQ_LOG_INTERVAL  # the recipe's (bounds the unlogged updates)

    def __post_init__(self) -> None:
        checks = {
            "overflow_window": self.overflow_window >= 1,
            "overflow_share": 0 < self.overflow_share <= 1,
            "unigram_margin": self.unigram_margin is None or math.isfinite(self.unigram_margin),
            "bigram_margin": self.bigram_margin is None or math.isfinite(self.bigram_margin),
            "stall_after_warmup": self.stall_after_warmup >= 0,
            "plateau_patience": self.plateau_patience >= 1,
            "stuck_patience": self.stuck_patience >= 1,
            "stuck_min_improvement": self.stuck_min_improvement >= 0,
            "warmup_updates": self.warmup_updates >= 0,
            "log_interval": self.log_interval >= 1,
        }
        for key, ok in checks.items():
            if not ok:
                raise AdminError(f"divergence criterion: {key} = {getattr(self, key)!r} is invalid")

    @classmethod
    def for_recipe(
        cls, hparams: Mapping[str, Any], settings: Mapping[str, Any] | None = None
    ) -> Criterion:
        """The criterion for a run trained with fairseq options ``hparams``.

        ``settings`` are the config's ``divergence`` keys (any of :data:`SETTINGS`;
        others are refused).
        """
        settings = dict(settings or {})
        allowed = set(SETTINGS)
        unknown = sorted(settings.keys() - allowed)
        if unknown:
            raise AdminError(
                f"divergence settings: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        warmup = hparams.get("warmup_updates")
        if warmup is None:  # fairseq's default: inverse_sqrt warms up, the others do not
            inverse_sqrt = hparams.get("lr_scheduler") == "inverse_sqrt"
            warmup = FAIRSEQ_INVERSE_SQRT_WARMUP if inverse_sqrt else 0
        interval = hparams.get("log_interval")
        return cls(
            warmup_updates=int(warmup),
            log_interval=int(FAIRSEQ_LOG_INTERVAL if interval is None else interval),
            **settings,
        )

    @property
    def stall_from(self) -> int:
        """The first update at which a validation can show that the run fails to train."""
        return math.ceil(self.stall_after_warmup * self.warmup_updates)

    @property
    def storm_count(self) -> int:
        """Overflowed steps among the last ``overflow_window`` that make a storm."""
        return math.ceil(self.overflow_share * self.overflow_window)


SETTINGS = ("overflow_window", "overflow_share", "unigram_margin", "bigram_margin",
            "stall_after_warmup", "plateau_patience", "stuck_patience",
            "stuck_min_improvement")  # fmt: skip


# --- the verdict ---------------------------------------------------------------------


# The rules, by the name status.json and the tables give them (docs/divergence.md).
NONFINITE, STORM, FAILS_TO_TRAIN, STUCK = "non-finite", "overflow storm", "fails to train", "stuck"
RULES = (NONFINITE, STORM, FAILS_TO_TRAIN, STUCK)


@dataclass(frozen=True)
class Verdict:
    diverged: bool
    reason: str  # one line
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON-able
    rule: str | None = None  # one of RULES when diverged

    def to_json(self) -> dict[str, Any]:
        return {"diverged": self.diverged, "rule": self.rule, "reason": self.reason,
                "evidence": self.evidence}  # fmt: skip


def _finite(value: float | None) -> float | str | None:
    """JSON has no nan/inf: write them as strings."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


class Monitor:
    """Judges a run while fairseq writes its log: ``feed`` each line as it comes.

    ``feed`` returns the :class:`Verdict` on the line where the run is first
    judged diverged (and ``None`` on every other line); :meth:`finish` judges
    the run as it stands at the end of the log.  A run that is stopped at its
    first verdict ends diverged; one left to train on is judged by its end state
    (a storm that passed or a late start is then no divergence), and the first
    verdict stays in the evidence.  Whether a run beat the source-blind ``bigram`` is
    judged only once it ended (fairseq's "done training"): a run still training may be
    slow, not stuck.
    """

    def __init__(
        self,
        criterion: Criterion,
        unigram: UnigramBaseline | None = None,
        bigram: BigramBaseline | None = None,
    ):
        self.criterion = criterion
        self.unigram = unigram
        self.bigram = bigram
        self._reset()

    def _reset(self) -> None:
        self.updates = 0  # the last update count fairseq logged
        self._steps: deque[bool] = deque(maxlen=self.criterion.overflow_window)  # True: overflow
        self.overflows = 0
        self.peak_storm = (0, 0)  # (overflowed steps in a window, update) at its worst
        self.loss_scale: float | None = None
        self._logged_last = True  # no overflow since the last logged update count
        self.valid: list[tuple[int, float]] = []  # (update, nll_loss) of each validation
        self._nonfinite: dict[str, Any] | None = None
        self._inconsistent: str | None = None  # a pending inconsistent-gradients message
        self._norms: list[float] = []
        self.first: Verdict | None = None
        self.ended = False  # fairseq said "done training" since it last started

    # -- events -----------------------------------------------------------------------

    def feed(self, line: str) -> Verdict | None:
        event = read_line(line)
        if event is None:
            return None
        if isinstance(event, FreshStart):
            self._reset()  # a new run: nothing before it counts
        elif isinstance(event, AttemptStart):
            self._inconsistent, self._norms = None, []
        elif isinstance(event, Loaded):
            self._rewind(event.num_updates)
            self.ended = False  # every fairseq process starts afresh or from a checkpoint
        elif isinstance(event, Done):
            self.ended = True
        elif isinstance(event, Overflow):
            self._steps.append(True)
            self._logged_last = False
            self.overflows += 1
            self.loss_scale = event.loss_scale
        elif isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, FloatingPoint):
            self._floating_point(event.message)
        elif isinstance(event, RankNorm) and self._inconsistent is not None:
            self._norms.append(event.norm)
            self._floating_point(self._inconsistent)
        verdict = self._diverged()
        if verdict is not None and self.first is None:
            self.first = verdict
            return verdict
        return None

    def _rewind(self, updates: int) -> None:
        """A resume from a checkpoint at ``updates``: later steps are no longer the run's."""
        if updates < self.updates:
            self._steps.clear()
            self.valid = [(u, nll) for u, nll in self.valid if u <= updates]
        self.updates = updates

    def _progress(self, event: Progress) -> None:
        point = event.point
        if not math.isfinite(point.loss) or (
            point.nll_loss is not None and not math.isfinite(point.nll_loss)
        ):
            bad = point.loss if not math.isfinite(point.loss) else point.nll_loss
            self._nonfinite = {"value": str(bad), "line": event.kind, "update": point.num_updates}
            return
        new = point.num_updates - self.updates
        if new < 0:  # a resume fairseq did not announce: start the window afresh
            self._steps.clear()
        else:
            self._steps.extend([False] * min(new, self.criterion.overflow_window))
        self.updates = point.num_updates
        self._logged_last = True
        if point.loss_scale is not None:
            self.loss_scale = point.loss_scale
        if event.kind == "valid" and point.nll_loss is not None:
            self.valid.append((point.num_updates, point.nll_loss))

    def _floating_point(self, message: str) -> None:
        reason = nonfinite_error(message, self._norms)
        if reason is not None:
            self._nonfinite = {"error": reason, "update": self.updates}
        elif "inconsistent" in message:
            self._inconsistent = message

    # -- the three rules --------------------------------------------------------------

    def _unlogged_updates(self) -> int:
        """The most updates fairseq can have made since its last logged count:
        it logs every ``log_interval``-th update."""
        interval = self.criterion.log_interval
        return interval - 1 - self.updates % interval

    def window_overflows(self) -> int:
        """Overflowed steps among the last ``overflow_window``, counting the updates
        fairseq has not logged yet as the most recent steps (so never too many)."""
        room = self.criterion.overflow_window
        if not self._logged_last:
            room -= self._unlogged_updates()
        if room <= 0:
            return 0
        steps = list(self._steps)[-room:]
        return sum(steps)

    def _storm(self) -> dict[str, Any] | None:
        count = self.window_overflows()
        if count > self.peak_storm[0]:
            self.peak_storm = (count, self.updates)
        if count < self.criterion.storm_count:
            return None
        return {
            "overflowed_steps": count,
            "window_steps": self.criterion.overflow_window,
            "update": self.updates,
            "loss_scale": self.loss_scale,
        }

    def _fails_to_train(self) -> dict[str, Any] | None:
        """Rule 3: the last ``plateau_patience`` validations judged (from ``stall_from``
        on) are all on the unigram plateau.  One bad validation is not enough."""
        margin = self.criterion.unigram_margin
        if self.unigram is None or margin is None:
            return None
        patience = self.criterion.plateau_patience
        judged = [v for v in self.valid if v[0] >= self.criterion.stall_from][-patience:]
        limit = self.unigram.bits - margin
        if len(judged) < patience or any(nll < limit for _, nll in judged):
            return None
        update, nll = judged[-1]
        best_update, best = min(self.valid, key=lambda v: v[1])
        return {"valid_nll": nll, "update": update, "best_nll": best, "best_update": best_update,
                "limit": round(limit, 4), "plateau_since_update": judged[0][0],
                "plateau_validations": patience}  # fmt: skip

    def _plateau_streak(self) -> int:
        """Validations at the end of the run in a row on the plateau (from ``stall_from``)."""
        if self.unigram is None or self.criterion.unigram_margin is None:
            return 0
        limit = self.unigram.bits - self.criterion.unigram_margin
        streak = 0
        for update, nll in reversed(self.valid):
            if update < self.criterion.stall_from or nll < limit:
                break
            streak += 1
        return streak

    def improvement(self) -> tuple[float, int] | None:
        """How much the last ``stuck_patience`` validations improved on the best before
        them (bits) and the update the window starts at; None while too few validations."""
        k = self.criterion.stuck_patience
        if len(self.valid) < k + 1:
            return None
        before = min(nll for _, nll in self.valid[:-k])
        recent = min(nll for _, nll in self.valid[-k:])
        return round(before - recent, 4), self.valid[-k][0]

    def _stuck(self) -> Verdict | None:
        """Rule 4, at the end of a run: its best validation is not ``bigram_margin``
        below the target bigram, a model that never sees the source, and it had stopped
        improving (:meth:`improvement` below ``stuck_min_improvement``)."""
        margin = self.criterion.bigram_margin
        if self.bigram is None or margin is None or not self.valid:
            return None
        last_update = self.valid[-1][0]
        best_update, best = min(self.valid, key=lambda v: v[1])
        limit = self.bigram.bits - margin
        if last_update < self.criterion.stall_from or best < limit:
            return None
        gain = self.improvement()
        if gain is None or gain[0] >= self.criterion.stuck_min_improvement:
            return None  # too short to tell, or still improving: slow, not stuck
        below = f"{margin} bits below" if margin else "below"
        k = self.criterion.stuck_patience
        reason = (
            f"stuck above a source-blind model: best valid nll_loss {best} (update "
            f"{best_update}) is not {below} the target bigram's {self.bigram.bits:.3f}, a "
            f"model that never sees the source, and its last {k} validations (from update "
            f"{gain[1]}) improved it by {gain[0]:.3f} bits, less than "
            f"{self.criterion.stuck_min_improvement}, at the end of the run (update {last_update})"
        )
        stuck = {"best_nll": best, "best_update": best_update, "last_update": last_update,
                 "limit": round(limit, 4), "improvement": gain[0],
                 "window_from_update": gain[1], "window_validations": k}  # fmt: skip
        return self._verdict(STUCK, reason, stuck=stuck)

    def _diverged(self) -> Verdict | None:
        if self._nonfinite is not None:
            where = self._nonfinite
            what = where.get("error") or f"{where['line']} loss became {where['value']}"
            return self._verdict(NONFINITE, f"non-finite: {what} at update {where['update']}")
        if (storm := self._storm()) is not None:
            return self._verdict(
                STORM,
                f"fp16 overflow storm: {storm['overflowed_steps']} of the last "
                f"{storm['window_steps']} optimizer steps overflowed (loss scale "
                f"{storm['loss_scale']}) at update {storm['update']}",
                storm=storm,
            )
        if (stall := self._fails_to_train()) is not None:
            assert self.unigram is not None
            c = self.criterion
            base = (
                f"is not {c.unigram_margin} bits below the target unigram's {self.unigram.bits:.3f}"
            )
            since = (
                f"{c.plateau_patience} validations in a row on the plateau since update "
                f"{stall['plateau_since_update']}"
            )
            if stall["best_nll"] < stall["limit"]:
                reason = (
                    f"fell back to the unigram plateau: valid nll_loss {stall['valid_nll']} at "
                    f"update {stall['update']} {base} (best {stall['best_nll']} at update "
                    f"{stall['best_update']}; {since})"
                )
            else:
                reason = (
                    f"fails to train: best valid nll_loss {stall['best_nll']} (update "
                    f"{stall['best_update']}) {base}, at update {stall['update']} "
                    f"({since}; judged from update {c.stall_from}: {c.stall_after_warmup} x "
                    "warm-up)"
                )
            return self._verdict(FAILS_TO_TRAIN, reason, stall=stall)
        return None

    def _verdict(self, rule: str, reason: str, **extra: Any) -> Verdict:
        return Verdict(True, reason, {**self.evidence(), **extra}, rule)

    def evidence(self) -> dict[str, Any]:
        """What the judgement rests on, as it stands (JSON-able)."""
        best = min(self.valid, key=lambda v: v[1]) if self.valid else None
        return {
            "criterion": {**asdict(self.criterion), "stall_from_update": self.criterion.stall_from},
            "unigram": self.unigram.to_json() if self.unigram else None,
            "bigram": self.bigram.to_json() if self.bigram else None,
            "updates": self.updates,
            "valid": {
                "best_nll": best[1] if best else None,
                "best_update": best[0] if best else None,
                "last_nll": self.valid[-1][1] if self.valid else None,
                "last_update": self.valid[-1][0] if self.valid else None,
                "validations": len(self.valid),
            },
            "overflow": {
                "total": self.overflows,
                "window_overflows": self.window_overflows(),
                "peak_window_overflows": self.peak_storm[0],
                "peak_update": self.peak_storm[1],
                "loss_scale": _finite(self.loss_scale),
            },
            "nonfinite": self._nonfinite,
        }

    # -- the end ----------------------------------------------------------------------

    def finish(self) -> Verdict:
        """The verdict on the run as the log leaves it (the end-of-run rule only if
        fairseq's last process said "done training")."""
        verdict = self._diverged()
        if verdict is None and self.ended:
            verdict = self._stuck()
        first = None
        if self.first is not None:  # where a live monitor said it first
            first = {"rule": self.first.rule, "reason": self.first.reason,
                     "update": self.first.evidence["updates"]}  # fmt: skip
        if verdict is not None:
            return Verdict(True, verdict.reason, {**verdict.evidence, "first_verdict": first},
                           verdict.rule)  # fmt: skip
        return Verdict(False, self._healthy_reason(), {**self.evidence(), "first_verdict": first})

    def _healthy_reason(self) -> str:
        if self.unigram is None or self.criterion.unigram_margin is None:
            return "no non-finite loss or overflow storm (training not judged: no unigram test)"
        if not self.valid:
            return "no validation logged: training not judged"
        best_update, best = min(self.valid, key=lambda v: v[1])
        below = self.unigram.bits - best
        if self.valid[-1][0] < self.criterion.stall_from:
            return (
                f"not judged on training: the last validation (update {self.valid[-1][0]}) "
                f"precedes update {self.criterion.stall_from} "
                f"({self.criterion.stall_after_warmup} x warm-up); best valid nll_loss {best} "
                f"is {below:.3f} bits below the unigram"
            )
        reason = (f"trains: best valid nll_loss {best} (update {best_update}) is {below:.3f} "
                  f"bits below the target unigram's {self.unigram.bits:.3f}")  # fmt: skip
        on_plateau = self._plateau_streak()
        if on_plateau:
            last_update, last = self.valid[-1]
            reason += (
                f", but its last {on_plateau} validation(s) (update {last_update}: {last}) are "
                f"back on the plateau; {self.criterion.plateau_patience} in a row make it "
                "'fails to train'"
            )
        if self.bigram is not None and self.criterion.bigram_margin is not None:
            bigram = self.bigram.bits
            reason += f" and {bigram - best:.3f} below the bigram's {bigram:.3f}"
            if best >= bigram - self.criterion.bigram_margin:
                reason += self._not_stuck()
        return reason

    def _not_stuck(self) -> str:
        """Why a run not below the bigram is not (yet) stuck."""
        if not self.ended:
            return " (not at its end: the bigram is judged when fairseq says 'done training')"
        gain = self.improvement()
        k = self.criterion.stuck_patience
        if gain is None:
            return (f" (too short to tell stuck from slow: {len(self.valid)} validations, "
                    f"the stuck test needs {k + 1})")  # fmt: skip
        return (f" (still improving: its last {k} validations improved it by {gain[0]:.3f} "
                f"bits; train it longer)")  # fmt: skip


def baselines(
    criterion: Criterion, data_bin: Path | None, target_lang: str | None = None
) -> tuple[UnigramBaseline | None, BigramBaseline | None]:
    """The baselines ``criterion`` judges training against (none without a data-bin,
    and none for a rule switched off)."""
    if data_bin is None:
        return None, None
    return read_baselines(data_bin, target_lang, unigram=criterion.unigram_margin is not None,
                          bigram=criterion.bigram_margin is not None)  # fmt: skip


def judge(
    lines: Iterable[str],
    criterion: Criterion,
    unigram: UnigramBaseline | None = None,
    bigram: BigramBaseline | None = None,
) -> Verdict:
    """The verdict on a finished attempt, or on a run's whole history (since its last
    fresh start)."""
    monitor = Monitor(criterion, unigram, bigram)
    for line in lines:
        monitor.feed(line)
    return monitor.finish()


# --- CLI -----------------------------------------------------------------------------


def _margin(text: str) -> float | None:
    """A margin in bits, or ``null``: that test off."""
    return None if text == "null" else float(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m admin.divergence", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--log", required=True, type=Path, help="fairseq-train output (a run's train.log)"
    )
    p.add_argument(
        "--data-bin", type=Path, help="the run's data-bin (for the unigram and bigram baselines)"
    )
    p.add_argument("--target-lang", help="default: inferred from the data-bin's train files")
    p.add_argument("--hparams", default="{}", help="JSON: the run's fairseq options")
    for key in SETTINGS:
        kind = {"overflow_window": int, "unigram_margin": _margin, "bigram_margin": _margin,
                "plateau_patience": int, "stuck_patience": int}  # fmt: skip
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=kind.get(key, float),
                       default=argparse.SUPPRESS)  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        hparams = json.loads(args.hparams)
    except json.JSONDecodeError as err:
        raise AdminError(f"--hparams is not valid JSON: {err}") from None
    settings = {k: getattr(args, k) for k in SETTINGS if hasattr(args, k)}
    criterion = Criterion.for_recipe(hparams, settings)
    unigram, bigram = baselines(criterion, args.data_bin, args.target_lang)
    if not args.log.is_file():
        raise AdminError(f"log {args.log} does not exist")
    with open(args.log, encoding="utf-8", errors="replace") as f:
        verdict = judge(f, criterion, unigram, bigram)
    json.dump(verdict.to_json(), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    run_cli(main)
