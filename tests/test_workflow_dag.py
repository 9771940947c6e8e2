"""Dry-run DAG shapes: the jobs each target plans, their dependencies and resources.

Every plan is ``snakemake -n -p -F`` of the real Snakefile and config (the paper
presets included), parsed from what Snakemake prints.  Nothing runs.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.conftest import REPO
from tests.workflow_support import counts, hparams, plan, shell_option, snakemake

DATA_RULES = {"download", "prepare", "bpe", "binarize"}

# Per paper target: the runs (variants x depths x seeds), archives and depths.
PAPER = {
    "paper_iwslt14_de_en": {"dataset": "iwslt14_de_en", "runs": 3 * 1 * 5, "admin": 5,
                            "archives": 1, "depths": 1},
    "paper_wmt14_en_de": {"dataset": "wmt14_en_de", "runs": 3 * 3 * 1, "admin": 3,
                          "archives": 5, "depths": 3},
    "paper_wmt14_en_fr": {"dataset": "wmt14_en_fr", "runs": 3 * 2 * 1, "admin": 2,
                          "archives": 6, "depths": 2},
}  # fmt: skip

# The GPUs per node and nodes of each preset's training jobs (Transformer-Clinic).
TRAIN_SHAPE = {
    ("iwslt14_de_en", "6-6"): (1, 1),
    ("wmt14_en_de", "6-6"): (4, 1),
    ("wmt14_en_de", "12-12"): (4, 1),
    ("wmt14_en_de", "18-18"): (4, 1),
    ("wmt14_en_fr", "6-6"): (8, 1),
    ("wmt14_en_fr", "60-12"): (8, 2),
}


def expected_counts(target: str) -> Counter[str]:
    spec = PAPER[target]
    return Counter(
        {
            "download": spec["archives"], "prepare": 1, "bpe": 1, "binarize": 1,
            "profile": spec["admin"], "train": spec["runs"], "average": spec["runs"],
            "evaluate": spec["runs"], "table": 1, "curves": spec["depths"], "bleu_plot": 1,
            target: 1,
        }
    )  # fmt: skip


@pytest.fixture(scope="module")
def plans() -> dict[str, list[dict[str, Any]]]:
    return {target: plan(target) for target in [*PAPER, "paper_all"]}


@pytest.mark.parametrize("target", list(PAPER))
def test_paper_target_job_counts(plans, target):
    assert counts(plans[target]) == expected_counts(target)


def test_paper_all_is_the_three_tables(plans):
    want: Counter[str] = Counter()
    for target in PAPER:
        want += expected_counts(target)
        del want[target]
    want["paper_all"] = 1
    assert counts(plans["paper_all"]) == want


@pytest.mark.parametrize("target", [*PAPER, "paper_all"])
def test_each_admin_train_job_depends_on_its_own_profile_job(plans, target):
    jobs = plans[target]
    profiles = {job["output"][0]: job for job in jobs if job["rule"] == "profile"}
    trains = [job for job in jobs if job["rule"] == "train"]
    used = set()
    for job in trains:
        wc = job["wildcards"]
        run = f"results/{wc['dataset']}/{wc['variant']}/{wc['depth']}/seed{wc['seed']}"
        profile_inputs = [f for f in job["input"] if f.endswith("profile.json")]
        if wc["variant"] == "admin":
            assert profile_inputs == [f"{run}/profile.json"], job
            assert profile_inputs[0] in profiles, f"no profile job for {run}"
            used.add(profile_inputs[0])
        else:
            assert profile_inputs == [], job
    # Profile jobs exist for Admin runs only, one per run, and every one is used.
    assert {p["wildcards"]["variant"] for p in profiles.values()} == {"admin"}
    assert used == set(profiles)


@pytest.mark.parametrize("target", list(PAPER))
def test_profile_requests_one_gpu_and_train_the_presets_gpus_and_nodes(plans, target):
    jobs = plans[target]
    for job in jobs:
        res = job["resources"]
        if job["rule"] == "profile":
            assert res["gpu"] == 1 and "nodes" not in res, job
        elif job["rule"] == "train":
            wc = job["wildcards"]
            gpus, nodes = TRAIN_SHAPE[wc["dataset"], wc["depth"]]
            assert res["gres"] == f"gpu:{gpus}" and res["gpus_per_node"] == gpus, job
            assert res["nodes"] == nodes, job
            assert "gpu" not in res  # sbatch --gpus would fight --gres (slurm/config.yaml)
            # ... and the step launches that many processes per node on that many nodes
            assert shell_option(job, "--nproc-per-node") == str(gpus)
            assert shell_option(job, "--nnodes") == str(nodes)
            assert shell_option(job, "--device") == "cuda"
        elif job["rule"] in DATA_RULES | {"average", "table", "curves", "bleu_plot"}:
            assert not res.get("gpu") and not res.get("gres"), job


@pytest.mark.parametrize("target", [*PAPER, "paper_all"])
def test_prepared_data_is_built_once_per_dataset_and_shared(plans, target):
    jobs = plans[target]
    datasets = {job["wildcards"]["dataset"] for job in jobs if job["rule"] == "train"}
    for rule in ("prepare", "bpe", "binarize"):
        built = [job["wildcards"]["dataset"] for job in jobs if job["rule"] == rule]
        assert sorted(built) == sorted(datasets), rule
    for job in jobs:
        if job["rule"] in ("profile", "train", "evaluate"):
            data = f"resources/{job['wildcards']['dataset']}/data-bin"
            assert data in job["input"], job
            assert not any("seed" in f for f in job["input"] if "data-bin" in f)


def test_download_jobs_are_local_rules_and_one_per_archive(plans):
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, Quietness, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(), snakefile=REPO / "Snakefile", workdir=REPO
        )._workflow
        local = set(workflow._localrules)
    # downloads run on the submit host (compute nodes often have no internet) and the
    # targets are bookkeeping; everything else goes to the cluster
    assert local == {"download", "all", *PAPER, "paper_all"}
    archives = [j["wildcards"]["archive"] for j in plans["paper_wmt14_en_de"]
                if j["rule"] == "download"]  # fmt: skip
    assert sorted(archives) == sorted([
        "training-parallel-europarl-v7.tgz", "training-parallel-commoncrawl.tgz",
        "training-parallel-nc-v12.tgz", "dev.tgz", "test-full.tgz",
    ])  # fmt: skip


def test_checkpoints_are_never_declared_outputs(plans):
    for job in plans["paper_all"]:
        assert not any("checkpoint" in f for f in job["output"]), job


def test_train_hyperparameters_come_from_the_recipe(plans):
    trains = {
        (j["wildcards"]["dataset"], j["wildcards"]["variant"], j["wildcards"]["depth"]): j
        for j in plans["paper_all"]
        if j["rule"] == "train"
    }
    iwslt = hparams(trains["iwslt14_de_en", "admin", "6-6"])
    assert iwslt["arch"] == "admin_transformer_iwslt_de_en" and iwslt["optimizer"] == "radam"
    assert (iwslt["lr"], iwslt["warmup_updates"], iwslt["max_tokens"]) == (7e-4, 6000, 4096)
    assert (iwslt["dropout"], iwslt["weight_decay"], iwslt["max_epoch"]) == (0.3, 1e-4, 90)
    ende = hparams(trains["wmt14_en_de", "postln", "18-18"])
    assert (ende["lr"], ende["warmup_updates"], ende["max_tokens"]) == (1e-3, 8000, 8192)
    assert ende["arch"] == "admin_transformer_wmt_en_de" and ende["update_freq"] == 1
    fr6 = hparams(trains["wmt14_en_fr", "preln", "6-6"])
    fr60 = hparams(trains["wmt14_en_fr", "preln", "60-12"])
    assert (fr6["lr"], fr6["max_tokens"], fr6["update_freq"], fr6["max_epoch"]) == (
        7e-4, 8000, 10, 50,
    )  # fmt: skip
    assert (fr60["max_tokens"], fr60["update_freq"]) == (5000, 16)
    for job in trains.values():
        hp = hparams(job)
        # the steps own these; the matrix gives depth and seed as their own options
        assert not {"encoder_layers", "decoder_layers", "seed", "save_dir"} & hp.keys()
        wc = job["wildcards"]
        assert shell_option(job, "--depth") == wc["depth"]
        assert shell_option(job, "--seed") == wc["seed"]
        assert hp["fp16"] is True


def test_decoding_and_averaging_follow_eval_scripts(plans):
    evals = {j["wildcards"]["dataset"]: j for j in plans["paper_all"] if j["rule"] == "evaluate"}
    avgs = {j["wildcards"]["dataset"]: j for j in plans["paper_all"] if j["rule"] == "average"}
    beams = {d: hparams(j) for d, j in evals.items()}
    assert (beams["iwslt14_de_en"]["beam"], beams["iwslt14_de_en"]["lenpen"]) == (5, 1.0)
    assert (beams["wmt14_en_de"]["beam"], beams["wmt14_en_de"]["lenpen"]) == (4, 0.6)
    assert (beams["wmt14_en_fr"]["beam"], beams["wmt14_en_fr"]["lenpen"]) == (5, 0.8)
    assert "--compound-split" in evals["wmt14_en_de"]["shell"]
    assert "--compound-split" not in evals["wmt14_en_fr"]["shell"]
    bounds = {d: (shell_option(j, "--last"), shell_option(j, "--upper-bound"))
              for d, j in avgs.items()}  # fmt: skip
    assert bounds == {"iwslt14_de_en": ("10", "90"), "wmt14_en_de": ("10", "100"),
                      "wmt14_en_fr": ("10", "50")}  # fmt: skip


def test_demo_plan_is_the_default_target():
    jobs = plan()
    assert counts(jobs) == Counter(
        {"demo_corpus": 1, "tokenize": 1, "bpe": 1, "binarize": 1, "profile": 2, "train": 6,
         "average": 6, "evaluate": 6, "table": 1, "curves": 2, "bleu_plot": 1, "all": 1}
    )  # fmt: skip
    variants = {j["wildcards"]["variant"] for j in jobs if j["rule"] == "train"}
    depths = {j["wildcards"]["depth"] for j in jobs if j["rule"] == "train"}
    assert variants == {"postln", "preln", "admin"} and len(depths) == 2
    for job in jobs:  # the demo runs on CPU
        assert not job["resources"].get("gpu") and not job["resources"].get("gres"), job
        if job["rule"] in ("profile", "train"):
            assert shell_option(job, "--device") == "cpu"


def test_matrix_narrows_from_the_command_line():
    # (targets first: --config takes every word after it)
    jobs = plan("paper_wmt14_en_de", "--config", "depths=[6-6]")
    assert counts(jobs)["train"] == 3 and counts(jobs)["profile"] == 1
    assert {j["wildcards"]["depth"] for j in jobs if j["rule"] == "train"} == {"6-6"}
    jobs = plan("paper_iwslt14_de_en", "--config", "variants=[admin]", "seeds=[1111, 2222]")
    assert counts(jobs)["train"] == 2 and counts(jobs)["profile"] == 2
    jobs = plan("paper_all", "--config", "depths=[6-6]", "variants=[postln, preln]")
    assert counts(jobs)["train"] == 2 * 5 + 2 + 2 and counts(jobs)["profile"] == 0


def test_batch_size_is_kept_when_a_profile_changes_the_gpu_count():
    # 60L-12L: 16 GPUs x 5000 tokens x update-freq 16; on 2 nodes x 4 GPUs: update-freq 32
    jobs = plan(
        "paper_wmt14_en_fr", "--set-resources", "train:gpus_per_node=4", "train:gres=gpu:4",
        "--config", "depths=[60-12]", "variants=[preln]",
    )  # fmt: skip
    (train,) = [j for j in jobs if j["rule"] == "train"]
    assert hparams(train)["update_freq"] == 32
    assert shell_option(train, "--nproc-per-node") == "4"


def test_planning_paper_all_is_fast():
    """Parsing + DAG of paper_all costs little beyond Snakemake's own start-up."""
    start = time.perf_counter()
    snakemake("--version")
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    proc = snakemake("-n", "-q", "--nolock", "paper_all")
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    # ~1 s on an idle 2-core machine; the margin scales with the machine's load
    margin = max(2.5, baseline)
    assert elapsed - baseline < margin, f"dry run {elapsed:.1f}s, --version {baseline:.1f}s"
