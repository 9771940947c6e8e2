"""Checkpoint averaging: time and peak memory of ``admin.average`` over 10 checkpoints,
against the size of one checkpoint's tensors.

The checkpoints are real fairseq checkpoints: one ``fairseq-train`` update of an
``admin_transformer_iwslt_de_en`` 6-6 model (IWSLT'14 sentences) gives
``checkpoint_last.pt`` (model, RAdam state, config, progress), and 10 copies with
shifted weights become ``checkpoint1.pt`` ... ``checkpoint10.pt``.

Each repeat averages them in a fresh process.  torch allocates outside Python's
heap (tracemalloc sees none of it), so the figure is the process's resident-set
high-water mark (VmHWM, reset just before averaging) minus its resident set
before averaging.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.core import (
    Context,
    Figure,
    Result,
    Target,
    json_from_child,
    status_kb,
    train_checkpoint,
)

NAME = "checkpoint_averaging"
CHECKPOINTS = 10
CHILD = "from benchmarks.checkpoint_averaging import child; child()"


def train_one_update(ctx: Context, databin: Path, save_dir: Path, quick: bool) -> Path:
    """A real fairseq checkpoint after one update, as the train step writes them."""
    hparams = {
        "arch": "admin_transformer_iwslt_de_en", "share_all_embeddings": True,
        "optimizer": "radam", "adam_betas": "(0.9, 0.98)", "lr": 0.0005,
        "criterion": "label_smoothed_cross_entropy", "label_smoothing": 0.1,
        "max_tokens": 256, "max_update": 1, "num_workers": 0, "disable_validation": True,
    }  # fmt: skip
    if quick:  # a narrow model: the same checkpoint layout, a fraction of the bytes
        hparams.update(encoder_embed_dim=64, decoder_embed_dim=64,
                       encoder_ffn_embed_dim=128, decoder_ffn_embed_dim=128)  # fmt: skip
    depth = (2, 2) if quick else (6, 6)
    return train_checkpoint(ctx, databin, hparams, depth, "admin-logn", save_dir)


def make_checkpoints(source: Path, folder: Path, count: int = CHECKPOINTS) -> list[Path]:
    """``checkpoint1.pt`` ... in fairseq's format: the source with shifted float weights."""
    import torch

    from admin.common.checkpoints import load_checkpoint

    state = load_checkpoint(source)
    original = state["model"]
    paths = []
    for epoch in range(1, count + 1):
        state["model"] = {
            k: v + 1e-3 * epoch if v.is_floating_point() else v for k, v in original.items()
        }
        path = folder / f"checkpoint{epoch}.pt"
        torch.save(state, path)
        paths.append(path)
    return paths


def child() -> None:
    """In a fresh process: average argv[1:-1] into argv[-1]; print time and memory (JSON)."""
    from admin.average import average

    paths, out = [Path(p) for p in sys.argv[1:-1]], Path(sys.argv[-1])
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = status_kb("VmRSS")
    start = time.perf_counter()
    average(paths, out)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss_kb": before, "hwm_kb": status_kb("VmHWM")}))


def average_in_child(ctx: Context, paths: list[Path], out: Path) -> dict:
    return json_from_child(ctx, CHILD, [*map(str, paths), str(out)], "averaging")


def run(ctx: Context) -> Result:
    from admin.common.checkpoints import load_checkpoint, tensor_bytes
    from benchmarks.databin import iwslt_databin

    folder = ctx.workdir / NAME
    folder.mkdir(parents=True, exist_ok=True)
    source = train_one_update(ctx, iwslt_databin(ctx, 3000), folder / "train", ctx.quick)
    state = load_checkpoint(source)
    ckpt_mb = tensor_bytes(state) / 2**20
    model_mb = tensor_bytes(state["model"]) / 2**20
    params = sum(v.numel() for v in state["model"].values())
    del state
    paths = make_checkpoints(source, folder)
    out = folder / "checkpoint_avg.pt"
    runs = [average_in_child(ctx, paths, out) for _ in range(ctx.repeats(2))]
    peak_mb = [(r["hwm_kb"] - r["rss_kb"]) / 1024 for r in runs]
    figures = [
        Figure(NAME, f"averaging {CHECKPOINTS} checkpoints, time",
               [r["seconds"] for r in runs], "s"),
        Figure(NAME, "one checkpoint's tensors (model + optimizer state)", [ckpt_mb], "MiB"),
        Figure(NAME, "peak memory while averaging (RSS high-water mark increase)", peak_mb, "MiB"),
        Figure(NAME, "peak memory / one checkpoint's tensors",
               [p / ckpt_mb for p in peak_mb], "", Target("<=", 2.0)),
        Figure(NAME, "peak memory / the model's tensors", [p / model_mb for p in peak_mb]),
    ]  # fmt: skip
    notes = [
        f"{'a narrow 64-dim 2-2' if ctx.quick else 'an admin_transformer_iwslt_de_en 6-6'} "
        f"model, {params / 1e6:.1f} M parameters ({model_mb:.0f} MiB float32); a checkpoint "
        "also holds RAdam's two moment buffers; the averager keeps a float64 running sum "
        "(2x the model) beside the one checkpoint it is reading; each repeat in a fresh process"
    ]
    return Result(figures, notes)
