"""fairseq imported without scikit-learn and scipy.stats (admin.common.fairseq_import),
in fresh interpreters: what fairseq's modules took from them still works, for real."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def _python(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOADED = "sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy'))"


def test_fairseq_imports_without_the_metric_libraries_and_its_metrics_are_real():
    out = _python(f"""
import json, sys
from admin.common.fairseq_import import import_fairseq
import_fairseq()
from fairseq_cli import train, generate, preprocess  # the command lines the steps run
loaded = {LOADED}
from fairseq.criterions import sentence_prediction as sp
from fairseq.tasks import audio_classification as ac
f1 = sp.f1_score([0, 1, 1, 0], [0, 1, 0, 0])
mcc = sp.matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0])
r = float(sp.pearsonr([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])[0])
fpr, tpr, _ = ac.sklearn_metrics.roc_curve([0, 1], [0.2, 0.9])
import sklearn, sklearn.metrics, scipy.stats
print(json.dumps({{"loaded": loaded, "f1": f1, "mcc": mcc, "r": r, "tpr": tpr.tolist(),
    "real": [hasattr(sklearn, "__version__"), hasattr(sklearn.metrics, "accuracy_score"),
             hasattr(scipy.stats, "norm")]}}))
""")
    assert out["loaded"] == [], out["loaded"]  # neither library was imported
    assert out["f1"] == 2 / 3 and out["mcc"] == 1.0 and abs(out["r"] - 1.0) < 1e-12
    assert out["tpr"] == [0.0, 1.0, 1.0]
    assert out["real"] == [True, True, True]  # later imports get the real libraries


def test_an_already_imported_library_is_used_as_it_is():
    out = _python(f"""
import json, sys
import scipy.stats
from admin.common.fairseq_import import import_fairseq
import_fairseq()
from fairseq.criterions import sentence_prediction as sp
print(json.dumps({{"same": sp.pearsonr is scipy.stats.pearsonr, "sklearn": {LOADED}}}))
""")
    assert out["same"] is True
    assert not [m for m in out["sklearn"] if m.startswith("sklearn")]


def test_the_runner_runs_a_fairseq_command_line(tmp_path):
    for split in ("train", "valid"):
        (tmp_path / f"{split}.de").write_text("a b c\nb c\n")
        (tmp_path / f"{split}.en").write_text("x y\ny z x\n")
    proc = subprocess.run(
        [sys.executable, "-m", "admin.common.fairseq_import", "fairseq_cli.preprocess",
         "--source-lang", "de", "--target-lang", "en", "--trainpref", str(tmp_path / "train"),
         "--validpref", str(tmp_path / "valid"), "--destdir", str(tmp_path / "bin"),
         "--joined-dictionary", "--workers", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the joined dictionary: every word of both training sides, with its count
    words = (tmp_path / "bin" / "dict.de.txt").read_text().split()
    counts = dict(zip(words[::2], map(int, words[1::2]), strict=True))
    assert {w: n for w, n in counts.items() if not w.startswith("madeupword")} == {
        "a": 1, "b": 2, "c": 2, "x": 2, "y": 2, "z": 1}  # fmt: skip
    assert (tmp_path / "bin" / "train.de-en.de.idx").is_file()
    bad = subprocess.run([sys.executable, "-m", "admin.common.fairseq_import"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert bad.returncode != 0 and "usage: python -m admin.common.fairseq_import" in bad.stderr
