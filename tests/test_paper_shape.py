"""admin.paper_shape: the paper's shape judged per seed from a table.json.

The tables here are written by the tests (the criterion's logic); the demo's real
runs are judged by the seed benchmarks (benchmarks/demo_seeds.py, demo_fresh_seeds.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admin import paper_shape
from admin.common.errors import AdminError

SHAPE = paper_shape.Criterion(shallow="2-2", deep="6-6", tolerance=1.0, floor=10.0)


def _table(tmp_path: Path, seeds: dict[str, dict[str, dict[str, float | str]]]) -> Path:
    """seeds: seed -> depth -> variant -> BLEU or "diverged", as the table rule writes it."""
    cells: dict = {}
    for seed, depths in seeds.items():
        for depth, variants in depths.items():
            for variant, value in variants.items():
                cell = cells.setdefault(variant, {}).setdefault(
                    depth, {"seeds": {}, "diverged_seeds": []}
                )
                if value == "diverged":  # as admin.table writes it
                    cell["diverged_seeds"].append(int(seed))
                    cell["seeds"][seed] = None
                else:
                    cell["seeds"][seed] = value
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"dataset": "demo", "cells": cells}))
    return path


def _seed(shallow: tuple, deep: tuple) -> dict:
    return {
        "2-2": dict(zip(paper_shape.VARIANTS, shallow, strict=True)),
        "6-6": dict(zip(paper_shape.VARIANTS, deep, strict=True)),
    }


def test_the_papers_shape_passes(tmp_path):
    table = _table(tmp_path, {"1": _seed((40.0, 41.0, 40.5), ("diverged", 50.0, 49.2))})
    (shape,) = paper_shape.judge(table, SHAPE)
    assert shape.ok and shape.seed == "1"
    assert shape.bleu["6-6"]["postln"] == "diverged" and shape.bleu["6-6"]["admin"] == 49.2


@pytest.mark.parametrize(
    ("shallow", "deep", "rule"),
    [
        # deep Post-LN trains: not the paper's failure
        ((40.0, 41.0, 40.5), (12.5, 50.0, 50.0), "postln at 6-6 is not diverged: 12.50"),
        # deep Admin more than 1 BLEU below Pre-LN
        ((40.0, 41.0, 40.5), ("diverged", 50.0, 48.5), "admin at 6-6 is 1.50 BLEU below preln"),
        # deep Admin does not train
        ((40.0, 41.0, 40.5), ("diverged", 50.0, "diverged"), "admin at 6-6 does not train"),
        ((40.0, 41.0, 40.5), ("diverged", 3.0, 2.5), "admin at 6-6 does not train: 2.5"),
        # shallow Admin below Post-LN or Pre-LN by more than the tolerance
        ((42.0, 40.0, 40.5), ("diverged", 50.0, 50.0), "admin at 2-2 is 1.50 BLEU below postln"),
        ((40.0, 42.0, 40.5), ("diverged", 50.0, 50.0), "admin at 2-2 is 1.50 BLEU below preln"),
        # a shallow variant that does not train
        (("diverged", 41.0, 40.5), ("diverged", 50.0, 50.0), "postln at 2-2 does not train"),
    ],
)
def test_each_broken_rule_is_named_with_its_numbers(tmp_path, shallow, deep, rule):
    table = _table(tmp_path, {"1": _seed(shallow, deep)})
    (shape,) = paper_shape.judge(table, SHAPE)
    assert not shape.ok
    assert any(broken.startswith(rule) for broken in shape.broken), shape.broken


def test_deep_postln_must_be_diverged_not_only_fail_to_translate(tmp_path):
    stuck = _seed((40.0, 41.0, 40.5), (0.4, 50.0, 50.0))
    table = _table(tmp_path, {"1": stuck})
    (shape,) = paper_shape.judge(table, SHAPE)
    assert not shape.ok and shape.broken == ("postln at 6-6 is not diverged: 0.40 BLEU",)
    text = paper_shape.report([shape], SHAPE)
    assert "seed 1: postln at 6-6 is not diverged: 0.40 BLEU" in text


def test_every_seed_is_judged_on_its_own(tmp_path):
    good = _seed((40.0, 41.0, 40.5), ("diverged", 50.0, 50.0))
    bad = _seed((40.0, 41.0, 40.5), ("diverged", 50.0, 45.0))
    table = _table(tmp_path, {"1": good, "2": bad, "10": good})
    shapes = paper_shape.judge(table, SHAPE)
    assert [s.seed for s in shapes] == ["1", "2", "10"]
    assert [s.ok for s in shapes] == [True, False, True]


def test_the_cli_prints_each_seed_and_exits_1_when_one_breaks_the_shape(tmp_path, capsys):
    good = _seed((40.0, 41.0, 40.5), ("diverged", 50.0, 50.0))
    bad = _seed((40.0, 41.0, 40.5), (20.0, 50.0, 50.0))
    table = _table(tmp_path, {"1": good, "2": bad})
    argv = [str(table), "--shallow", "2-2", "--deep", "6-6"]
    assert paper_shape.main(argv) == 1
    out = capsys.readouterr().out
    assert "| 1 | 40.00 | 41.00 | 40.50 | diverged | 50.00 | 50.00 | yes |" in out
    assert "| 2 | 40.00 | 41.00 | 40.50 | 20.00 | 50.00 | 50.00 | no |" in out
    assert "seed 2: postln at 6-6 is not diverged: 20.00 BLEU" in out
    table = _table(tmp_path, {"1": good})
    assert paper_shape.main(argv) == 0


def test_a_missing_cell_or_seed_is_named(tmp_path):
    seeds = {"1": _seed((40.0, 41.0, 40.5), ("diverged", 50.0, 50.0))}
    del seeds["1"]["6-6"]["admin"]
    with pytest.raises(AdminError, match=r"table.json: no cell for admin at 6-6"):
        paper_shape.judge(_table(tmp_path, seeds), SHAPE)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(AdminError, match=r"broken.json: cannot read the table"):
        paper_shape.judge(broken, SHAPE)
