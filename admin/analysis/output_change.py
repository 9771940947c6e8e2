"""Output change against depth: the amplification effect of the paper.

    python -m admin.analysis.output_change --data-bin DIR --depths 6 12 24 48 \\
        --out-csv output_change.csv --out-png output_change.png

For each variant and depth (encoder = decoder layers), at initialisation, the
weights are perturbed by ``delta = -scale * sign(N(0, 1))``, as the original
analysis code does (biases, LayerNorm and the residual scales omega/alpha are
left alone), and ``|F(x, W) - F(x, W + delta)|^2`` is measured on a fixed real
batch: the mean over the real (non-padding) tokens' elements of the encoder
output and of the decoder's last hidden state.  Both are LayerNorm outputs in
every variant (Pre-LN's final LayerNorm included), so the values compare
across variants.  Each point averages ``draws`` draws of delta on each of
several models (``inits``, the seeds of their initialisation).

The paper reports Post-LN's change growing as O(N) and Admin's (and Pre-LN's)
as O(log N); the CSV and the legend hold, per variant, least-squares fits of the
change against N and against ln N.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from admin.common.atomic import atomic_path
from admin.common.cli import run_cli
from admin.common.errors import AdminError

DEFAULT_VARIANTS = ("postln", "preln", "admin", "admin-logn", "deepnet")
DEFAULT_DEPTHS = (6, 12, 18, 24, 36, 48)
STACKS = ("encoder", "decoder")
# delta's random stream never shares a seed with the model's initialisation
_DELTA_SEED_OFFSET = 1_000_003


def perturbed_names(model: torch.nn.Module) -> list[str]:
    """The parameters the perturbation touches: weights, not biases, norms or scales."""
    skip = ("bias", "layer_norm", "omega", "rezero_alpha")
    return [n for n, _ in model.named_parameters() if not any(s in n for s in skip)]


def real_token_masks(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """Per stack, True at the real tokens of its output (encoder T x B, decoder B x T)."""
    net = batch["net_input"]
    return {
        "encoder": ~net["src_tokens"].eq(model.encoder.padding_idx).t(),
        "decoder": ~net["prev_output_tokens"].eq(model.decoder.padding_idx),
    }


def _outputs(model: torch.nn.Module, batch: dict, stacks: Sequence[str]) -> dict[str, torch.Tensor]:
    net = batch["net_input"]
    enc = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])
    out = {"encoder": enc["encoder_out"][0]}
    if "decoder" in stacks:
        out["decoder"], _ = model.decoder(
            net["prev_output_tokens"], encoder_out=enc, features_only=True
        )
    return out


@torch.no_grad()
def output_change(
    model: torch.nn.Module,
    batch: dict,
    draws: int,
    scale: float,
    seed: int,
    stacks: Sequence[str] = STACKS,
) -> dict[str, list[float]]:
    """Per stack, the mean squared output change of each of ``draws`` perturbations.

    Only the real tokens count: padding positions carry no meaning and, in
    Pre-LN's decoder, normalise a near-empty stream that swamps the rest.
    The weights are restored after every draw.
    """
    model.eval()
    masks = real_token_masks(model, batch)
    base = _outputs(model, batch, stacks)
    params = dict(model.named_parameters())
    names = perturbed_names(model)
    originals = {n: params[n].detach().clone() for n in names}
    gen = torch.Generator().manual_seed(seed + _DELTA_SEED_OFFSET)
    changes: dict[str, list[float]] = {stack: [] for stack in stacks}
    try:
        for _ in range(draws):
            for n in names:
                # drawn in float32 whatever the model's dtype: the same delta for both
                sign = torch.randn(params[n].shape, generator=gen).sign()
                params[n].add_(sign.to(params[n].dtype), alpha=-scale)
            out = _outputs(model, batch, stacks)
            for stack in stacks:
                diff = (out[stack] - base[stack])[masks[stack]]
                changes[stack].append(diff.pow(2).mean().item())
            for n in names:
                params[n].copy_(originals[n])
    finally:
        for n in names:
            params[n].copy_(originals[n])
    return changes


@dataclass
class Fit:
    slope: float
    intercept: float
    r2: float


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Fit:
    """Least-squares ``y = intercept + slope * x`` with its R^2."""
    n = len(xs)
    if n < 2:
        raise AdminError("a fit needs at least two depths")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys) or 1e-300
    return Fit(slope, intercept, 1 - ss_res / ss_tot)


@dataclass
class Row:
    variant: str
    layers: int
    samples: int  # inits x draws
    encoder_change: float  # mean over the samples
    encoder_sem: float  # its standard error
    decoder_change: float
    decoder_sem: float


def _mean_sem(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    sem = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, sem


def samples(
    builder: Any,
    variant: str,
    layers: int,
    hparams: Mapping[str, Any],
    inits: Sequence[int],
    draws: int,
    scale: float,
    stacks: Sequence[str] = STACKS,
    decoder_layers: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, list[float]]:
    """Every (init, draw) measurement of one variant at one depth, per stack.

    ``decoder_layers`` (default: ``layers``) lets an encoder-only measurement
    build a one-layer decoder.  float32 measures the same changes as float64 to
    about four digits (the perturbation is far above rounding noise) at half the cost.
    """
    out: dict[str, list[float]] = {stack: [] for stack in stacks}
    depth = (layers, decoder_layers or layers)
    for seed in inits:
        model = builder.build(variant, depth, hparams, seed).to(dtype)
        for stack, values in output_change(
            model, builder.batch, draws, scale, seed, stacks
        ).items():
            out[stack] += values
        del model
    return out


def measure(
    builder: Any,
    variants: Sequence[str],
    depths: Sequence[int],
    hparams: Mapping[str, Any],
    inits: Sequence[int],
    draws: int,
    scale: float,
    dtype: torch.dtype = torch.float32,
    progress: Any = None,
) -> list[Row]:
    rows = []
    for variant in variants:
        for layers in depths:
            got = samples(builder, variant, layers, hparams, inits, draws, scale, dtype=dtype)
            enc, enc_sem = _mean_sem(got["encoder"])
            dec, dec_sem = _mean_sem(got["decoder"])
            rows.append(Row(variant, layers, len(got["encoder"]), enc, enc_sem, dec, dec_sem))
            if progress:
                progress(rows[-1])
    return rows


def fits(rows: Sequence[Row], stack: str = "encoder") -> dict[str, dict[str, Fit]]:
    """Per variant: the fit of the change against N and against ln N."""
    out: dict[str, dict[str, Fit]] = {}
    for variant in dict.fromkeys(r.variant for r in rows):
        mine = [r for r in rows if r.variant == variant]
        ns = [float(r.layers) for r in mine]
        ys = [getattr(r, f"{stack}_change") for r in mine]
        out[variant] = {
            "linear": fit_line(ns, ys),
            "log": fit_line([math.log(n) for n in ns], ys),
        }
    return out


FIT_COLUMNS = ("slope_per_layer", "r2_linear", "slope_per_ln_layer", "r2_log")


def write_csv(path: Path, rows: Sequence[Row]) -> None:
    """One row per variant and depth; the variant's fits repeated on each of its rows."""
    by_stack = {stack: fits(rows, stack) for stack in STACKS}
    columns = list(asdict(rows[0])) + [f"{s}_{c}" for s in STACKS for c in FIT_COLUMNS]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            record: dict[str, Any] = asdict(row)
            for stack, per_variant in by_stack.items():
                lin, log = per_variant[row.variant]["linear"], per_variant[row.variant]["log"]
                values = (lin.slope, lin.r2, log.slope, log.r2)
                record.update({f"{stack}_{c}": v for c, v in zip(FIT_COLUMNS, values, strict=True)})
            writer.writerow(record)


