"""Does a table show the paper's result in miniature?  Checked per seed from ``table.json``.

    python -m admin.paper_shape results/demo/table.json --shallow 2-2 --deep 6-6 \\
        [--tolerance 1.0] [--floor 10.0]

The paper's shape (its Table 1 and Figure 1, in the issue's words):

* at the shallow depth all three variants train (a BLEU of at least ``floor``), and
  Admin is within ``tolerance`` BLEU of Post-LN or better, and of Pre-LN or better;
* at the deep depth Post-LN is ``diverged`` (the criterion of admin.divergence), while
  Admin trains (at least ``floor``) to Pre-LN's BLEU or within ``tolerance`` of it.

Every seed of the table is judged on its own: a mean can hide a seed that breaks the
shape.  The exit status is 0 when every seed has the shape, 1 otherwise; the report
names each rule a seed breaks, with its numbers.  Nothing here knows a result: the
thresholds are the criterion's, the BLEUs are the table's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from admin.common.cli import run_cli
from admin.common.errors import AdminError

VARIANTS = ("postln", "preln", "admin")
DIVERGED = "diverged"


@dataclass(frozen=True)
class Criterion:
    shallow: str
    deep: str
    tolerance: float = 1.0  # BLEU: "within about 1 BLEU"
    floor: float = 10.0  # BLEU: below it a run has not learnt to translate


@dataclass(frozen=True)
class SeedShape:
    seed: str
    bleu: dict[str, dict[str, float | str]]  # depth -> variant -> BLEU or "diverged"
    broken: tuple[str, ...]  # the rules this seed breaks (empty: it has the shape)

    @property
    def ok(self) -> bool:
        return not self.broken


def _cell(table: dict[str, Any], variant: str, depth: str, seed: str, where: str) -> Any:
    try:
        cell = table["cells"][variant][depth]
    except KeyError:
        raise AdminError(f"{where}: no cell for {variant} at {depth}") from None
    # table.json: "seeds" maps seed (text) -> BLEU, null for a diverged seed, which
    # "diverged_seeds" lists (as numbers)
    if seed in {str(s) for s in cell.get("diverged_seeds", [])}:
        return DIVERGED
    if cell.get("seeds", {}).get(seed) is None:
        raise AdminError(f"{where}: {variant} at {depth} has no result for seed {seed}")
    return float(cell["seeds"][seed])


def seeds_of(table: dict[str, Any], where: str) -> list[str]:
    seeds: set[str] = set()
    for depths in table.get("cells", {}).values():
        for cell in depths.values():
            seeds.update(cell.get("seeds", {}))
            seeds.update(str(s) for s in cell.get("diverged_seeds", []))
    if not seeds:
        raise AdminError(f"{where}: the table holds no seed's result")
    return sorted(seeds, key=lambda s: (len(s), s))


def judge_seed(table: dict[str, Any], seed: str, c: Criterion, where: str) -> SeedShape:
    bleu = {
        depth: {v: _cell(table, v, depth, seed, where) for v in VARIANTS}
        for depth in (c.shallow, c.deep)
    }
    broken: list[str] = []

    def trained(depth: str, variant: str) -> float | None:
        value = bleu[depth][variant]
        if value == DIVERGED or value < c.floor:
            broken.append(f"{variant} at {depth} does not train: {value} (floor {c.floor})")
            return None
        return float(value)

    def close(depth: str, admin: float | None, other: str) -> None:
        value = bleu[depth][other]
        if admin is None or value == DIVERGED:
            return
        if admin < float(value) - c.tolerance:
            broken.append(
                f"admin at {depth} is {value - admin:.2f} BLEU below {other} "
                f"({admin:.2f} < {value:.2f} - {c.tolerance})"
            )

    shallow = {v: trained(c.shallow, v) for v in VARIANTS}
    close(c.shallow, shallow["admin"], "postln")
    close(c.shallow, shallow["admin"], "preln")
    postln = bleu[c.deep]["postln"]
    if postln != DIVERGED:
        broken.append(f"postln at {c.deep} is not diverged: {postln:.2f} BLEU")
    close(c.deep, trained(c.deep, "admin"), "preln")
    return SeedShape(seed, bleu, tuple(broken))


def judge(table_json: Path, criterion: Criterion) -> list[SeedShape]:
    where = str(table_json)
    try:
        table = json.loads(table_json.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise AdminError(f"{where}: cannot read the table: {err}") from err
    return [judge_seed(table, seed, criterion, where) for seed in seeds_of(table, where)]


def report(shapes: Sequence[SeedShape], c: Criterion) -> str:
    def text(value: float | str) -> str:
        return value if isinstance(value, str) else f"{value:.2f}"

    columns = [f"{v} {d}" for d in (c.shallow, c.deep) for v in VARIANTS]
    lines = [f"| seed | {' | '.join(columns)} | shape |", "| --- " * (len(columns) + 2) + "|"]
    for s in shapes:
        cells = [text(s.bleu[d][v]) for d in (c.shallow, c.deep) for v in VARIANTS]
        lines.append(f"| {s.seed} | {' | '.join(cells)} | {'yes' if s.ok else 'no'} |")
    for s in shapes:
        lines += [f"seed {s.seed}: {line}" for line in s.broken]
    return "\n".join(lines)


def demo_depths(config: Path) -> tuple[str, str]:
    """The demo's shallow and deep depth: the first and last of its matrix in ``config``."""
    demo = yaml.safe_load(config.read_text(encoding="utf-8"))["experiments"]["demo"]
    depths = demo["matrix"]["depths"]
    return depths[0], depths[-1]


def demo_fingerprint(config: Path) -> str:
    """What decides the demo's result, as a short hash: its experiment (data, hparams,
    decoding, averaging, depths, variants; not its seeds or resources) and the divergence
    settings it is judged by, as the workflow loads ``config`` (schema defaults filled in).
    The seed benchmarks record it, so that a changed recipe shows it was not measured."""
    from admin.common import config as cfgmod
    from admin.common import step_options

    repo = Path(__file__).resolve().parents[1]
    cfg = cfgmod.load(cfgmod.read_yaml(config), locate=lambda p: repo / p,
                      schema=repo / "workflow" / "schemas" / "config.schema.yaml")  # fmt: skip
    demo = {k: v for k, v in cfg["experiments"]["demo"].items()
            if k not in ("description", "resources")}  # fmt: skip
    demo["matrix"] = {k: v for k, v in demo["matrix"].items() if k != "seeds"}
    divergence = json.loads(step_options.divergence_settings(cfg, "demo"))
    text = json.dumps({"demo": demo, "divergence": divergence}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin.paper_shape", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("table", type=Path, help="a table.json written by the table rule")
    p.add_argument("--shallow", required=True, help="the shallow depth, e.g. 2-2")
    p.add_argument("--deep", required=True, help="the deep depth, e.g. 6-6")
    p.add_argument("--tolerance", type=float, default=Criterion.tolerance)
    p.add_argument("--floor", type=float, default=Criterion.floor)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    criterion = Criterion(args.shallow, args.deep, args.tolerance, args.floor)
    shapes = judge(args.table, criterion)
    print(report(shapes, criterion))
    return 0 if all(s.ok for s in shapes) else 1


if __name__ == "__main__":
    run_cli(main)
