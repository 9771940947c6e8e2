"""Loss curves and BLEU against depth, as PNG files.

    python -m admin.plots curves --run RUN_DIR [--run RUN_DIR ...] --out curves_6-6.png \\
        [--dataset NAME] [--rehearsal]
    python -m admin.plots bleu --run RUN_DIR [--run RUN_DIR ...] --out bleu_vs_depth.png \\
        [--dataset NAME] [--rehearsal]

Each run folder (:mod:`admin.common.run_folder`) names its variant, depth and seed in its
``status.json``.  ``curves`` (runs of one depth) reads each ``train.log``: training loss solid,
validation loss dashed, by update, one colour per variant, one line per seed; a
diverged run's curve simply ends.  ``bleu`` reads each ``scores.json``: mean
tokenized BLEU ± std per variant by depth, diverged cells marked x on the axis.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402

from admin.common import run_folder as rf  # noqa: E402
from admin.common.atomic import atomic_path  # noqa: E402
from admin.common.cli import run_cli  # noqa: E402
from admin.common.errors import AdminError  # noqa: E402
from admin.common.fairseq_log import parse  # noqa: E402
from admin.common.run_folder import parse_depth  # noqa: E402
from admin.common.variants import VARIANTS  # noqa: E402
from admin.table import LABELS, build_table, read_score  # noqa: E402

COLORS = dict(zip(VARIANTS, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))


def mark_rehearsal(fig: plt.Figure) -> None:
    """Stamp a rehearsal's figure so that nobody takes it for a reproduction."""
    fig.text(0.5, 0.5, "REHEARSAL", fontsize=48, color="red", alpha=0.25, rotation=25,
             ha="center", va="center", transform=fig.transFigure)  # fmt: skip
    fig.suptitle("REHEARSAL, not a reproduction", color="red", fontsize="medium")


def save_png(fig: plt.Figure, path: Path) -> None:
    """Write ``fig`` as a PNG atomically and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_curves(dataset: str, runs: Sequence[Path], out: Path, rehearsal: bool = False) -> Path:
    """Loss curves of every run of one depth, one colour per variant."""
    keyed = [(rf.read_status(rf.RunFolder(run).status).key, rf.RunFolder(run).train_log)
             for run in runs]  # fmt: skip
    depths = {key.depth for key, _ in keyed}
    if len(depths) != 1:
        raise AdminError(f"curves are drawn per depth; these runs have {sorted(depths)}")
    keyed.sort(key=lambda r: (list(VARIANTS).index(r[0].variant), r[0].seed))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labelled: set[str] = set()
    for key, log in keyed:
        variant = key.variant
        with open(log, encoding="utf-8", errors="replace") as handle:
            progress = parse(handle)
        color = COLORS.get(variant)
        label = None if variant in labelled else LABELS.get(variant, variant)
        labelled.add(variant)
        for points, style, suffix in (
            (progress.train_curve(), "-", " train"),
            (progress.valid_curve(), "--", " valid"),
        ):
            finite = [p for p in points if math.isfinite(p.loss)]
            if finite:
                ax.plot(
                    [p.num_updates for p in finite], [p.loss for p in finite], style,
                    color=color, alpha=0.85, label=label and label + suffix,
                )  # fmt: skip
    enc, dec = parse_depth(depths.pop())
    ax.set(title=f"{dataset}, {enc}L-{dec}L", xlabel="updates", ylabel="loss (base 2)")
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(fontsize="small")
    if rehearsal:
        mark_rehearsal(fig)
    save_png(fig, out)
    return out


def plot_bleu_vs_depth(
    dataset: str, runs: Sequence[Path], out: Path, rehearsal: bool = False
) -> Path:
    table = build_table(dataset, [read_score(run) for run in runs])
    depths = table["depths"]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = range(len(depths))
    for variant in table["variants"]:
        cells = [table["cells"][variant][d] for d in depths]
        color = COLORS.get(variant)
        done = [(x, c) for x, c in zip(xs, cells, strict=True) if c["mean"] is not None]
        if done:
            ax.errorbar(
                [x for x, _ in done], [c["mean"] for _, c in done],
                yerr=[c["std"] or 0.0 for _, c in done], marker="o", capsize=3,
                color=color, label=table["labels"][variant],
            )  # fmt: skip
        diverged = [x for x, c in zip(xs, cells, strict=True) if c["n"] == 0 and c["seeds"]]
        if diverged:
            ax.plot(diverged, [0.0] * len(diverged), "x", color=color, markersize=10, clip_on=False)
    ax.set_xticks(list(xs), [f"{e}L-{d}L" for e, d in map(parse_depth, depths)])
    ax.set(title=f"{dataset}: test BLEU by depth (x = diverged)", xlabel="depth", ylabel="BLEU")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if rehearsal:
        mark_rehearsal(fig)
    save_png(fig, out)
    return out


def dataset_of(runs: Sequence[Path]) -> str:
    """The dataset the runs' statuses name (one), for the title."""
    names = {rf.read_status(rf.RunFolder(run).status).key.dataset for run in runs}
    return names.pop() if len(names) == 1 else "results"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin.plots", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="plot", required=True)
    for name, what in (("curves", "loss curves of one depth"), ("bleu", "BLEU against depth")):
        s = sub.add_parser(name, help=what)
        s.add_argument("--run", action="append", type=Path, required=True, help="run folder")
        s.add_argument("--out", required=True, type=Path, help="PNG to write")
        s.add_argument("--dataset", help="title (default: the dataset the runs name)")
        s.add_argument("--rehearsal", action="store_true", help="mark it as a rehearsal")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plot = plot_curves if args.plot == "curves" else plot_bleu_vs_depth
    plot(args.dataset or dataset_of(args.run), args.run, args.out, rehearsal=args.rehearsal)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
