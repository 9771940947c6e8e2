"""Benchmarks: what users pay for, measured by one command (``make bench``).

``python -m benchmarks [--only NAME ...] [--quick]`` runs them and writes a dated
Markdown table to ``benchmarks/results/``.  Each benchmark is a module here with a
``run(ctx) -> Result``; :data:`BENCHMARKS` lists them in the issue's order,
which is also the order they run in.
"""

from __future__ import annotations

# name -> (module, what it measures).  Modules are imported only when they run,
# so ``--only planning`` does not pay for importing torch and fairseq.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "demo_wall_time": (
        "benchmarks.demo_wall_time",
        "the embedded demo end to end from an empty folder, per-stage split",
    ),
    "demo_seeds": (
        "benchmarks.demo_seeds",
        "the embedded demo for 3 seeds: BLEU per cell and seed, the paper's shape per seed",
    ),
    "demo_fresh_seeds": (
        "benchmarks.demo_fresh_seeds",
        "the embedded demo for seeds 4-8, which never chose its recipe: the paper's shape per seed",
    ),
    "training_overhead": (
        "benchmarks.training_overhead",
        "training tokens/s of admin_transformer per init type against stock transformer (CPU)",
    ),
    "gpu_throughput": (
        "benchmarks.gpu_throughput",
        "bf16 tokens/s and MFU at 6 and 18 layers (CUDA; a CPU smoke run without a GPU)",
    ),
    "profiling_cost": (
        "benchmarks.profiling_cost",
        "the Admin profiling job against one training step, and process start-up",
    ),
    "planning": (
        "benchmarks.planning",
        "snakemake -n paper_all: wall time and job count",
    ),
    "preprocessing": (
        "benchmarks.preprocessing",
        "tokenize + BPE sentences/s: 1 process, all cores, plain reference loop",
    ),
    "data_pipeline": (
        "benchmarks.data_pipeline",
        "each data step at 250k and 1M pairs: sent/s, peak RSS, bytes written; vs plain tools",
    ),
    "checkpoint_averaging": (
        "benchmarks.checkpoint_averaging",
        "admin.average over 10 checkpoints: time and peak memory",
    ),
    "rehearsal": (
        "benchmarks.rehearsal",
        "the rehearsal of paper_all on the local two-node SLURM cluster: wall time",
    ),
    "divergence_baselines": (
        "benchmarks.divergence_baselines",
        "the divergence criterion's unigram and bigram baselines on a WMT-sized target",
    ),
    "checkpoint_sizes": (
        "benchmarks.checkpoint_sizes",
        "bytes of a training checkpoint and of checkpoint_avg.pt per preset model, vs formula",
    ),
}
