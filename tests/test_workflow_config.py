"""The workflow's configuration: bad configs stop before any job with the key named;
the schema documents every key and agrees with the code; lint and format are clean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import admin.evaluate
from admin.common.fairseq_command import RESERVED_HPARAMS
from admin.common.variants import VARIANTS
from admin.data.registry import DATASETS
from tests.conftest import REPO
from tests.workflow_support import SNAKEFMT, snakemake

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _fails_before_any_job(args: list[str], tmp_path: Path) -> str:
    """Run (not dry-run) in an empty folder; the config must stop everything."""
    proc = snakemake(
        "--cores", "1", "--configfile", str(REPO / "config" / "config.yaml"), *args,
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "Building DAG of jobs" not in text, text
    assert "invalid configuration" in text, text
    leftovers = {p.name for p in tmp_path.iterdir()} - {"bad.yaml", ".snakemake"}
    assert leftovers == set(), leftovers  # no job ran: no resources/, results/, logs/
    return text


def _configfile(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return ["--configfile", str(REPO / "config" / "config.yaml"), str(path)]


def test_unknown_variant(tmp_path):
    text = _fails_before_any_job(["--config", "variants=[postln, postnorm]"], tmp_path)
    assert "variants[1]: 'postnorm' is not allowed" in text
    assert "allowed values: postln, preln, admin, admin-logn, deepnet, rezero" in text


def test_depth_with_zero_layers(tmp_path):
    text = _fails_before_any_job(["--config", "depths=[0-6]"], tmp_path)
    assert "depths[0]: '0-6' is not valid" in text
    assert "<enc>-<dec>" in text and "each at least 1" in text


def test_depth_in_a_preset(tmp_path):
    bad = {"experiments": {"wmt14_en_de": {"matrix": {"depths": ["6-6", "6"]}}}}
    text = _fails_before_any_job(_configfile(tmp_path, bad), tmp_path)
    assert "experiments.wmt14_en_de.matrix.depths[1]: '6' is not valid" in text


def test_missing_dataset(tmp_path):
    text = _fails_before_any_job(["--config", "datasets=[wmt16_ro_en]"], tmp_path)
    assert "datasets[0]: dataset 'wmt16_ro_en' is not defined under experiments" in text
    assert "defined datasets: demo, iwslt14_de_en, multi30k_de_en, wmt14_en_de, wmt14_en_fr" in text


def test_unknown_data_source(tmp_path):
    bad = {"experiments": {"demo": {"data": {"source": "wmt16_ro_en"}}}}
    text = _fails_before_any_job(_configfile(tmp_path, bad), tmp_path)
    assert "experiments.demo.data.source: 'wmt16_ro_en' is not allowed" in text
    assert "allowed values: demo, iwslt14_de_en" in text


def test_negative_learning_rate(tmp_path):
    bad = {"experiments": {"iwslt14_de_en": {"hparams": {"lr": -0.0007}}}}
    text = _fails_before_any_job(_configfile(tmp_path, bad), tmp_path)
    assert "experiments.iwslt14_de_en.hparams.lr: -0.0007 is less than or equal to" in text
    assert "positive" in text


def test_negative_learning_rate_from_the_command_line(tmp_path):
    text = _fails_before_any_job(["--config", "experiments={demo: {hparams: {lr: -1}}}"], tmp_path)
    assert "experiments.demo.hparams.lr: -1 is less than or equal to the minimum of 0" in text


def test_options_the_steps_own_are_refused(tmp_path):
    bad = {"experiments": {"demo": {"hparams": {"encoder_layers": 3, "save_dir": "x"}}}}
    text = _fails_before_any_job(_configfile(tmp_path, bad), tmp_path)
    assert "'encoder_layers' is set by the workflow" in text
    assert "'save_dir' is set by the workflow" in text


def test_unknown_key(tmp_path):
    text = _fails_before_any_job(["--config", "epochs=3"], tmp_path)
    assert "Additional properties are not allowed ('epochs' was unexpected)" in text
    assert "allowed keys: datasets, variants, depths, seeds" in text


def test_wrong_resource(tmp_path):
    bad = {"resources": {"train": {"gpus": -1}}}
    text = _fails_before_any_job(_configfile(tmp_path, bad), tmp_path)
    assert "resources.train.gpus: -1 is less than the minimum of 0" in text


def test_every_key_of_the_schema_has_a_description():
    missing = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if isinstance(sub, dict) and "description" not in sub and "$ref" not in sub:
                    missing.append(f"{path}.{name}")
                walk(sub, f"{path}.{name}")
            for key, sub in node.items():
                if key != "properties":
                    walk(sub, f"{path}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{path}[{i}]")

    walk(SCHEMA, "")
    assert missing == []


def test_schema_agrees_with_the_code():
    assert SCHEMA["$defs"]["variant"]["enum"] == list(VARIANTS)
    sources = SCHEMA["$defs"]["experiment"]["properties"]["data"]["properties"]["source"]["enum"]
    assert set(sources) == {"demo", *DATASETS}
    # the options the steps set themselves are refused by the schema, before any job
    hparams = SCHEMA["$defs"]["hparams"]["propertyNames"]["not"]
    assert set(hparams["enum"]) == RESERVED_HPARAMS
    generate = SCHEMA["$defs"]["experiment"]["properties"]["generate"]["propertyNames"]["not"]
    assert set(generate["enum"]) == admin.evaluate.RESERVED


def test_readme_documents_every_key():
    readme = (REPO / "config" / "README.md").read_text()
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            names.update((node.get("properties") or {}).keys())
            for sub in node.values():
                walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    walk(SCHEMA)
    undocumented = sorted(n for n in names if f"`{n}`" not in readme)
    assert undocumented == []


PRESETS = sorted(p.name for pattern in ("paper_*.yaml", "mini_*.yaml")
                 for p in (REPO / "config").glob(pattern))  # fmt: skip


def test_config_yaml_loads_every_preset():
    presets = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["presets"]
    assert sorted(presets) == [f"config/{name}" for name in PRESETS]


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_alone_is_a_valid_config(preset, tmp_path):
    """`--configfile config/<preset>` makes that table the default target."""
    proc = snakemake("-n", "--nolock", "--configfile", str(REPO / "config" / preset), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    (dataset,) = yaml.safe_load((REPO / "config" / preset).read_text())["datasets"]
    assert f"results/{dataset}/table.md" in proc.stdout


def test_lint_is_clean():
    proc = snakemake("--lint", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    import subprocess

    proc = subprocess.run(
        [SNAKEFMT, "--check", "Snakefile", "workflow"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
