"""Planning: ``snakemake -n paper_all`` (all three paper tables), its wall time and job count.

Runs in an empty folder with the project's config, as the workflow tests do, so
whatever the checkout's ``results/`` holds does not change the plan.  Snakemake's
own start-up (``snakemake --version``) is timed side by side, interleaved, and the
planning time beyond it is reported as well.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks.core import REPO, VENV_BIN, Context, Figure, Result, Target, interleave, ratios

NAME = "planning"
_TOTAL = re.compile(r"^total\s+(\d+)\s*$", re.M)


def snakemake_cmd(*args: str) -> list[str]:
    return [str(VENV_BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *args]


def dry_run_cmd(target: str = "paper_all") -> list[str]:
    # --configfile last: it takes every word up to the next option
    return snakemake_cmd(
        "-n", "--nolock", target, "--configfile", str(REPO / "config" / "config.yaml")
    )


def job_count(output: str) -> int:
    """The ``total`` of the dry run's job stats table."""
    match = _TOTAL.search(output)
    if match is None:
        raise RuntimeError(f"no job count in the dry run's output:\n{output[-2000:]}")
    return int(match[1])


def _run(cmd: list[str], cwd: Path, ctx: Context, outputs: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=ctx.env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    outputs.append(proc.stdout + proc.stderr)
    return elapsed


def _slurm_probe_seconds() -> float | None:
    """How long ``scontrol show config`` takes: the SLURM executor plugin runs it when
    Snakemake starts; with SLURM's tools installed but no reachable controller it waits."""
    if shutil.which("scontrol") is None:
        return None
    start = time.perf_counter()
    subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=60)
    return time.perf_counter() - start


def run(ctx: Context) -> Result:
    rounds = ctx.repeats(4, 2)
    workdir = ctx.workdir / "planning"
    workdir.mkdir(parents=True, exist_ok=True)
    plans: list[str] = []
    samples = interleave(
        {
            "plan": lambda: _run(dry_run_cmd(), workdir, ctx, plans),
            "startup": lambda: _run(snakemake_cmd("--version"), workdir, ctx, []),
        },
        rounds,
    )
    counts = {job_count(text) for text in plans}
    if len(counts) != 1:
        raise RuntimeError(f"the dry runs planned different job counts: {sorted(counts)}")
    beyond = [p - s for p, s in zip(samples["plan"], samples["startup"], strict=True)]
    share = ratios(samples["startup"], samples["plan"])
    figures = [
        Figure(NAME, "snakemake -n paper_all, wall", samples["plan"], "s", Target("<=", 3, "s")),
        Figure(NAME, "jobs planned by paper_all", [float(counts.pop())] * len(plans), "jobs"),
        Figure(NAME, "snakemake --version (start-up), wall", samples["startup"], "s"),
        Figure(NAME, "planning beyond start-up (per-round difference)", beyond, "s"),
        Figure(NAME, "start-up share of the dry run", share),
    ]
    notes = ["dry run in an empty folder with config/config.yaml; the two commands interleaved"]
    probe = _slurm_probe_seconds()
    if probe is not None and probe > 1:
        notes.append(
            f"`scontrol show config` took {probe:.1f} s here: Snakemake's SLURM executor "
            "plugin calls it at import, so every snakemake command pays this while SLURM's "
            "tools are installed and no controller answers; start-up absorbs it"
        )
    return Result(figures, notes)
