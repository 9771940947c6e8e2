"""Checkpoint sizes of the paper presets' models, measured, beside admin.budget's formula.

For each preset model (IWSLT'14 6-6, WMT'14 En-De 6-6 / 12-12 / 18-18, En-Fr 6-6 and
60-12): one real ``fairseq-train`` update on the CPU with the preset's recipe (batch
shrunk to a few sentences), on a data-bin of real IWSLT'14 sentences whose joined
dictionary is padded to the preset's vocabulary (admin.budget's: the prepared data-bin's
dictionary, else its estimate from the BPE merges); then ``admin.average`` on that
checkpoint gives the weights-only ``checkpoint_avg.pt``.  The bytes on disk are printed
beside :func:`admin.budget.checkpoint_bytes`.

Precision: ``fp16``, the presets' own (``--fp16``), for every model: fairseq runs it on
the CPU with ``--fp16-no-flatten-grads`` and saves what a GPU run saves (float32 model
tensors, the shared embedding once per name, RAdam's float32 moments), except that a
GPU run's moments are one flat tensor each (the same bytes, a smaller pickle).
``fp32`` for the IWSLT model too: a float32 CPU run keeps the shared embedding once.
The model is Admin's (admin-logn: the same tensors as the profiled ``admin``, without
the profiling job).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from benchmarks.core import REPO, Context, Figure, Result, train_checkpoint

NAME = "checkpoint_sizes"
VARIANT = "admin-logn"
TRAIN_LINES = 200
# (dataset, depth) of every preset model, in the paper's order
MODELS = (
    ("iwslt14_de_en", "6-6"),
    ("wmt14_en_de", "6-6"),
    ("wmt14_en_de", "12-12"),
    ("wmt14_en_de", "18-18"),
    ("wmt14_en_fr", "6-6"),
    ("wmt14_en_fr", "60-12"),
)
# fp16 (the presets') for every model; fp32 (the CPU's tied layout) for the first only
FP32_MODELS = MODELS[:1]
# a few sentences per batch: the checkpoint does not depend on it, memory does
SMALL_BATCH = {"max_tokens": 128, "update_freq": 1}


@dataclass(frozen=True)
class Measured:
    dataset: str
    depth: str
    precision: str
    vocab: int
    params: int
    training: int  # bytes on disk
    averaged: int
    training_formula: int
    averaged_formula: int
    seconds: float


def recipe(cfg: dict, dataset: str, depth: str, precision: str) -> dict:
    """The preset's fairseq options for one update of a small batch on the CPU."""
    from admin.common import config as cfgmod
    from admin.recipe import split_hparams

    identity, _, _ = split_hparams(cfgmod.recipe_hparams(cfg, dataset, depth))
    hparams = {**identity, **SMALL_BATCH, "max_update": 1, "num_workers": 0,
               "disable_validation": True}  # fmt: skip
    if precision == "fp16":
        hparams.update(fp16=True, fp16_no_flatten_grads=True)
    else:
        for key in ("fp16", "fp16_scale_window", "threshold_loss_scale"):
            hparams.pop(key, None)
    return hparams


def measure(ctx: Context, cfg: dict, dataset: str, depth: str, precision: str) -> Measured:
    from admin import budget
    from admin.average import average
    from admin.common.run_folder import parse_depth
    from benchmarks.databin import padded_databin

    facts = budget.data_facts(cfg, dataset, REPO / "resources")
    vocab = facts.vocab[1]
    databin = padded_databin(ctx, TRAIN_LINES, vocab)
    hparams = recipe(cfg, dataset, depth, precision)
    shape = budget.model_shape(hparams, depth, VARIANT, facts.vocab)
    formula = budget.checkpoint_bytes(shape, tied=precision == "fp32")
    folder = ctx.workdir / NAME / f"{dataset}-{depth}-{precision}"
    start = time.perf_counter()
    try:
        last = train_checkpoint(ctx, databin, hparams, parse_depth(depth), VARIANT, folder)
        out = folder / "checkpoint_avg.pt"
        average([last], out)
        sizes = last.stat().st_size, out.stat().st_size
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # gigabytes each
    return Measured(dataset, depth, precision, vocab, budget.parameter_count(shape), *sizes,
                    formula.training, formula.averaged, time.perf_counter() - start)  # fmt: skip


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def details(rows: list[Measured]) -> str:
    lines = [
        "| model | precision | vocabulary | parameters | training checkpoint, MiB (formula) "
        "| file - formula | checkpoint_avg.pt, MiB (formula) | file - formula |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        lines.append(
            f"| {m.dataset} {m.depth} | {m.precision} | {m.vocab:,} | {m.params:,} "
            f"| {mib(m.training)} ({mib(m.training_formula)}) "
            f"| {(m.training - m.training_formula) / 1024:,.0f} KiB "
            f"| {mib(m.averaged)} ({mib(m.averaged_formula)}) "
            f"| {(m.averaged - m.averaged_formula) / 1024:,.0f} KiB |"
        )
    return "\n".join(lines)


def run(ctx: Context) -> Result:
    from admin import budget

    cfg = budget.load_config()
    models = MODELS[:1] if ctx.quick else MODELS
    jobs = [(m, "fp16") for m in models] + [(m, "fp32") for m in FP32_MODELS]
    rows = [measure(ctx, cfg, dataset, depth, p) for (dataset, depth), p in jobs]
    figures = []
    for m in rows:
        where = f"{m.dataset} {m.depth}, {m.precision}"
        figures += [
            Figure(NAME, f"training checkpoint, {where}", [m.training / 2**20], "MiB"),
            Figure(NAME, f"training checkpoint / formula, {where}",
                   [m.training / m.training_formula]),
            Figure(NAME, f"checkpoint_avg.pt, {where}", [m.averaged / 2**20], "MiB"),
            Figure(NAME, f"checkpoint_avg.pt / formula, {where}",
                   [m.averaged / m.averaged_formula]),
        ]  # fmt: skip
    notes = [
        "one fairseq-train update on the CPU per model and precision, then admin.average; "
        f"{VARIANT} (Admin's tensors); dictionaries padded to the preset's vocabulary "
        "(admin.budget's estimate from the BPE merges where no data-bin is prepared); fp16 "
        "on the CPU needs --fp16-no-flatten-grads (a GPU run's moments are one flat tensor "
        "each: the same bytes); formula: admin.budget.checkpoint_bytes, tied for fp32 "
        f"(one embedding), untied for fp16; {sum(m.seconds for m in rows):.0f} s in all"
    ]
    return Result(figures, notes, details(rows))
