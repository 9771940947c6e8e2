"""Demo seeds: the embedded demo, as ``make demo`` runs it, for several seeds.

``demo_seeds`` runs seeds 1, 2 and 3, the seeds the demo's recipe was chosen on;
``demo_fresh_seeds`` (:mod:`benchmarks.demo_fresh_seeds`) runs seeds 4 to 8, which took
no part in choosing it.  Each runs ``snakemake --cores all --config seeds=[...]`` with the
project's ``config/config.yaml`` in a temporary folder, then judges every seed's table row
with :mod:`admin.paper_shape` (the shallow depth is the demo's first, the deep its
last).  Each cell's figure holds the seeds' BLEUs; a diverged seed is counted, not given
a number (its BLEU, scored all the same, is in the details with its rule).  It takes
about one demo's time per seed.

``--quick`` runs the first two seeds only.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from admin import paper_shape
from admin.common.fairseq_log import parse
from benchmarks.core import REPO, Context, Figure, Result, Target
from benchmarks.demo_wall_time import demo_cmd

NAME = "demo_seeds"
FINGERPRINT = "demo recipe fingerprint"  # tests/test_demo_recipe.py looks for it
SEEDS = (1, 2, 3)


def run(ctx: Context) -> Result:
    return measure(ctx, NAME, SEEDS, "the seeds the recipe was chosen on")


def measure(ctx: Context, name: str, all_seeds: tuple[int, ...], role: str) -> Result:
    """The demo for ``all_seeds`` (``role``: how they relate to the recipe's choice)."""
    seeds = all_seeds[:2] if ctx.quick else all_seeds
    workdir = ctx.workdir / name
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
        Figure(name, f"demo with {len(seeds)} seeds, wall", [wall], "s"),
        Figure(name, "seeds with the paper's shape", [sum(s.ok for s in shapes)], "seeds",
               Target(">=", len(seeds), "seeds")),
    ]  # fmt: skip
    for depth in (shallow, deep):
        for variant in paper_shape.VARIANTS:
            values = [s.bleu[depth][variant] for s in shapes]
            bleus = [float(v) for v in values if v != paper_shape.DIVERGED]
            if bleus:
                what = f"{variant} {depth} test BLEU over its trained seeds"
                figures.append(Figure(name, what, bleus, "BLEU"))
            if len(bleus) < len(values):
                what = f"{variant} {depth} diverged seeds"
                figures.append(Figure(name, what, [len(values) - len(bleus)], "seeds"))
    per_seed = {s.seed: s.ok for s in shapes}
    notes = [
        f"one run of `make demo` with --config seeds=[{','.join(map(str, seeds))}] from an "
        f"empty folder on {ctx.cores} cores ({role}); load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; shape judged by admin.paper_shape (tolerance "
        f"{criterion.tolerance} BLEU, floor {criterion.floor} BLEU): {json.dumps(per_seed)}",
        f"{FINGERPRINT} `{paper_shape.demo_fingerprint(REPO / 'config' / 'config.yaml')}` "
        "(admin.paper_shape.demo_fingerprint: the demo's recipe and divergence settings)",
    ]
    details = "Per seed (`python -m admin.paper_shape results/demo/table.json "
    details += f"--shallow {shallow} --deep {deep}`):\n\n" + paper_shape.report(shapes, criterion)
    details += "\n\n" + verdicts(workdir / "results" / "demo")
    return Result(figures, notes, details)


def verdicts(results: Path) -> str:
    """Every flagged run: its rule, its BLEU (scored all the same) and its valid curve."""
    rows = ["| run | rule | BLEU | valid nll_loss per validation (bits) | reason |",
            "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for status_file in sorted(results.glob("*/*/seed*/status.json")):
        status = json.loads(status_file.read_text())
        if status["status"] != "diverged":
            continue
        run = status_file.parent
        scores = json.loads((run / "scores.json").read_text())
        log = (run / "train.log").read_text(encoding="utf-8").splitlines()
        curve = [f"{p.nll_loss:.3f}" for p in parse(log).valid_curve()]
        bleu = scores.get("bleu_tokenized")
        rows.append(f"| {run.relative_to(results)} | {status.get('rule')} | "
                    f"{'—' if bleu is None else f'{bleu:.2f}'} | {' '.join(curve)} | "
                    f"{status['reason']} |")  # fmt: skip
    return "Flagged runs:\n\n" + "\n".join(rows)
