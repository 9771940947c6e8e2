"""The embedded demo, exactly as ``make demo`` runs it, shows the paper's shape.

One real run of the default target with the project's config/config.yaml (seed 1) in a
temporary folder; its table is judged by admin.paper_shape at the demo's shallow and
deep depth.  No number here comes from anywhere but the run: the thresholds are the
criterion's (admin.paper_shape), the BLEUs the run's.  The seeds 2 and 3 are measured by
``python -m benchmarks --only demo_seeds``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admin import paper_shape
from tests.conftest import REPO
from tests.workflow_support import snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("demo")
    config = REPO / "config" / "config.yaml"
    proc = snakemake("--cores", "2", "--configfile", str(config), cwd=workdir, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return workdir / "results" / "demo"


def test_the_demo_table_has_the_papers_shape(demo):
    shallow, deep = paper_shape.demo_depths(REPO / "config" / "config.yaml")
    criterion = paper_shape.Criterion(shallow, deep)
    (shape,) = paper_shape.judge(demo / "table.json", criterion)
    assert shape.seed == "1"
    assert shape.ok, paper_shape.report([shape], criterion)


def test_deep_postln_is_diverged_and_its_status_records_the_verdict_with_its_evidence(demo):
    """Deep Post-LN is ``diverged`` by admin.divergence: status.json holds the verdict with
    the valid losses and the baselines it rests on, and the table prints the word."""
    _, deep = paper_shape.demo_depths(REPO / "config" / "config.yaml")
    run = demo / "postln" / deep / "seed1"
    status = json.loads((run / "status.json").read_text())
    scores = json.loads((run / "scores.json").read_text())
    assert status["status"] == "diverged", status["reason"]
    evidence = status["evidence"]
    assert evidence["unigram"]["bits"] > evidence["bigram"]["bits"] > 0
    assert evidence["valid"]["validations"] >= 1
    if "stuck" in evidence:  # ended no better than a bigram that never sees the source
        assert status["reason"].startswith("stuck above a source-blind model")
        assert evidence["valid"]["best_nll"] >= evidence["bigram"]["bits"]
    assert scores["bleu_tokenized"] is None
    assert "diverged" in (demo / "table.md").read_text()
    # Deep Admin, by the same criterion, trained: below the bigram.
    admin = json.loads((demo / "admin" / deep / "seed1" / "status.json").read_text())
    assert admin["status"] == "completed" and admin["reason"].startswith("trains:")
    assert admin["evidence"]["valid"]["best_nll"] < admin["evidence"]["bigram"]["bits"]
