"""The rehearsal of ``paper_all`` on the local two-node SLURM cluster: every job of the
three paper tables (data, profiling, training on 1 node or, for En-Fr 60L-12L, 2 nodes,
averaging, evaluation, tables), shrunk, through ``--profile slurm`` and a user's cluster
profile, from an empty folder.

Needs the local cluster (``bash scripts/slurm-local-cluster.sh start``); the presets'
requests are fitted to its nodes as ``tests.slurm_support.local_cluster_config`` does (what
a user of a small cluster writes).  ``--quick`` rehearses ``paper_wmt14_en_fr`` only.
Two runs, each from its own empty folder: as a user starts Snakemake, and as the SLURM
tests start it (the plugin's status checks at most 2 s apart). Each takes minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass

from benchmarks.core import REPO, VENV_BIN, Context, Figure, Result, Target

NAME = "rehearsal"
TARGET_S = 12 * 60  # the goal for paper_all on 2 cores (issue 26)


def run(ctx: Context) -> Result:
    from tests.slurm_support import SNAKEMAKE, cluster_problem

    problem = cluster_problem()
    if problem is not None:
        raise RuntimeError(f"the rehearsal benchmark needs the local SLURM cluster: {problem}")
    target = "paper_wmt14_en_fr" if ctx.quick else "paper_all"
    # As a user runs it, then as the SLURM tests do (tests/slurm_snakemake.py: the plugin's
    # status checks at most 2 s apart instead of 10 s further apart after each check that
    # found no job finished): the difference is the plugin's polling, not our jobs.
    shipped = _rehearse(ctx, target, "as-shipped", [str(VENV_BIN / "snakemake")])
    capped = _rehearse(ctx, target, "checks-2s", SNAKEMAKE)
    figures = [
        Figure(
            NAME,
            f"rehearsal of {target} on the 2-node local cluster, wall",
            [shipped.wall],
            "s",
            None if ctx.quick else Target("<=", TARGET_S, "s"),
        ),  # fmt: skip
        Figure(NAME, "SLURM jobs submitted", [float(shipped.jobs)], "jobs"),
        Figure(NAME, "the same, status checks at most 2 s apart, wall", [capped.wall], "s"),
    ]
    notes = [
        f"as a user runs it (`snakemake --profile slurm`): {shipped.note}",
        f"with the SLURM tests' Snakemake (tests/slurm_snakemake.py): {capped.note}",
    ]
    return Result(figures, notes, "")


@dataclass
class Rehearsal:
    wall: float
    jobs: int
    note: str


def _rehearse(ctx: Context, target: str, name: str, snakemake: list[str]) -> Rehearsal:
    """One rehearsal of ``target`` from an empty folder, Snakemake started as ``snakemake``."""
    from tests.slurm_support import local_cluster, submissions

    cluster = local_cluster(ctx.workdir / NAME / name)
    cmd = [*snakemake, *cluster.args(target, config=["rehearsal=true"])]
    env = {k: v for k, v in ctx.env().items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env.pop("OMP_NUM_THREADS", None)
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        ids = [s["slurm"] for s in submissions(log)]
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)
        raise RuntimeError(f"the rehearsal of {target} failed ({proc.returncode}):\n{log[-4000:]}")
    jobs = submissions(log)
    per_rule: dict[str, int] = {}
    for job in jobs:
        # a rule's own job, or a run's group job (its steps: average_evaluate[_train])
        m = re.search(r"/slurm_logs/(?:rule_(\w+?)|group_run_.*?_(average\w*))/", job["log"])
        rule = (m[1] or f"run group {m[2]}") if m else "?"
        per_rule[rule] = per_rule.get(rule, 0) + 1
    total = re.search(r"^total\s+(\d+)$", log, re.M)
    note = (
        f"{wall:.0f} s; {total[1] if total else '?'} jobs planned, {len(jobs)} through sbatch "
        f"({', '.join(f'{r} {n}' for r, n in sorted(per_rule.items()))}); the rest are local "
        f"rules; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    return Rehearsal(wall, len(jobs), note)
