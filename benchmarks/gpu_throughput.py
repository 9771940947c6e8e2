"""GPU training throughput in bf16: target tokens/s and model FLOP utilisation (MFU) of a
transformer_wmt_en_de-sized model (width 512, FFN 2048, 8 heads) at 6 and 18 layers,
fairseq's stock ``transformer`` against ``admin_transformer`` with each init type.

    python -m benchmarks.gpu_throughput --device cuda            # about 2-4 min on one GPU
    python -m benchmarks.gpu_throughput --device cpu --smoke     # a tiny CPU check of the code

A step is forward + loss (label-smoothed cross-entropy) + backward + the plugin's
RAdam step, under ``torch.autocast(bfloat16)`` with float32 weights (fairseq
0.12's own ``--bf16`` means TPU).  Batches are random tokens of fixed length
(no padding), so every position is counted work.  The models take turns in
every round, the order rotating, and each variant's ratio to the stock model is
the median of its per-round ratios.

FLOPs of one training step are :func:`admin.budget.train_flops` (the project's one
FLOP count, also behind ``python -m admin.budget`` and docs/compute-estimates.md),
with L layers in each stack.  MFU = counted FLOPs per second / peak; the peak
defaults to 989 TFLOP/s (H200 SXM, dense bf16) on CUDA (``--peak-tflops`` to change
it) and is not applied on CPU unless given.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from admin import budget
from benchmarks.core import Context, Figure, Result, Target, interleave, ratios, summarise

NAME = "gpu_throughput"
H200_BF16_DENSE_TFLOPS = budget.GPUS["h200"][1]


@dataclass(frozen=True)
class Config:
    device: str = "cuda"
    depths: tuple[int, ...] = (6, 18)
    dim: int = 512
    ffn: int = 2048
    heads: int = 8
    vocab: int = 32768
    sentences: int = 256
    src_len: int = 32
    tgt_len: int = 32
    dtype: str = "bf16"
    steps: int = 10  # per timed pass
    rounds: int = 5
    warmup: int = 6  # RAdam makes no update in its first 5 steps
    max_seconds: float = 420.0  # no round starts later (the whole script stays under 8 min)
    peak_tflops: float | None = None
    variants: tuple[str, ...] = field(default_factory=tuple)  # empty: all

    def peak(self) -> float | None:
        if self.peak_tflops is not None:
            return self.peak_tflops
        return H200_BF16_DENSE_TFLOPS if self.device == "cuda" else None


# Config fields the command line can set one by one.
SIZE_OPTIONS = (
    "dim", "ffn", "heads", "vocab", "sentences", "src_len", "tgt_len", "steps", "rounds", "warmup",
)  # fmt: skip
SMOKE = {
    "depths": (1, 2), "dim": 32, "ffn": 64, "heads": 2, "vocab": 512,
    "sentences": 4, "src_len": 8, "tgt_len": 8, "steps": 2, "rounds": 2, "warmup": 1,
}  # fmt: skip


def train_flops(cfg: Config, layers: int) -> float:
    """Counted FLOPs of one training step of ``cfg``'s model with ``layers`` per stack."""
    return budget.train_flops(
        cfg.sentences, cfg.src_len, cfg.tgt_len, dim=cfg.dim, ffn=cfg.ffn, vocab=cfg.vocab,
        encoder_layers=layers, decoder_layers=layers,
    )  # fmt: skip


def measure(cfg: Config) -> dict[int, dict[str, list[float]]]:
    """Per depth: ``{series: [tokens/s per round]}``; series are the variants' full
    steps and ``"stock fwd+bwd"`` (the stock model without its optimizer step)."""
    from benchmarks import models as M

    deadline = time.monotonic() + cfg.max_seconds
    names = list(cfg.variants) or [M.STOCK, *M.ADMIN_VARIANTS]
    if M.STOCK not in names:
        names.insert(0, M.STOCK)
    with tempfile.TemporaryDirectory(prefix="gpu-throughput-") as tmp:
        data = M.synthetic_dictionary_dir(Path(tmp) / "dict", cfg.vocab, ("xs", "xt"))
        batch = M.synthetic_batch(cfg.sentences, cfg.src_len, cfg.tgt_len, cfg.vocab, cfg.device)
        return {
            layers: _measure_depth(cfg, layers, names, data, batch, deadline)
            for layers in cfg.depths
        }


def _measure_depth(
    cfg: Config, layers: int, names: list[str], data: Path, batch: dict, deadline: float
) -> dict[str, list[float]]:
    import torch

    from benchmarks import models as M

    size = M.Size(layers, cfg.dim, cfg.ffn, cfg.heads)
    tokens = cfg.sentences * cfg.tgt_len
    profile = data / f"profile-{layers}.json"
    langs = ["--source-lang", "xs", "--target-lang", "xt"]
    parsed = {
        v: M.parse(data, [*langs, *size.argv(), *M.variant_argv(v, profile)], tokens,
                   cpu=cfg.device == "cpu")
        for v in names
    }  # fmt: skip
    task = M.setup_task(parsed[M.STOCK])
    if "admin" in names:
        M.write_profile(task, parsed["admin"], batch, cfg.device, profile)
    amp = torch.bfloat16 if cfg.dtype == "bf16" else None
    models = {v: M.build(task, parsed[v], cfg.device, amp) for v in names}
    for model in models.values():
        for _ in range(cfg.warmup):
            model.step(batch)

    def timed_pass(run_step: Callable[[dict], None]) -> float:
        if cfg.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(cfg.steps):
            run_step(batch)
        if cfg.device == "cuda":
            torch.cuda.synchronize()
        return cfg.steps * tokens / (time.perf_counter() - start)

    tasks = {v: functools.partial(timed_pass, m.step) for v, m in models.items()}
    tasks["stock fwd+bwd"] = functools.partial(timed_pass, models[M.STOCK].forward_backward)
    samples = interleave(tasks, cfg.rounds, deadline)
    del models, tasks
    if cfg.device == "cuda":
        torch.cuda.empty_cache()
    return samples


