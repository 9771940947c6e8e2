"""What every benchmark shares: a figure with its samples, its summary, its target,
the run's context, interleaved timing of things meant to be compared, and a real
checkpoint trained as the train step trains one."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ADMIN_SHARED_DATA", REPO.parent / "shared" / "data"))
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Summary:
    """Median and spread of a figure's samples (min-max, and the quartiles from 4 on)."""

    n: int
    median: float
    low: float
    high: float
    q1: float | None = None
    q3: float | None = None


def summarise(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("no samples to summarise")
    values = sorted(float(v) for v in samples)
    if any(math.isnan(v) for v in values):
        raise ValueError(f"a sample is NaN: {list(samples)}")
    q1 = q3 = None
    if len(values) >= 4:  # quartiles of fewer samples say nothing min-max does not
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(len(values), statistics.median(values), values[0], values[-1], q1, q3)


@dataclass(frozen=True)
class Target:
    """``median <op> value``; ``op`` is ``<=`` or ``>=``."""

    op: str
    value: float
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">="):
            raise ValueError(f"target operator must be <= or >=, got {self.op!r}")

    def met(self, median: float) -> bool:
        return median <= self.value if self.op == "<=" else median >= self.value

    def text(self) -> str:
        symbol = "≤" if self.op == "<=" else "≥"
        return f"{symbol} {self.value:g}{' ' + self.unit if self.unit else ''}"


@dataclass
class Figure:
    """One row of the results table: a named measurement and its repeated samples."""

    benchmark: str
    name: str
    samples: list[float]
    unit: str = ""
    target: Target | None = None

    @property
    def summary(self) -> Summary:
        return summarise(self.samples)

    def met(self) -> str:
        if self.target is None:
            return "n.a."
        return "yes" if self.target.met(self.summary.median) else "no"


@dataclass
class Result:
    """What one benchmark hands back: figures, notes on conditions, optional detail text."""

    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: str = ""


@dataclass
class Context:
    """Settings shared by the benchmarks of one run."""

    quick: bool
    threads: int
    workdir: Path  # scratch space of this run, removed afterwards
    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    cache: dict[str, Any] = field(default_factory=dict)

    def repeats(self, full: int, quick: int = 1) -> int:
        return quick if self.quick else full

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of child processes: this run's thread count, the checkout
        importable, the venv's tools first on PATH."""
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), **extra}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        return env


def train_checkpoint(
    ctx: Context,
    databin: Path,
    hparams: dict[str, Any],
    depth: tuple[int, int],
    variant: str,
    save_dir: Path,
) -> Path:
    """``checkpoint_last.pt`` of a real fairseq-train run on the CPU, in a fresh process
    started as the train step starts a single rank (``admin.rank_entry``), seed 1."""
    from admin.common.fairseq_command import train_argv
    from admin.common.variants import fairseq_flags

    argv = train_argv(databin, hparams, depth, 1, fairseq_flags(variant), save_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "admin.rank_entry", *argv, "--cpu"],
        cwd=REPO, env=ctx.env(), capture_output=True, text=True,
    )  # fmt: skip
    last = save_dir / "checkpoint_last.pt"
    if proc.returncode != 0 or not last.is_file():
        raise RuntimeError(f"fairseq-train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return last


def status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def json_from_child(ctx: Context, code: str, args: Sequence[str], what: str) -> Any:
    """Run ``python -c code args`` in a fresh process; the JSON on its last output line."""
    import json

    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO, env=ctx.env(), capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def timed(func: Callable[[], Any]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def interleave(
    tasks: dict[str, Callable[[], float]], rounds: int, deadline: float | None = None
) -> dict[str, list[float]]:
    """Run every task once per round, rotating the order each round (A,B,C / B,C,A / ...).

    Each task returns its own measurement.  Side by side in one run, the
    machine's slow phases hit every task alike, so per-round ratios stay fair.
    No round starts after ``deadline`` (a ``time.monotonic()`` value), but the
    first one always runs.
    """
    names = list(tasks)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        if r > 0 and deadline is not None and time.monotonic() > deadline:
            break
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(tasks[name]())
    return samples


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-round ratios of two interleaved series."""
    if len(numerator) != len(denominator):
        raise ValueError("ratios need series of equal length (the same rounds)")
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def fmt(value: float) -> str:
    """About three significant digits, no exponent for everyday magnitudes."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.001:
        return f"{value:.3g}"
    return f"{value:.2e}"
