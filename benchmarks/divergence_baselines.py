"""The divergence criterion's baselines on a WMT-sized target: time and peak memory.

Every training job computes the target unigram and (rule 4) the target bigram of its
data-bin before fairseq starts (admin.divergence, admin.baselines).  This measures
both on a training target of ``SENTENCES`` sentences, about WMT'14 En-De's 4.5M: real
BPE'd IWSLT'14 sentences (``benchmarks.databin``) repeated, written in fairseq's own mmap
format (its index writer), so the files are the size a WMT job reads.  Repetition leaves
fewer distinct bigrams than WMT has; the bigram's memory is bounded by the tokens it
counts (``admin.baselines.SAMPLE_TOKENS``), not by those.  Each baseline runs in a
fresh process; peak memory is its RSS high-water mark above the RSS it started with.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from benchmarks.core import Context, Figure, Result, json_from_child, status_kb

NAME = "divergence_baselines"
SENTENCES = 4_500_000
QUICK_SENTENCES = 300_000
BASE_LINES = 3000

CHILD = "from benchmarks.divergence_baselines import child; child()"


def child() -> None:
    """In a fresh process: the baseline argv[1] of data-bin argv[2]; time, memory (JSON)."""
    from admin.baselines import bigram_baseline, unigram_baseline

    which = {"unigram": unigram_baseline, "bigram": bigram_baseline}[sys.argv[1]]
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = status_kb("VmRSS")
    start = time.perf_counter()
    baseline = which(sys.argv[2])
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss_kb": before, "hwm_kb": status_kb("VmHWM"),
                      "baseline": baseline.to_json()}))  # fmt: skip


def wmt_sized_databin(base: Path, dest: Path, sentences: int) -> int:
    """``base``'s data-bin with its training target repeated to ``sentences`` sentences;
    the number of training target tokens written."""
    import numpy as np
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    from admin.baselines import read_binarized

    dest.mkdir(parents=True, exist_ok=True)
    for item in base.iterdir():
        if not item.name.startswith("train.de-en.en."):
            shutil.copy(item, dest / item.name)
    tokens, count = read_binarized(base / "train.de-en.en")
    sizes = np.fromfile(base / "train.de-en.en.idx", dtype=np.int32, offset=26, count=count)
    reps = -(-sentences // count)
    with open(dest / "train.de-en.en.bin", "wb") as f:
        block = np.asarray(tokens)
        for _ in range(reps):
            f.write(block.tobytes())
    with MMapIndexedDataset.Index.writer(str(dest / "train.de-en.en.idx"), tokens.dtype.type) as w:
        w.write(np.tile(sizes, reps).tolist())
    return int(tokens.size) * reps


def measure(ctx: Context, which: str, databin: Path) -> dict:
    return json_from_child(ctx, CHILD, [which, str(databin)], f"{which} baseline")


def run(ctx: Context) -> Result:
    from benchmarks.databin import iwslt_databin

    sentences = QUICK_SENTENCES if ctx.quick else SENTENCES
    databin = ctx.workdir / NAME
    tokens = wmt_sized_databin(iwslt_databin(ctx, BASE_LINES), databin, sentences)
    figures, notes = [], []
    for which in ("unigram", "bigram"):
        runs = [measure(ctx, which, databin) for _ in range(ctx.repeats(2))]
        figures += [
            Figure(NAME, f"{which} baseline, time", [r["seconds"] for r in runs], "s"),
            Figure(NAME, f"{which} baseline, peak memory (RSS high-water mark increase)",
                   [(r["hwm_kb"] - r["rss_kb"]) / 1024 for r in runs], "MiB"),
        ]  # fmt: skip
        baseline = runs[-1]["baseline"]
        notes.append(f"{which}: {baseline['bits']} bits, {json.dumps(baseline)}")
    notes.insert(
        0,
        f"training target: {sentences:,} sentences, {tokens:,} tokens (real IWSLT'14 BPE "
        f"sentences, {BASE_LINES} repeated), fairseq's mmap format; each repeat a fresh process",
    )
    return Result(figures, notes)
