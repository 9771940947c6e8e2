"""Demo wall time: the embedded demo end to end, as ``make demo`` runs it, from an empty
folder, with the per-stage split from Snakemake's benchmark files.

Runs ``snakemake --cores all`` (the default target) with the project's
``config/config.yaml`` in a temporary folder, so the checkout's ``results/`` is
neither reused nor touched.  Every rule with a ``benchmark:`` directive writes
``logs/benchmarks/.../<stage>.tsv`` (its first column is the job's seconds);
the split sums them per stage.  Jobs run side by side on ``--cores all``, so the
stages add up to more than the wall time.  One run: it takes minutes.

``--quick`` runs only Admin at 2-2 (``--config variants=[admin] depths=[2-2]``):
every stage once, not the demo's figure.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.core import REPO, VENV_BIN, Context, Figure, Result, Target, fmt

NAME = "demo_wall_time"
TARGET_S = 600  # 10 minutes on a 2-core machine
STAGES = ("demo_corpus", "tokenize", "bpe", "binarize", "profile", "train", "average", "evaluate")


def demo_cmd(quick: bool, *config: str) -> list[str]:
    """``snakemake`` as ``make demo`` runs it; ``config``: extra ``--config`` items."""
    cmd = [
        str(VENV_BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--cores", "all",
        "--configfile", str(REPO / "config" / "config.yaml"),
    ]  # fmt: skip
    if quick:
        config = ("variants=[admin]", "depths=[2-2]", *config)
    return [*cmd, "--config", *config] if config else cmd


def job_seconds(benchmarks: Path) -> dict[str, float]:
    """Seconds per job, keyed by the benchmark file's path below ``benchmarks``."""
    times = {}
    for tsv in sorted(benchmarks.rglob("*.tsv")):
        header, row = tsv.read_text(encoding="utf-8").splitlines()[:2]
        if header.split("\t")[0] != "s":
            raise ValueError(f"{tsv}: expected Snakemake's benchmark columns, got {header!r}")
        times[tsv.relative_to(benchmarks).as_posix()] = float(row.split("\t")[0])
    return times


def per_stage(jobs: dict[str, float]) -> dict[str, tuple[float, int]]:
    """Total seconds and job count per stage (the benchmark file's name)."""
    totals: dict[str, list[float]] = defaultdict(list)
    for path, seconds in jobs.items():
        totals[Path(path).stem].append(seconds)
    order = {stage: i for i, stage in enumerate(STAGES)}
    return {
        stage: (sum(values), len(values))
        for stage, values in sorted(totals.items(), key=lambda kv: order.get(kv[0], len(order)))
    }


def run(ctx: Context) -> Result:
    workdir = ctx.workdir / NAME
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    # The rules set each job's OMP_NUM_THREADS themselves: the runner's count is not passed.
    env = {k: v for k, v in ctx.env().items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.run(demo_cmd(ctx.quick), cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the demo failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    jobs = job_seconds(workdir / "logs" / "benchmarks")
    stages = per_stage(jobs)
    label = "Admin 2-2 only (--quick)" if ctx.quick else "snakemake --cores all"
    figures = [
        Figure(NAME, f"demo end to end, {label}, wall", [wall], "s",
               None if ctx.quick else Target("<=", TARGET_S, "s")),
    ]  # fmt: skip
    for stage, (seconds, count) in stages.items():
        jobs_text = f"{count} job{'s' if count > 1 else ''}"
        figures.append(
            Figure(NAME, f"stage {stage} ({jobs_text}), job times summed", [seconds], "s")
        )
    notes = [
        f"one run from an empty folder on {ctx.cores} cores; load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after; stages overlap "
        f"(sum of stages {fmt(sum(s for s, _ in stages.values()))} s); the table and plot "
        "rules write no benchmark file and count only in the wall time"
    ]
    table = workdir / "results" / "demo" / "table.md"
    details = ["Per job (s), from `logs/benchmarks/`:", "", "| job | s |", "| --- | --- |"]
    details += [f"| {path} | {fmt(seconds)} |" for path, seconds in jobs.items()]
    if table.is_file():
        # its title demoted to plain text: one H1 per results file
        text = re.sub(r"^#+ (.*)$", r"*\1*", table.read_text(encoding="utf-8"), flags=re.M)
        details += ["", "The demo's table from this run:", "", text]
    return Result(figures, notes, "\n".join(details))
