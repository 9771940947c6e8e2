"""Demo seeds: the embedded demo, as ``make demo`` runs it, for seeds 1, 2 and 3.

Runs ``snakemake --cores all --config seeds=[1,2,3]`` with the project's
``config/config.yaml`` in a temporary folder, then judges every seed's table row
with :mod:`admin.paper_shape` (the shallow depth is the demo's first, the deep its
last).  Each cell's figure holds the three seeds' BLEUs; a diverged seed is counted,
not given a number.  It takes about three demos' time.

``--quick`` runs seeds 1 and 2 only.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from admin import paper_shape
from benchmarks.core import REPO, Context, Figure, Result, Target
from benchmarks.demo_wall_time import demo_cmd

NAME = "demo_seeds"
SEEDS = (1, 2, 3)


def run(ctx: Context) -> Result:
    seeds = SEEDS[:2] if ctx.quick else SEEDS
    workdir = ctx.workdir / NAME
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in ctx.env().items() if k != "OMP_NUM_THREADS"}
    cmd = demo_cmd(False, f"seeds=[{','.join(map(str, seeds))}]")
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the demo failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    shallow, deep = paper_shape.demo_depths(REPO / "config" / "config.yaml")
    criterion = paper_shape.Criterion(shallow, deep)
    shapes = paper_shape.judge(workdir / "results" / "demo" / "table.json", criterion)
    figures = [
        Figure(NAME, f"demo with {len(seeds)} seeds, wall", [wall], "s"),
        Figure(NAME, "seeds with the paper's shape", [sum(s.ok for s in shapes)], "seeds",
               Target(">=", len(seeds), "seeds")),
    ]  # fmt: skip
    for depth in (shallow, deep):
        for variant in paper_shape.VARIANTS:
            values = [s.bleu[depth][variant] for s in shapes]
            bleus = [float(v) for v in values if v != paper_shape.DIVERGED]
            if bleus:
                name = f"{variant} {depth} test BLEU over its trained seeds"
                figures.append(Figure(NAME, name, bleus, "BLEU"))
            if len(bleus) < len(values):
                name = f"{variant} {depth} diverged seeds"
                figures.append(Figure(NAME, name, [len(values) - len(bleus)], "seeds"))
    per_seed = {s.seed: s.ok for s in shapes}
    notes = [
        f"one run of `make demo` with --config seeds=[{','.join(map(str, seeds))}] from an "
        f"empty folder on {ctx.cores} cores; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; shape judged by admin.paper_shape (tolerance "
        f"{criterion.tolerance} BLEU, floor {criterion.floor} BLEU): {json.dumps(per_seed)}"
    ]
    details = "Per seed (`python -m admin.paper_shape results/demo/table.json "
    details += f"--shallow {shallow} --deep {deep}`):\n\n" + paper_shape.report(shapes, criterion)
    return Result(figures, notes, details)
