"""The paper-style results table of one dataset.

    python -m admin.table --dataset iwslt14_de_en --run RUN_DIR [--run RUN_DIR ...] \\
        (--out-dir results/iwslt14_de_en | --md F --csv F --json F) [--rehearsal]

Each run folder (:mod:`admin.common.run_folder`) gives its ``status.json`` (which names its
variant, depth and seed) and its ``scores.json``.
Writes ``table.md``, ``table.csv`` and ``table.json``.  Rows
are variants, columns depths.  A cell is tokenized BLEU (the paper's metric):
mean ± sample standard deviation over the seeds that completed, the single
value for one seed, or ``diverged`` when every seed was flagged diverged (``k/n diverged``
is noted when only some were), as the paper prints it.  A flagged run is scored all the
same: its BLEU is in ``table.json`` (``seeds`` and ``flagged``) and ``table.csv`` (the
``diverged`` columns), never in the mean; in ``table.md`` a footnote per flagged run
names its rule, its BLEU and the ``status.json`` that holds the evidence.  The paper's
number sits beside every cell the paper reports (:mod:`admin.common.paper_results`); for
a dataset the paper does not use (the demo, Multi30k) the table says that the paper
reports no numbers for it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from admin.common import run_folder as rf
from admin.common.atomic import atomic_write_text
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.common.paper_results import format_paper_cell, has_paper_results, paper_cell
from admin.common.run_folder import parse_depth
from admin.common.variants import VARIANTS

LABELS = {
    "postln": "Post-LN", "preln": "Pre-LN", "admin": "Admin",
    "admin-logn": "Admin (log N)", "deepnet": "DeepNet", "rezero": "ReZero",
}  # fmt: skip
METRIC = "bleu_tokenized"


@dataclass
class Score:
    variant: str
    depth: str
    seed: int
    status: str
    bleu: float | None  # None: a flagged run with nothing to score
    sacrebleu: float | None
    rule: str | None = None  # a flagged run's rule (admin.divergence.RULES)
    reason: str = ""
    evidence: str = ""  # the status.json that holds the verdict's evidence


@dataclass
class Cell:
    seeds: dict[int, float | None] = field(default_factory=dict)  # every seed's BLEU
    flagged: dict[int, Score] = field(default_factory=dict)  # the seeds flagged diverged

    @property
    def values(self) -> list[float]:
        """The completed seeds' BLEU: what the mean is over."""
        done = sorted((s, v) for s, v in self.seeds.items() if s not in self.flagged)
        return [v for _, v in done if v is not None]

    @property
    def diverged(self) -> list[int]:
        return sorted(self.flagged)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def text(self) -> str:
        if not self.values:
            return "diverged"
        mean, std = self.mean, self.std
        out = f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
        if self.diverged:
            out += f" ({len(self.diverged)}/{len(self.seeds)} diverged)"
        return out


def read_score(run: Path) -> Score:
    """One run's result: its status (variant, depth, seed) and its scores."""
    folder = rf.RunFolder(Path(run))
    status = rf.read_status(folder.status)
    doc = rf.read_json(folder.scores, "scores")
    key = status.key
    if doc.get("status") != status.status:
        raise AdminError(
            f"{folder.scores} says {doc.get('status')!r} but {folder.status} says "
            f"{status.status!r}: the scores are stale; rerun the workflow"
        )
    bleu = doc.get(METRIC)
    if status.diverged:
        number = isinstance(bleu, int | float) and math.isfinite(bleu)
        return Score(key.variant, key.depth, key.seed, status.status,
                     float(bleu) if number else None, doc.get("sacrebleu"),
                     rule=status.doc.get("rule") or "diverged", reason=status.reason,
                     evidence=str(folder.status))  # fmt: skip
    if not isinstance(bleu, int | float) or not math.isfinite(bleu):
        raise AdminError(f"{folder.scores}: completed run without a numeric {METRIC}")
    return Score(key.variant, key.depth, key.seed, status.status, float(bleu),
                 doc.get("sacrebleu"))  # fmt: skip


def depth_key(depth: str) -> tuple[int, int]:
    return parse_depth(depth)


NO_PAPER = "the paper reports no numbers for this dataset"
REHEARSAL = (
    "REHEARSAL, not a reproduction: small models, a few updates, a sample of the demo corpus"
)