def read_csv(path: Path) -> list[Row]:
    with open(path, newline="") as handle:
        records = list(csv.DictReader(handle))
    return [
        Row(r["variant"], int(r["layers"]), int(r["samples"]),
            float(r["encoder_change"]), float(r["encoder_sem"]),
            float(r["decoder_change"]), float(r["decoder_sem"]))
        for r in records
    ]  # fmt: skip


def plot(path: Path, rows: Sequence[Row], subtitle: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from admin.plots import COLORS, save_png

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    for ax, stack in zip(axes, STACKS, strict=True):
        for variant, fit in fits(rows, stack).items():
            mine = [r for r in rows if r.variant == variant]
            label = (
                f"{variant}: {fit['linear'].slope:.2e}/layer (R²={fit['linear'].r2:.2f}), "
                f"{fit['log'].slope:.2e}/ln N (R²={fit['log'].r2:.2f})"
            )
            ax.errorbar(
                [r.layers for r in mine],
                [getattr(r, f"{stack}_change") for r in mine],
                yerr=[getattr(r, f"{stack}_sem") for r in mine],
                marker="o",
                capsize=3,
                color=COLORS.get(variant),
                label=label,
            )
        ax.set_xticks(sorted({r.layers for r in rows}))
        ax.set_xlabel("layers N (encoder = decoder)")
        ax.set_ylabel("mean |F(x,W) − F(x,W+δ)|² per element")
        ax.set_title(f"{stack} output change at initialisation")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=6.5, title="fits: slope per layer / per ln N", title_fontsize=7)
    if subtitle:
        fig.suptitle(subtitle, fontsize=9)
    save_png(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    from admin.analysis.models import Builder, small_hparams
    from admin.common.fairseq_command import parse_hparams

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-bin", type=Path, required=True, help="binarized data (a batch)")
    parser.add_argument("--split", default="valid", help="the split the fixed batch comes from")
    parser.add_argument("--max-tokens", type=int, default=2000, help="size of the fixed batch")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--depths", nargs="+", type=int, default=list(DEFAULT_DEPTHS))
    parser.add_argument("--dim", type=int, default=64, help="model width")
    parser.add_argument("--ffn-dim", type=int, default=256, help="feed-forward width")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument(
        "--hparams",
        type=parse_hparams,
        default={},
        help="more fairseq options (JSON), over --dim etc.",
    )
    parser.add_argument("--inits", nargs="+", type=int, default=[1, 2, 3], help="init seeds")
    parser.add_argument("--draws", type=int, default=3, help="perturbations per init")
    parser.add_argument("--scale", type=float, default=1e-4, help="|delta| per weight")
    parser.add_argument(
        "--dtype", choices=["float32", "float64"], default="float32", help="model precision"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out-csv", type=Path, required=True)
    parser.add_argument("--out-png", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq logs at DEBUG
    if min(args.depths) < 1 or len(set(args.depths)) < 2:
        raise AdminError(f"--depths needs at least two distinct depths >= 1, got {args.depths}")
    if args.draws < 1 or not args.inits:
        raise AdminError("--draws must be >= 1 and --inits name at least one seed")
    torch.set_num_threads(args.threads)
    hparams = {**small_hparams(args.dim, args.ffn_dim, args.heads), **args.hparams}
    builder = Builder(args.data_bin, split=args.split, max_tokens=args.max_tokens)
    tokens = int(builder.batch["ntokens"])

    def progress(row: Row) -> None:
        print(
            f"{row.variant} {row.layers} layers: encoder {row.encoder_change:.3e} "
            f"± {row.encoder_sem:.1e}, decoder {row.decoder_change:.3e} ± {row.decoder_sem:.1e}",
            flush=True,
        )

    rows = measure(
        builder, args.variants, sorted(set(args.depths)), hparams, args.inits, args.draws,
        args.scale, getattr(torch, args.dtype), progress,
    )  # fmt: skip
    write_csv(args.out_csv, rows)
    subtitle = (
        f"dim {hparams['encoder_embed_dim']}, FFN {hparams['encoder_ffn_embed_dim']}, "
        f"{hparams['encoder_attention_heads']} heads; δ = ±{args.scale:g} per weight; "
        f"{len(args.inits)} inits × {args.draws} draws per point (± standard error), "
        f"{args.dtype}; "
        f"one batch ({tokens} target tokens) from {args.data_bin.name}/{args.split}"
    )
    plot(args.out_png, rows, subtitle)
    for variant, fit in fits(rows).items():
        print(
            f"{variant}: encoder change slope {fit['linear'].slope:.3e}/layer "
            f"(R2 {fit['linear'].r2:.3f}), {fit['log'].slope:.3e}/ln N (R2 {fit['log'].r2:.3f})"
        )
    return 0


if __name__ == "__main__":
    run_cli(main)
