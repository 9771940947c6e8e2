"""Admin's training overhead on CPU: target tokens/s of ``admin_transformer`` with each
trainable ``--init-type`` against fairseq's stock ``transformer`` of the same size, on
the same real batches, measured side by side.

Every model trains on the same few IWSLT'14 batches, one timed pass over them per
round; the models take turns within each round (the order rotates), so a slow
phase of this shared machine hits all of them.  The ratio reported for a variant
is the median of its per-round ratios to the stock model.  Omega costs one
elementwise multiply per sublayer, whose share shrinks as the width grows: these
small CPU models show an upper bound of what wider models pay
(``benchmarks.gpu_throughput`` measures 512-wide models on a GPU).
"""

from __future__ import annotations

import time

from benchmarks.core import Context, Figure, Result, Target, interleave, ratios
from benchmarks.databin import iwslt_databin

NAME = "training_overhead"
TRAIN_LINES = 3000
WARMUP_STEPS = 6  # RAdam makes no update while rho_t < 5 (its first 5 steps); time past them


def run(ctx: Context) -> Result:
    import torch

    from benchmarks import models as M

    torch.set_num_threads(ctx.threads)
    if ctx.quick:
        size, max_tokens, steps, rounds = M.Size(2, 64, 256, 4), 256, 2, 2
    else:
        size, max_tokens, steps, rounds = M.Size(3, 256, 1024, 4), 512, 2, 6
    databin = iwslt_databin(ctx, TRAIN_LINES)
    profile = ctx.workdir / "training_overhead" / "profile.json"
    variants = [M.STOCK, *M.ADMIN_VARIANTS]
    parsed = {
        v: M.parse(databin, size.argv() + M.variant_argv(v, profile), max_tokens, cpu=True)
        for v in variants
    }
    task = M.setup_task(parsed[M.STOCK])
    batches = M.data_batches(task, parsed[M.STOCK], steps, "cpu")
    tokens = sum(int(b["ntokens"]) for b in batches)
    M.write_profile(task, parsed["admin"], batches[0], "cpu", profile)
    trainables = {v: M.build(task, parsed[v], "cpu") for v in variants}
    for trainable in trainables.values():
        for i in range(WARMUP_STEPS):
            trainable.step(batches[i % len(batches)])

    def measure(variant: str) -> float:
        start = time.perf_counter()
        for batch in batches:
            trainables[variant].step(batch)
        return tokens / (time.perf_counter() - start)

    samples = interleave({v: (lambda v=v: measure(v)) for v in variants}, rounds)
    figures = [Figure(NAME, f"{M.STOCK} (stock), CPU", samples[M.STOCK], "target tok/s")]
    for variant, init_type in M.ADMIN_VARIANTS.items():
        figures.append(
            Figure(NAME, f"admin_transformer --init-type {init_type} ({variant}), CPU",
                   samples[variant], "target tok/s")
        )  # fmt: skip
    for variant, init_type in M.ADMIN_VARIANTS.items():
        figures.append(
            Figure(NAME, f"ratio {init_type} ({variant}) / stock, CPU",
                   ratios(samples[variant], samples[M.STOCK]), "", Target(">=", 0.97))
        )  # fmt: skip
    notes = [
        f"{size.text()}, vocabulary {len(task.source_dictionary)}, shared embeddings; "
        f"{steps} real IWSLT'14 batches of at most {max_tokens} tokens ({tokens} target tokens) "
        f"per timed pass; forward + loss + backward + RAdam step; {ctx.threads} torch "
        f"thread(s); {WARMUP_STEPS} warm-up steps per model; {rounds} rounds, order rotating",
    ]
    return Result(figures, notes)