def build_table(dataset: str, scores: Sequence[Score], rehearsal: bool = False) -> dict[str, Any]:
    cells: dict[tuple[str, str], Cell] = {}
    for s in scores:
        cell = cells.setdefault((s.variant, s.depth), Cell())
        if s.seed in cell.seeds:
            raise AdminError(f"two scores for {s.variant} {s.depth} seed {s.seed}")
        cell.seeds[s.seed] = s.bleu
        if s.status == rf.DIVERGED:
            cell.flagged[s.seed] = s
    variants = [v for v in VARIANTS if any(k[0] == v for k in cells)]
    depths = sorted({k[1] for k in cells}, key=depth_key)
    rows: dict[str, dict[str, Any]] = {}
    for variant in variants:
        rows[variant] = {}
        for depth in depths:
            cell = cells.get((variant, depth))
            paper = paper_cell(dataset, variant, depth)
            rows[variant][depth] = {
                "text": cell.text() if cell else "",
                "mean": cell.mean if cell else None,
                "std": cell.std if cell else None,
                "n": len(cell.values) if cell else 0,
                "seeds": {str(k): v for k, v in sorted(cell.seeds.items())} if cell else {},
                "diverged_seeds": cell.diverged if cell else [],
                "flagged": {str(k): _flag(f) for k, f in sorted(cell.flagged.items())}
                if cell
                else {},
                "paper": format_paper_cell(paper) or None,
            }
    return {
        "dataset": dataset,
        # false: the paper reports no numbers for this dataset (every "paper" is null)
        "paper_results": has_paper_results(dataset),
        "metric": METRIC,
        "std": "sample standard deviation (n-1) over completed seeds",
        "variants": variants,
        "labels": {v: LABELS.get(v, v) for v in variants},
        "depths": depths,
        "cells": rows,
        "rehearsal": rehearsal,
    }


def _flag(score: Score) -> dict[str, Any]:
    return {"rule": score.rule, "reason": score.reason, "bleu": score.bleu,
            "evidence": score.evidence}  # fmt: skip


def _bleu_text(bleu: float | None) -> str:
    return "not scored" if bleu is None else f"{bleu:.2f}"


def to_markdown(table: dict[str, Any]) -> str:
    depths = table["depths"]
    head = ["variant", *(_depth_label(d) for d in depths)]
    paper = "paper in brackets" if table.get("paper_results") else NO_PAPER
    lines = [
        f"# {table['dataset']}: test BLEU (tokenized; mean ± std over seeds; {paper})",
        "",
        *([f"**{REHEARSAL}.**", ""] if table.get("rehearsal") else []),
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    notes: list[str] = []
    for variant in table["variants"]:
        row = [table["labels"][variant]]
        for depth in depths:
            cell = table["cells"][variant][depth]
            text = cell["text"]
            for seed, flag in cell.get("flagged", {}).items():
                notes.append(
                    f"[^{len(notes) + 1}]: {table['labels'][variant]} {_depth_label(depth)} "
                    f"seed {seed}: diverged ({flag['rule']}): {flag['reason']}. Its BLEU, not "
                    f"in the mean: {_bleu_text(flag['bleu'])}. Evidence: {flag['evidence']}"
                )
                text += f"[^{len(notes)}]"
            row.append(text + (f" (paper {cell['paper']})" if cell["paper"] else ""))
        lines.append("| " + " | ".join(row) + " |")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def to_csv(table: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    first = "variant (REHEARSAL, not a reproduction)" if table.get("rehearsal") else "variant"
    suffixes = ("", " paper", " diverged runs")
    writer.writerow([first, *(f"{d}{suffix}" for d in table["depths"] for suffix in suffixes)])
    for variant in table["variants"]:
        row = [variant]
        for depth in table["depths"]:
            cell = table["cells"][variant][depth]
            flagged = "; ".join(
                f"seed {seed}: {_bleu_text(flag['bleu'])} ({flag['rule']})"
                for seed, flag in cell.get("flagged", {}).items()
            )
            row += [cell["text"], cell["paper"] or "", flagged]
        writer.writerow(row)
    return buf.getvalue()


def _depth_label(depth: str) -> str:
    enc, dec = parse_depth(depth)
    return f"{enc}L-{dec}L"


def write_table(
    dataset: str,
    runs: Sequence[Path],
    md: Path,
    csv_path: Path,
    json_path: Path,
    rehearsal: bool = False,
) -> dict[str, Any]:
    if not runs:
        raise AdminError("no runs given (--run RUN_DIR)")
    table = build_table(dataset, [read_score(run) for run in runs], rehearsal)
    atomic_write_text(md, to_markdown(table))
    atomic_write_text(csv_path, to_csv(table))
    atomic_write_text(json_path, json.dumps(table, indent=2) + "\n")
    return table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin.table", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--run", action="append", type=Path, default=[], help="a run folder (repeat)")
    p.add_argument("--out-dir", type=Path, help="writes table.{md,csv,json} here")
    p.add_argument("--md", type=Path)
    p.add_argument("--csv", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--rehearsal", action="store_true", help="mark the table as a rehearsal")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    outputs = [args.md, args.csv, args.json]
    if args.out_dir is not None:
        outputs = [
            o or args.out_dir / f"table.{ext}"
            for o, ext in zip(outputs, ("md", "csv", "json"), strict=True)
        ]
    if any(o is None for o in outputs):
        raise AdminError("give --out-dir, or all of --md, --csv and --json")
    table = write_table(args.dataset, args.run, *outputs, rehearsal=args.rehearsal)
    print(to_markdown(table), end="")
    return 0


if __name__ == "__main__":
    run_cli(main)
