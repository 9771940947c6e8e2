"""Demo fresh seeds: the embedded demo for seeds 4 to 8, which took no part in choosing
its recipe (depths, learning rate, warm-up, epochs) or the divergence rules; seeds 1 to 3
did (:mod:`benchmarks.demo_seeds`, which this shares its measurement with).
"""

from __future__ import annotations

from benchmarks.core import Context, Result
from benchmarks.demo_seeds import measure

NAME = "demo_fresh_seeds"
SEEDS = (4, 5, 6, 7, 8)


def run(ctx: Context) -> Result:
    return measure(ctx, NAME, SEEDS, "fresh seeds: none of them chose the recipe")
