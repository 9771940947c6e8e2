"""admin.table from score files (mean ± std, diverged cells, the paper's numbers)
and admin.plots from a real train.log and score files."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import matplotlib.image
import pytest

from admin.common import run_folder as rf
from admin.common.paper_results import PAPER
from tests import steps_support
from tests.steps_support import ok, run_step

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _score(results: Path, variant: str, depth: str, seed: int, bleu: float | None,
           rule: str | None = None) -> Path:  # fmt: skip
    """A run folder with the status and scores of a run that scored ``bleu``, as
    admin.train and admin.evaluate write them: flagged diverged by ``rule`` when one is
    given or ``bleu`` is None (no checkpoint to score)."""
    run = results / variant / depth / f"seed{seed}"
    run.mkdir(parents=True)
    rule = rule or ("non-finite" if bleu is None else None)
    status = rf.DIVERGED if rule else rf.COMPLETED
    fields = {"rule": rule, "reason": f"{rule}: the evidence"} if rule else {}
    key = rf.RunKey(results.name, variant, depth, seed)
    rf.write_status(run / "status.json", key, status, **fields)
    if bleu is None:
        doc = {"status": status, "bleu_tokenized": None, "sacrebleu": None}
    else:
        doc = {"status": status, "bleu_tokenized": bleu, "sacrebleu": bleu - 1.0}
    (run / "scores.json").write_text(json.dumps(doc))
    return run


@pytest.fixture
def en_de_runs(tmp_path) -> list[Path]:
    results = tmp_path / "results" / "wmt14_en_de"
    return [
        _score(results, "postln", "6-6", 1, 27.5),
        _score(results, "postln", "6-6", 2, 27.9),
        _score(results, "postln", "6-6", 3, 27.6),
        _score(results, "postln", "18-18", 1, 6.48, rule="stuck"),  # flagged, and scored
        _score(results, "preln", "6-6", 1, 27.1),
        _score(results, "preln", "18-18", 1, 28.0),
        _score(results, "admin", "6-6", 1, 27.8),
        _score(results, "admin", "18-18", 1, 29.1),
        _score(results, "admin", "18-18", 2, None),
        _score(results, "admin-logn", "18-18", 1, 28.7),  # the paper has no such row
    ]


def test_table(en_de_runs, tmp_path):
    out = tmp_path / "results" / "wmt14_en_de"
    args = ["--dataset", "wmt14_en_de", "--out-dir", out]
    for run in en_de_runs:
        args += ["--run", run]
    proc = ok(run_step("table", *args))

    table = json.loads((out / "table.json").read_text())
    assert table["paper_results"] is True
    assert table["variants"] == ["postln", "preln", "admin", "admin-logn"]
    assert table["depths"] == ["6-6", "18-18"]  # numeric order
    post = table["cells"]["postln"]["6-6"]
    assert post["mean"] == pytest.approx(statistics.fmean([27.5, 27.9, 27.6]))
    assert post["std"] == pytest.approx(statistics.stdev([27.5, 27.9, 27.6]))
    assert post["text"] == "27.67 ± 0.21" and post["paper"] == "27.80"
    flagged = table["cells"]["postln"]["18-18"]
    assert flagged["text"] == "diverged" and flagged["paper"] == "diverged"
    assert flagged["mean"] is None and flagged["n"] == 0  # a flagged run is never in the mean
    assert flagged["seeds"] == {"1": 6.48} and flagged["diverged_seeds"] == [1]
    assert flagged["flagged"] == {"1": {
        "rule": "stuck", "reason": "stuck: the evidence", "bleu": 6.48,
        "evidence": str(en_de_runs[3] / "status.json"),
    }}  # fmt: skip
    assert table["cells"]["admin"]["18-18"]["text"] == "29.10 (1/2 diverged)"
    assert table["cells"]["admin"]["18-18"]["seeds"] == {"1": 29.1, "2": None}
    assert table["cells"]["admin"]["18-18"]["paper"] == "29.03"
    assert table["cells"]["preln"]["6-6"]["text"] == "27.10"  # one seed: the value
    assert table["cells"]["admin-logn"]["18-18"]["paper"] is None
    assert table["cells"]["admin-logn"]["6-6"]["text"] == ""  # not run

    md = (out / "table.md").read_text()
    assert "| variant | 6L-6L | 18L-18L |" in md and "paper in brackets" in md.split("\n")[0]
    assert "| Post-LN | 27.67 ± 0.21 (paper 27.80) | diverged[^1] (paper diverged) |" in md
    assert "| Admin | 27.80 (paper 27.90) | 29.10 (1/2 diverged)[^2] (paper 29.03) |" in md
    assert (
        "[^1]: Post-LN 18L-18L seed 1: diverged (stuck): stuck: the evidence. Its BLEU, not in "
        f"the mean: 6.48. Evidence: {en_de_runs[3] / 'status.json'}\n"
    ) in md
    assert (
        "[^2]: Admin 18L-18L seed 2: diverged (non-finite): non-finite: the evidence. Its BLEU, "
        "not in the mean: not scored." in md
    )
    assert "| Admin (log N) |  | 28.70 |" in md
    assert md in proc.stdout

    rows = list(csv.reader((out / "table.csv").open()))
    assert rows[0] == ["variant", "6-6", "6-6 paper", "6-6 diverged runs", "18-18",
                       "18-18 paper", "18-18 diverged runs"]  # fmt: skip
    assert rows[1] == ["postln", "27.67 ± 0.21", "27.80", "", "diverged", "diverged",
                       "seed 1: 6.48 (stuck)"]  # fmt: skip
    assert rows[3][-1] == "seed 2: not scored (non-finite)"


def test_table_iwslt_paper_std(tmp_path):
    results = tmp_path / "results" / "iwslt14_de_en"
    runs = [_score(results, "admin", "6-6", s, 35.0 + s / 10) for s in (1, 2, 3, 4, 5)]
    out = tmp_path / "out"
    outputs = ["--md", out / "t.md", "--csv", out / "t.csv", "--json", out / "t.json"]
    run_args = [x for r in runs for x in ("--run", r)]
    ok(run_step("table", "--dataset", "iwslt14_de_en", *run_args, *outputs))
    assert "| Admin | 35.30 ± 0.16 (paper 35.67 ± 0.15) |" in (out / "t.md").read_text()
    assert PAPER["iwslt14_de_en"]["postln"]["6-6"] == (35.64, 0.23)


def test_table_of_a_dataset_without_paper_numbers_says_so(tmp_path):
    """Multi30k (mini_multi30k_de_en): no paper column is invented, the title says why."""
    results = tmp_path / "results" / "multi30k_de_en"
    runs = [_score(results, v, d, 1, None if (v, d) == ("postln", "6-6") else 20.0 + len(v))
            for v in ("postln", "preln", "admin") for d in ("2-2", "6-6")]  # fmt: skip
    out = tmp_path / "out"
    run_args = [x for r in runs for x in ("--run", r)]
    ok(run_step("table", "--dataset", "multi30k_de_en", *run_args, "--out-dir", out))
    table = json.loads((out / "table.json").read_text())
    assert table["paper_results"] is False
    assert all(c["paper"] is None for row in table["cells"].values() for c in row.values())
    md = (out / "table.md").read_text()
    assert md.startswith("# multi30k_de_en: test BLEU (tokenized; mean ± std over seeds; "
                         "the paper reports no numbers for this dataset)")  # fmt: skip
    assert "paper in brackets" not in md and "(paper" not in md
    assert "| Post-LN | 26.00 | diverged[^1] |" in md
    rows = list(csv.reader((out / "table.csv").open()))
    assert rows[0] == ["variant", "2-2", "2-2 paper", "2-2 diverged runs", "6-6", "6-6 paper",
                       "6-6 diverged runs"]  # fmt: skip
    assert rows[1] == ["postln", "26.00", "", "", "diverged", "", "seed 1: not scored (non-finite)"]


def test_table_rejects_bad_runs(tmp_path):
    bad = _score(tmp_path / "results" / "d", "postln", "6-6", 1, 1.0)
    doc = json.loads((bad / "status.json").read_text())
    (bad / "status.json").write_text(json.dumps({**doc, "variant": "sandwich"}))
    proc = run_step("table", "--dataset", "d", "--run", bad, "--out-dir", tmp_path)
    assert proc.returncode == 2 and "unknown variant 'sandwich'" in proc.stderr
    # scores from another training than the status (stale) are refused
    (bad / "status.json").write_text(json.dumps({**doc, "status": "diverged"}))
    proc = run_step("table", "--dataset", "d", "--run", bad, "--out-dir", tmp_path)
    assert proc.returncode == 2 and "the scores are stale" in proc.stderr


def _valid_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100


@pytest.mark.slow
def test_plots(tiny_databin, tmp_path_factory, tmp_path, en_de_runs):
    trained = steps_support.trained_admin_run(tiny_databin, tmp_path_factory)
    # The real train.log of the shared run, and a second "variant" from the same log.
    results = tmp_path / "results" / "tiny"
    runs = []
    for variant in ("admin", "preln"):
        run = results / variant / "2-2" / "seed1"
        run.mkdir(parents=True)
        shutil.copy(trained / "train.log", run / "train.log")
        rf.write_status(run / "status.json", rf.RunKey("tiny", variant, "2-2", 1), rf.COMPLETED)
        runs.append(run)
    out = tmp_path / "curves_2-2.png"
    ok(run_step("plots", "curves", *[x for r in runs for x in ("--run", r)], "--out", out))
    _valid_png(out)

    out = tmp_path / "bleu_vs_depth.png"
    ok(run_step("plots", "bleu", *[x for r in en_de_runs for x in ("--run", r)], "--out", out))
    _valid_png(out)

    # Curves are per depth: runs of two depths are refused.
    proc = run_step("plots", "curves", "--run", runs[0], "--run", en_de_runs[3], "--out", out)
    assert proc.returncode == 2 and "per depth" in proc.stderr