def mfu(cfg: Config, layers: int, tokens_per_s: float) -> float | None:
    peak = cfg.peak()
    steps_per_s = tokens_per_s / (cfg.sentences * cfg.tgt_len)
    return None if peak is None else train_flops(cfg, layers) * steps_per_s / (peak * 1e12)


def print_table(cfg: Config, results: dict[int, dict[str, list[float]]]) -> None:
    from benchmarks.models import STOCK

    peak = cfg.peak()
    print(f"device {cfg.device}, {cfg.dtype}, width {cfg.dim}, FFN {cfg.ffn}, {cfg.heads} heads, "
          f"vocab {cfg.vocab}, {cfg.sentences} x {cfg.src_len}/{cfg.tgt_len} tokens per step; "
          f"peak {peak if peak is not None else 'not applied'} TFLOP/s")  # fmt: skip
    print(f"{'layers':>6} {'model':<16} {'tok/s':>10} {'TFLOP/s':>8} {'MFU':>6} {'vs stock':>8}")
    for layers, series in results.items():
        for name, samples in series.items():
            tps = summarise(samples).median
            tflops = train_flops(cfg, layers) * tps / (cfg.sentences * cfg.tgt_len) / 1e12
            util = mfu(cfg, layers, tps)
            ratio = summarise(ratios(samples, series[STOCK])).median
            print(f"{layers:>6} {name:<16} {tps:>10.0f} {tflops:>8.2f} "
                  f"{'' if util is None else f'{util:.1%}':>6} {ratio:>8.3f}")  # fmt: skip


def run(ctx: Context) -> Result:
    """The runner's entry: the full measurement on CUDA, else a tiny CPU smoke run."""
    import torch

    from benchmarks.models import ADMIN_VARIANTS, STOCK

    torch.set_num_threads(ctx.threads)
    on_gpu = torch.cuda.is_available()
    cfg = Config() if on_gpu else Config(device="cpu", **SMOKE)
    if ctx.quick:
        cfg = replace(cfg, rounds=2, steps=min(cfg.steps, 5))
    results = measure(cfg)
    figures: list[Figure] = []
    for layers, series in results.items():
        where = f"{layers}-{layers}, bf16" if on_gpu else f"{layers}-{layers}, CPU smoke"
        shown = series if on_gpu else {k: series[k] for k in (STOCK, "admin")}
        for name, samples in shown.items():
            figures.append(Figure(NAME, f"{name}, {where}", samples, "target tok/s"))
        if on_gpu:
            for name in ("stock fwd+bwd", STOCK):
                util = [mfu(cfg, layers, s) or 0.0 for s in series[name]]
                figures.append(Figure(NAME, f"MFU {name}, {where}", util))
            for variant, init_type in ADMIN_VARIANTS.items():
                figures.append(
                    Figure(NAME, f"ratio {init_type} ({variant}) / stock, {where}",
                           ratios(series[variant], series[STOCK]), "", Target(">=", 0.97))
                )  # fmt: skip
    if on_gpu:
        notes = [f"{torch.cuda.get_device_name(0)}; peak {cfg.peak()} TFLOP/s; {asdict(cfg)}"]
    else:
        notes = [
            "GPU figures not measured: no CUDA device here. This is a smoke run of the GPU "
            f"script on CPU with tiny sizes ({SMOKE}); its numbers say nothing about a GPU. "
            "On a GPU: `python -m benchmarks.gpu_throughput --device cuda`"
        ]
    return Result(figures, notes)


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_throughput", description=__doc__.split("\n")[0]
    )
    p.add_argument("--device", choices=("cuda", "cpu"), default=d.device)
    p.add_argument("--smoke", action="store_true", help="tiny sizes and few steps (a CPU check)")
    p.add_argument("--layers", type=int, nargs="+", default=list(d.depths), help="depths to run")
    for name in SIZE_OPTIONS:
        p.add_argument(f"--{name.replace('_', '-')}", type=int)
    p.add_argument("--dtype", choices=("bf16", "fp32"), default=d.dtype)
    p.add_argument("--max-seconds", type=float, default=d.max_seconds)
    p.add_argument(
        "--peak-tflops", type=float,
        help=f"peak FLOP/s for MFU, in TFLOP/s (default on CUDA: {H200_BF16_DENSE_TFLOPS}, "
        "H200 dense bf16)",
    )  # fmt: skip
    p.add_argument("--variants", nargs="+", default=[], help="default: stock and every init type")
    p.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's; 1 with --smoke)"
    )
    p.add_argument("--json", type=Path, help="also write the samples here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu --smoke for a CPU check")
    threads = args.threads or (1 if args.smoke else None)
    if threads:
        torch.set_num_threads(threads)
    cfg = Config(device=args.device, **(SMOKE if args.smoke else {}))
    overrides = {k: getattr(args, k) for k in SIZE_OPTIONS if getattr(args, k) is not None}
    if not args.smoke or args.layers != list(Config().depths):
        overrides["depths"] = tuple(args.layers)
    cfg = replace(
        cfg, **overrides, dtype=args.dtype, max_seconds=args.max_seconds,
        peak_tflops=args.peak_tflops, variants=tuple(args.variants),
    )  # fmt: skip
    start = time.monotonic()
    results = measure(cfg)
    print_table(cfg, results)
    print(f"({time.monotonic() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"config": asdict(cfg), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
