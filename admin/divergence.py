"""Was a run ``diverged``, as the paper uses the word?  Judged from fairseq-train's log.

    python -m admin.divergence --log RUN/train.log --data-bin DATA_BIN \\
        [--hparams '{"warmup_updates": 4000, "log_interval": 100}'] [--target-lang en] \\
        [--overflow-window 1000] [--overflow-share 0.5] [--unigram-margin 0.5|null] \\
        [--bigram-margin 0|null] [--stall-after-warmup 2]

A run diverged (docs/divergence.md gives the why of each rule and default) when

* its loss or gradients stopped being finite (fairseq's ``FloatingPointError``:
  non-finite gradients or the minimum fp16 loss scale, or a logged nan/inf loss);
* an fp16 overflow storm: at least ``overflow_share`` of the last
  ``overflow_window`` optimizer steps (updates + skipped overflow steps) overflowed;
* it fails to train: at a validation from ``stall_after_warmup`` x
  ``warmup_updates`` on, the valid ``nll_loss`` (bits per target token) is not
  below the cross-entropy of the target side's unigram distribution minus
  ``unigram_margin`` (it never left the unigram plateau, or fell back onto it);
* it is stuck: at the end of a run (fairseq's "done training") of at least
  ``stall_after_warmup`` x ``warmup_updates``, its best valid ``nll_loss`` is not
  ``bigram_margin`` below the cross-entropy of a bigram model of the target side
  (:mod:`admin.target_bigram`): it did no better than a model that never sees the source.

:class:`Monitor` is fed fairseq's output line by line and says as soon as the
run is diverged (so the training step can stop it); :func:`judge` reads a
whole log.  A history of several attempts is judged since its last fresh start.
No fairseq import: plain Python over log lines and fairseq's binarized files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from admin.target_bigram import BigramBaseline

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
    warmup_updates: int = 0  # the recipe's
    log_interval: int = FAIRSEQ_LOG_INTERVAL  # the recipe's (bounds the unlogged updates)

    def __post_init__(self) -> None:
        checks = {
            "overflow_window": self.overflow_window >= 1,
            "overflow_share": 0 < self.overflow_share <= 1,
            "unigram_margin": self.unigram_margin is None or math.isfinite(self.unigram_margin),
            "bigram_margin": self.bigram_margin is None or math.isfinite(self.bigram_margin),
            "stall_after_warmup": self.stall_after_warmup >= 0,
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
            "stall_after_warmup")  # fmt: skip


# --- the unigram baseline ------------------------------------------------------------

_MMAP_MAGIC = b"MMIDIDX\x00\x00"
_SPECIALS = 4  # <s> <pad> </s> <unk>: fairseq's Dictionary adds them before dict.txt's symbols
_CHUNK = 1 << 24  # tokens per bincount: bounded memory on WMT-sized data


@dataclass(frozen=True)
class UnigramBaseline:
    """Cross-entropy (bits per valid target token, EOS included) of the training target's
    add-one-smoothed unigram distribution: what a model that learned only token frequencies gets."""

    bits: float
    valid_tokens: int
    valid_sentences: int
    train_tokens: int
    vocab: int
    target: str  # the binarized target files, relative to the data-bin

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "bits": round(self.bits, 4)}


def _dtype(code: int) -> Any:
    import numpy as np

    # fairseq.data.indexed_dataset._code_to_dtype (mmap format): token ids are integers.
    dtypes = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16,
              9: np.uint32, 10: np.uint64}  # fmt: skip
    return dtypes.get(code)


def read_binarized(prefix: Path) -> tuple[Any, int]:
    """Token ids (a read-only memmap) and sentence count of ``prefix.{idx,bin}``
    (fairseq's default ``mmap`` dataset format)."""
    import numpy as np

    idx, binary = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    for path in (idx, binary):
        if not path.is_file():
            raise AdminError(f"binarized data file {path} does not exist")
    with open(idx, "rb") as f:
        if f.read(9) != _MMAP_MAGIC:
            raise AdminError(f"{idx} is not a fairseq mmap index (binarize with the default "
                             "--dataset-impl mmap)")  # fmt: skip
        (version,) = struct.unpack("<Q", f.read(8))
        (code,) = struct.unpack("<B", f.read(1))
        (sentences,) = struct.unpack("<Q", f.read(8))
        sizes = np.fromfile(f, dtype=np.int32, count=sentences)
    dtype = _dtype(code)
    if version != 1 or dtype is None or len(sizes) != sentences:
        raise AdminError(f"{idx}: unsupported or truncated index (version {version}, dtype {code})")
    if binary.stat().st_size == 0:
        tokens = np.zeros(0, dtype=dtype)
    else:
        tokens = np.memmap(binary, dtype=dtype, mode="r")
    if tokens.size != int(sizes.sum(dtype=np.int64)):
        raise AdminError(f"{binary} holds {tokens.size} tokens, its index says {sizes.sum()}")
    return tokens, sentences


def _counts(tokens: Any, vocab: int, where: Path) -> Any:
    import numpy as np

    counts = np.zeros(vocab, dtype=np.int64)
    for start in range(0, tokens.size, _CHUNK):
        chunk = np.bincount(np.asarray(tokens[start : start + _CHUNK]), minlength=vocab)
        if chunk.size > vocab:
            raise AdminError(
                f"{where} has token id {chunk.size - 1}, beyond its dictionary of {vocab} "
                "symbols: data-bin and dictionary do not match"
            )
        counts += chunk
    return counts


def language_pair(data_bin: Path) -> tuple[str, str]:
    """(source, target) as fairseq infers them: from the ``train.S-T.*`` file names."""
    pairs = set()
    for name in os.listdir(data_bin):
        parts = name.split(".")
        if len(parts) >= 3 and parts[0] == "train" and parts[1].count("-") == 1:
            source, target = parts[1].split("-")
            pairs.add((source, target))
    if len(pairs) != 1:
        found = ", ".join(sorted(f"{s}-{t}" for s, t in pairs)) or "none"
        raise AdminError(f"{data_bin}: cannot tell the language pair from train.S-T.* files "
                         f"(found {found}); give the target language")  # fmt: skip
    return pairs.pop()


def _split_prefix(data_bin: Path, split: str, source: str, target: str) -> Path:
    for pair in (f"{source}-{target}", f"{target}-{source}"):  # fairseq tries both orders
        prefix = data_bin / f"{split}.{pair}.{target}"
        if Path(f"{prefix}.idx").is_file():
            return prefix
    raise AdminError(f"{data_bin}: no binarized {split} target ({split}.{source}-{target}."
                     f"{target}.idx)")  # fmt: skip


@dataclass(frozen=True)
class TargetFiles:
    """The binarized target side of a data-bin, as fairseq reads it."""

    vocab: int  # every symbol the model can predict (fairseq's specials included)
    train: tuple[Path, ...]  # train, train1, train2, ... prefixes
    valid: Path

    def describe(self) -> str:
        return " + ".join(p.name for p in self.train) + f" -> {self.valid.name}"


def target_files(
    data_bin: str | os.PathLike[str],
    target_lang: str | None = None,
    source_lang: str | None = None,
    valid_subset: str = "valid",
) -> TargetFiles:
    """The data-bin's binarized target files and the size of its target dictionary."""
    data_bin = Path(data_bin)
    if not data_bin.is_dir():
        raise AdminError(f"data-bin {data_bin} is not a folder")
    if source_lang is None or target_lang is None:
        inferred = language_pair(data_bin)
        if target_lang is None:
            source_lang, target_lang = inferred
        elif source_lang is None:
            source_lang = inferred[0] if inferred[1] == target_lang else inferred[1]
    assert source_lang is not None and target_lang is not None
    dictionary = data_bin / f"dict.{target_lang}.txt"
    if not dictionary.is_file():
        raise AdminError(f"target dictionary {dictionary} does not exist")
    with open(dictionary, encoding="utf-8") as f:
        vocab = _SPECIALS + sum(1 for line in f if line.strip())
    train = []
    for k in range(1000):  # fairseq reads train, train1, train2, ... while they exist
        split = "train" if k == 0 else f"train{k}"
        try:
            train.append(_split_prefix(data_bin, split, source_lang, target_lang))
        except AdminError:
            if k == 0:
                raise
            break
    valid = _split_prefix(data_bin, valid_subset, source_lang, target_lang)
    return TargetFiles(vocab, tuple(train), valid)


def train_target_counts(files: TargetFiles) -> Any:
    """Token counts of the whole binarized training target (EOS and UNK included)."""
    import numpy as np

    counts = np.zeros(files.vocab, dtype=np.int64)
    for prefix in files.train:
        tokens, _ = read_binarized(prefix)
        counts += _counts(tokens, files.vocab, Path(f"{prefix}.bin"))
    return counts


def add_one_unigram(counts: Any) -> Any:
    """log2 probabilities of the add-one-smoothed unigram over the whole dictionary."""
    import numpy as np

    return np.log2(counts + 1.0) - math.log2(int(counts.sum()) + counts.size)


def unigram_baseline(
    data_bin: str | os.PathLike[str],
    target_lang: str | None = None,
    source_lang: str | None = None,
    valid_subset: str = "valid",
    train_counts: Any = None,
) -> UnigramBaseline:
    """The target side's unigram cross-entropy on the valid set, from the data-bin
    (``train_counts``: the training target's counts, if already read).

    Counts are the binarized training target's (EOS and UNK included, as the
    model sees them), not ``dict.<tgt>.txt``'s: with a joined dictionary those
    mix in the source language.  Add-one smoothing over the whole dictionary
    (every symbol the model can predict), evaluated on the valid target tokens
    including EOS, in bits: the unit of fairseq's ``nll_loss``.
    """
    files = target_files(data_bin, target_lang, source_lang, valid_subset)
    if train_counts is None:
        train_counts = train_target_counts(files)
    valid_tokens, valid_sentences = read_binarized(files.valid)
    valid_counts = _counts(valid_tokens, files.vocab, Path(f"{files.valid}.bin"))
    n_train, n_valid = int(train_counts.sum()), int(valid_counts.sum())
    if n_train == 0 or n_valid == 0:
        raise AdminError(
            f"{data_bin}: empty training or valid target ({n_train}, {n_valid} tokens)"
        )
    bits = float(-(valid_counts * add_one_unigram(train_counts)).sum() / n_valid)
    return UnigramBaseline(
        bits, n_valid, int(valid_sentences), n_train, files.vocab, files.describe()
    )


def unigram_cross_entropy(train_counts: Sequence[int], valid_counts: Sequence[int]) -> float:
    """The same arithmetic on plain counts per symbol (bits per valid token)."""
    if len(train_counts) != len(valid_counts) or not train_counts:
        raise ValueError("train and valid counts must cover the same non-empty vocabulary")
    n_train, n_valid, vocab = sum(train_counts), sum(valid_counts), len(train_counts)
    total = sum(
        v * (math.log2(c + 1) - math.log2(n_train + vocab))
        for c, v in zip(train_counts, valid_counts, strict=True)
    )
    return -total / n_valid


# --- the verdict ---------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    diverged: bool
    reason: str  # one line
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON-able

    def to_json(self) -> dict[str, Any]:
        return {"diverged": self.diverged, "reason": self.reason, "evidence": self.evidence}


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
        margin = self.criterion.unigram_margin
        if self.unigram is None or margin is None or not self.valid:
            return None
        update, nll = self.valid[-1]
        limit = self.unigram.bits - margin
        if update < self.criterion.stall_from or nll < limit:
            return None
        best_update, best = min(self.valid, key=lambda v: v[1])
        return {"valid_nll": nll, "update": update, "best_nll": best, "best_update": best_update,
                "limit": round(limit, 4)}  # fmt: skip

    def _stuck(self) -> Verdict | None:
        """Rule 4, at the end of a run: its best validation is not ``bigram_margin``
        below the target bigram, a model that never sees the source."""
        margin = self.criterion.bigram_margin
        if self.bigram is None or margin is None or not self.valid:
            return None
        last_update = self.valid[-1][0]
        best_update, best = min(self.valid, key=lambda v: v[1])
        limit = self.bigram.bits - margin
        if last_update < self.criterion.stall_from or best < limit:
            return None
        below = f"{margin} bits below" if margin else "below"
        reason = (
            f"stuck above a source-blind model: best valid nll_loss {best} (update "
            f"{best_update}) is not {below} the target bigram's {self.bigram.bits:.3f}, a "
            f"model that never sees the source, at the end of the run (update {last_update})"
        )
        stuck = {"best_nll": best, "best_update": best_update, "last_update": last_update,
                 "limit": round(limit, 4)}  # fmt: skip
        return self._verdict(True, reason, stuck=stuck)

    def _diverged(self) -> Verdict | None:
        if self._nonfinite is not None:
            where = self._nonfinite
            what = where.get("error") or f"{where['line']} loss became {where['value']}"
            return self._verdict(True, f"non-finite: {what} at update {where['update']}")
        if (storm := self._storm()) is not None:
            return self._verdict(
                True,
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
            if stall["best_nll"] < stall["limit"]:
                reason = (
                    f"fell back to the unigram plateau: valid nll_loss {stall['valid_nll']} at "
                    f"update {stall['update']} {base} (best {stall['best_nll']} at update "
                    f"{stall['best_update']})"
                )
            else:
                reason = (
                    f"fails to train: best valid nll_loss {stall['best_nll']} (update "
                    f"{stall['best_update']}) {base}, at update {stall['update']} "
                    f"(judged from update {c.stall_from}: {c.stall_after_warmup} x warm-up)"
                )
            return self._verdict(True, reason, stall=stall)
        return None

    def _verdict(self, diverged: bool, reason: str, **extra: Any) -> Verdict:
        return Verdict(diverged, reason, {**self.evidence(), **extra})

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
            first = {"reason": self.first.reason, "update": self.first.evidence["updates"]}
        if verdict is not None:
            return Verdict(True, verdict.reason, {**verdict.evidence, "first_verdict": first})
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
        if self.bigram is not None and self.criterion.bigram_margin is not None:
            bigram = self.bigram.bits
            reason += f" and {bigram - best:.3f} below the bigram's {bigram:.3f}"
        return reason


def baselines(
    criterion: Criterion, data_bin: Path | None, target_lang: str | None = None
) -> tuple[UnigramBaseline | None, BigramBaseline | None]:
    """The baselines ``criterion`` judges training against (none without a data-bin,
    and none for a rule switched off)."""
    from admin.target_bigram import bigram_baseline  # it builds on this module

    if data_bin is None or (criterion.unigram_margin is None and criterion.bigram_margin is None):
        return None, None
    # both read the whole training target's counts: once (WMT: ~140M tokens)
    counts = train_target_counts(target_files(data_bin, target_lang))
    unigram = bigram = None
    if criterion.unigram_margin is not None:
        unigram = unigram_baseline(data_bin, target_lang, train_counts=counts)
    if criterion.bigram_margin is not None:
        bigram = bigram_baseline(data_bin, target_lang, train_counts=counts)
    return unigram, bigram


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
        kind = {"overflow_window": int, "unigram_margin": _margin, "bigram_margin": _margin}
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
