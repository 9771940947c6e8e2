"""The target mini_multi30k_de_en: the embedded demo's comparison on Multi30k De-En.

Its preset (config/mini_multi30k_de_en.yaml) as the workflow loads it, and the job plan
of ``snakemake -n mini_multi30k_de_en`` with the archives copied from the shared real
data (``download.offline_dir``), parsed from what Snakemake prints.  Nothing trains.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from admin.common import config as admin_config
from admin.common import step_options
from admin.data.registry import MULTI30K_DE_EN
from tests.workflow_support import counts, plan, project_config, shell_option

TARGET, DATASET = "mini_multi30k_de_en", "multi30k_de_en"
VARIANTS, DEPTHS = ("postln", "preln", "admin"), ("2-2", "8-8")


@pytest.fixture(scope="module")
def offline_dir(shared_data: Path) -> Path:
    """The shared Multi30k archives: exactly the registry's, byte for byte."""
    raw = shared_data / "multi30k_task1_de_en" / "raw"
    for archive in MULTI30K_DE_EN.archives:
        assert hashlib.sha256((raw / archive.filename).read_bytes()).hexdigest() == archive.sha256
    return raw


@pytest.fixture(scope="module")
def jobs(offline_dir: Path) -> list[dict[str, Any]]:
    # (targets first: --config takes every word after it)
    return plan(TARGET, "--config", f"download={{offline_dir: {offline_dir}}}")


@pytest.fixture(scope="module")
def cfg() -> dict[str, Any]:
    return project_config()


def test_plan_is_the_demo_comparison_on_multi30k(jobs):
    assert counts(jobs) == Counter(
        {"download": 6, "prepare": 1, "bpe": 1, "binarize": 1, "recipe": 6, "profile": 2,
         "train": 6, "average": 6, "evaluate": 6, "table": 1, "curves": 2, "bleu_plot": 1,
         TARGET: 1}
    )  # fmt: skip
    trains = [job["wildcards"] for job in jobs if job["rule"] == "train"]
    assert {w["dataset"] for w in trains} == {DATASET}
    assert sorted((w["variant"], w["depth"], w["seed"]) for w in trains) == sorted(
        (v, d, "1") for v in VARIANTS for d in DEPTHS
    )
    profiles = [job["wildcards"] for job in jobs if job["rule"] == "profile"]
    assert sorted((w["variant"], w["depth"]) for w in profiles) == [("admin", d) for d in DEPTHS]
    # real text: downloaded and prepared, not the embedded corpus
    assert not {"demo_corpus", "tokenize"} & set(counts(jobs))


def test_the_six_archives_are_copied_from_the_offline_folder(jobs, offline_dir):
    downloads = [job for job in jobs if job["rule"] == "download"]
    assert sorted(job["wildcards"]["archive"] for job in downloads) == sorted(
        archive.filename for archive in MULTI30K_DE_EN.archives
    )
    for job in downloads:
        assert shell_option(job, "--dataset") == DATASET
        assert shell_option(job, "--offline-dir") == str(offline_dir)
    (prepare,) = [job for job in jobs if job["rule"] == "prepare"]
    assert sorted(prepare["input"]) == sorted(job["output"][0] for job in downloads)


def test_the_table_and_plots_are_the_targets_inputs(jobs):
    (table,) = [job for job in jobs if job["rule"] == "table"]
    results = f"results/{DATASET}"
    assert sorted(table["output"]) == [f"{results}/table.{ext}" for ext in ("csv", "json", "md")]
    assert len(table["input"]) == 2 * 6  # scores and status of every run
    (target,) = [job for job in jobs if job["rule"] == TARGET]
    assert sorted(target["input"]) == sorted(
        [f"{results}/table.{ext}" for ext in ("md", "csv", "json")]
        + [f"{results}/bleu_vs_depth.png"]
        + [f"{results}/curves_{depth}.png" for depth in DEPTHS]
    )


def test_every_job_runs_on_the_cpu_within_a_laptops_means(jobs):
    for job in jobs:
        res = job["resources"]
        assert not res.get("gpu") and not res.get("gres") and not res.get("gpus_per_node"), job
        assert job["threads"] <= 2 and res.get("mem_mb", 0) <= 3000, job
        if job["rule"] in ("profile", "train", "evaluate"):
            assert shell_option(job, "--device") == "cpu"
        if job["rule"] == "train":
            assert shell_option(job, "--nproc-per-node") == "1"
            assert res["runtime"] <= 60


def test_preset_recipe_and_resources(cfg):
    """The preset loads under config.yaml: the demo's kind of recipe, small resources
    instead of the global ones sized for the paper datasets."""
    assert cfg["datasets"] == ["demo"]  # the default target stays the demo
    exp = cfg["experiments"][DATASET]
    assert exp["data"] == {"source": DATASET, "bpe_merges": None}  # the registry's recipe
    assert admin_config.matrix(cfg, DATASET) == (list(VARIANTS), list(DEPTHS), [1])
    hp = exp["hparams"]
    assert (hp["optimizer"], hp["param_init"], hp["encoder_embed_dim"]) == ("radam", "paper", 64)
    assert not hp.get("fp16") and hp["max_epoch"] >= 1
    # The demo's comparison: its depths and recipe; only the budget and logging differ.
    assert admin_config.matrix(cfg, "demo")[:2] == admin_config.matrix(cfg, DATASET)[:2]
    budget = {"max_epoch", "log_interval"}
    demo_hp = cfg["experiments"]["demo"]["hparams"]
    assert {k: v for k, v in hp.items() if k not in budget} == {
        k: v for k, v in demo_hp.items() if k not in budget
    }
    assert step_options.bpe_options(cfg, DATASET) == ["--dataset", DATASET]
    for rule in ("prepare", "bpe", "binarize"):
        global_res = admin_config.lookup_resources(cfg, rule)
        own = admin_config.lookup_resources(cfg, rule, DATASET)
        assert global_res["cpus"] == 8 and own["cpus"] == 2 and own["mem_mb"] <= 2000, rule
    for rule in ("profile", "train", "evaluate"):
        for depth in DEPTHS:
            res = admin_config.lookup_resources(cfg, rule, DATASET, depth)
            assert res["gpus"] == 0 and res["cpus"] == 1, (rule, depth)
            assert step_options.device(cfg, res["gpus"]) == "cpu"
