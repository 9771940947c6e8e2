"""Output change against depth: the amplification effect (the paper's Figure 6).

For each variant and depth, at initialisation, the parameters are perturbed
by ``delta = -scale * sign(N(0, 1))`` as the original analysis code does
(biases, LayerNorm and the residual scales omega/alpha excluded), and
``|F(x, W) - F(x, W + delta)|^2`` is measured on a fixed real batch for the
encoder output and the decoder's last hidden state, as a mean over elements,
averaged over several draws of delta.  The paper shows Post-LN's change
growing as O(N) and Admin's as O(log N).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from admin.analysis.models import Builder
from admin.atomic import atomic_path
from admin.cli import run_cli
from admin.errors import AdminError

DEFAULT_VARIANTS = ("postln", "preln", "admin", "admin-logn", "deepnet")
DEFAULT_DEPTHS = (6, 12, 18, 24, 36, 48)


def perturbed_names(model: torch.nn.Module) -> list[str]:
    """The parameters the perturbation touches: weights, not biases, norms or scales."""
    skip = ("bias", "layer_norm", "omega", "rezero_alpha")
    return [n for n, _ in model.named_parameters() if not any(s in n for s in skip)]


def _outputs(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    net = batch["net_input"]
    enc = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])
    dec, _ = model.decoder(net["prev_output_tokens"], encoder_out=enc, features_only=True)
    return enc["encoder_out"][0], dec


@torch.no_grad()
def output_change(
    model: torch.nn.Module, batch: dict, draws: int, scale: float, seed: int
) -> tuple[float, float]:
    """Mean squared output change (encoder, decoder) over ``draws`` perturbations."""
    model.eval()
    base_enc, base_dec = _outputs(model, batch)
    params = dict(model.named_parameters())
    names = perturbed_names(model)
    originals = {n: params[n].detach().clone() for n in names}
    gen = torch.Generator().manual_seed(seed)
    enc_changes, dec_changes = [], []
    for _ in range(draws):
        for n in names:
            noise = torch.randn(params[n].shape, generator=gen, dtype=params[n].dtype)
            params[n].add_(noise.sign(), alpha=-scale)
        enc, dec = _outputs(model, batch)
        enc_changes.append((enc - base_enc).pow(2).mean().item())
        dec_changes.append((dec - base_dec).pow(2).mean().item())
        for n in names:
            params[n].copy_(originals[n])
    return sum(enc_changes) / draws, sum(dec_changes) / draws


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
    encoder_change: float
    decoder_change: float


def measure(
    builder: Builder,
    variants: Sequence[str],
    depths: Sequence[int],
    dim: int,
    draws: int,
    scale: float,
    seed: int,
) -> list[Row]:
    rows = []
    batch = builder.batch
    for variant in variants:
        for layers in depths:
            # float64, so the tiny perturbation is far above rounding noise.
            model = builder.build(variant, layers, dim, seed).double()
            enc, dec = output_change(model, batch, draws, scale, seed)
            rows.append(Row(variant, layers, enc, dec))
    return rows


def fits(rows: Sequence[Row], stack: str = "encoder") -> dict[str, dict[str, Fit]]:
    """Per variant: the fit of the change against N and against log N."""
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


def write_csv(path: Path, rows: Sequence[Row]) -> None:
    by_stack = {stack: fits(rows, stack) for stack in ("encoder", "decoder")}
    columns = list(asdict(rows[0]))
    for stack in ("encoder", "decoder"):
        columns += [
            f"{stack}_slope_per_layer",
            f"{stack}_r2_linear",
            f"{stack}_slope_per_log_layer",
            f"{stack}_r2_log",
        ]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            for stack, per_variant in by_stack.items():
                lin, log = per_variant[row.variant]["linear"], per_variant[row.variant]["log"]
                record[f"{stack}_slope_per_layer"] = lin.slope
                record[f"{stack}_r2_linear"] = lin.r2
                record[f"{stack}_slope_per_log_layer"] = log.slope
                record[f"{stack}_r2_log"] = log.r2
            writer.writerow(record)


def read_csv(path: Path) -> list[Row]:
    with open(path, newline="") as handle:
        return [
            Row(
                r["variant"],
                int(r["layers"]),
                float(r["encoder_change"]),
                float(r["decoder_change"]),
            )
            for r in csv.DictReader(handle)
        ]


def plot(path: Path, rows: Sequence[Row]) -> None:
    import matplotlib.pyplot as plt

    from admin.plots import save_png

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, stack in zip(axes, ("encoder", "decoder"), strict=True):
        per_variant = fits(rows, stack)
        for variant, fit in per_variant.items():
            mine = [r for r in rows if r.variant == variant]
            label = (
                f"{variant}: {fit['linear'].slope:.2e}/layer (R²={fit['linear'].r2:.2f}), "
                f"{fit['log'].slope:.2e}/ln N (R²={fit['log'].r2:.2f})"
            )
            ax.plot(
                [r.layers for r in mine],
                [getattr(r, f"{stack}_change") for r in mine],
                marker="o",
                label=label,
            )
        ax.set_xlabel("layers N (encoder = decoder)")
        ax.set_ylabel("mean |F(x,W) - F(x,W+δ)|²")
        ax.set_title(f"{stack} output change at initialisation")
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_png(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-bin", type=Path, required=True, help="binarized data (a batch)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--depths", nargs="+", type=int, default=list(DEFAULT_DEPTHS))
    parser.add_argument("--dim", type=int, default=64, help="model width")
    parser.add_argument("--draws", type=int, default=5, help="perturbations averaged")
    parser.add_argument("--scale", type=float, default=1e-4, help="|delta| per weight")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=2000, help="size of the fixed batch")
    parser.add_argument("--out-csv", type=Path, required=True)
    parser.add_argument("--out-png", type=Path, required=True)
    args = parser.parse_args(argv)
    if min(args.depths) < 1 or len(set(args.depths)) < 2:
        raise AdminError(f"--depths needs at least two distinct depths >= 1, got {args.depths}")
    builder = Builder(args.data_bin, max_tokens=args.max_tokens)
    rows = measure(builder, args.variants, args.depths, args.dim, args.draws, args.scale, args.seed)
    write_csv(args.out_csv, rows)
    plot(args.out_png, rows)
    for variant, fit in fits(rows).items():
        print(
            f"{variant}: encoder change slope {fit['linear'].slope:.3e}/layer "
            f"(R2 {fit['linear'].r2:.3f}), {fit['log'].slope:.3e}/ln N (R2 {fit['log'].r2:.3f})"
        )
    return 0


if __name__ == "__main__":
    run_cli(main)
