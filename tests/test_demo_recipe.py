"""The demo's recipe is the one its seed benchmarks measured.

The demo's shape (Post-LN diverged at depth, Admin level with Pre-LN) is a scientific
result over seeds, measured by ``python -m benchmarks --only demo_seeds demo_fresh_seeds``
(about one demo per seed), not by the suite.  The suite checks that the demo's recipe,
as config/config.yaml and the schema give it now, is the one the newest fresh-seeds
results file measured: a change to the recipe or to its divergence settings fails here
until the benchmark is run again.  That the demo's DAG still runs end to end is
tests/test_workflow_e2e.py's (the demo, shrunk) and tests/test_workflow_module.py's
(the demo's plan at its real size).
"""

from __future__ import annotations

import re

import yaml

from admin import paper_shape
from benchmarks.demo_seeds import FINGERPRINT
from tests.conftest import REPO

CONFIG = REPO / "config" / "config.yaml"


def _measured(name: str) -> list[str]:
    """The fingerprints recorded by benchmark ``name``, newest results file last."""
    found = []
    for path in sorted((REPO / "benchmarks" / "results").glob(f"*{name}*.md")):
        found += re.findall(rf"\*\*{name}\*\*:.*?{FINGERPRINT} `([0-9a-f]+)`", path.read_text())
    return found


def test_the_demo_recipe_is_the_one_its_fresh_seeds_measured():
    measured = _measured("demo_fresh_seeds")
    assert measured, "no benchmarks/results file of demo_fresh_seeds records a fingerprint"
    assert measured[-1] == paper_shape.demo_fingerprint(CONFIG), (
        "config/config.yaml's demo recipe or divergence settings changed since the newest "
        "demo_fresh_seeds results; run `python -m benchmarks --only demo_fresh_seeds` again"
    )


def test_the_fingerprint_follows_the_recipe_not_the_seeds_or_resources(tmp_path):
    base = yaml.safe_load(CONFIG.read_text())
    original = paper_shape.demo_fingerprint(CONFIG)

    def variant(change) -> str:
        cfg = yaml.safe_load(CONFIG.read_text())
        change(cfg)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return paper_shape.demo_fingerprint(path)

    demo = ("experiments", "demo")
    assert variant(lambda c: c[demo[0]][demo[1]]["matrix"].update(seeds=[4, 5])) == original
    assert variant(lambda c: c[demo[0]][demo[1]]["resources"]["train"].update(cpus=4)) == original
    assert variant(lambda c: c[demo[0]][demo[1]]["hparams"].update(lr=0.003)) != original
    assert variant(lambda c: c.update(divergence={"plateau_patience": 2})) != original
    assert variant(lambda c: c[demo[0]][demo[1]].update(divergence={"stuck_patience": 4})) != (
        original
    )
    assert base["experiments"]["demo"]["matrix"]["seeds"] == [1]  # make demo's own seed
