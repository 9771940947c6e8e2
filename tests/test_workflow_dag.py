"""Dry-run DAG shapes: the jobs each target plans, their dependencies and resources.

Every plan is ``snakemake -n -p -F`` of the real Snakefile and config (the paper
presets included), parsed from what Snakemake prints.  Nothing runs.
"""

from __future__ import annotations

import json
import shlex
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.workflow_support import (
    counts,
    hparams,
    parse_dry_run,
    plan,
    shell_option,
    snakemake,
)

DATA_RULES = {"download", "prepare", "bpe", "binarize"}
ANALYSIS_TARGETS = ("analysis_output_change", "analysis_dependency")

# Per paper target: the runs (variants x depths x seeds), the Admin profiles (one per
# depth: profiling per depth with seed 1111, as Transformer-Clinic), archives and depths.
PAPER = {
    "paper_iwslt14_de_en": {"dataset": "iwslt14_de_en", "runs": 3 * 1 * 5, "admin": 1,
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
            "recipe": spec["runs"], "profile": spec["admin"], "train": spec["runs"],
            "average": spec["runs"],
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
def test_each_admin_train_job_depends_on_its_depths_profile_job(plans, target):
    """The presets profile once per depth with seed 1111 and train every seed from it."""
    jobs = plans[target]
    profiles = {job["output"][0]: job for job in jobs if job["rule"] == "profile"}
    trains = [job for job in jobs if job["rule"] == "train"]
    used = set()
    for job in trains:
        wc = job["wildcards"]
        depth_folder = f"results/{wc['dataset']}/{wc['variant']}/{wc['depth']}"
        profile_inputs = [f for f in job["input"] if f.endswith("profile.json")]
        if wc["variant"] == "admin":
            assert profile_inputs == [f"{depth_folder}/seed1111/profile.json"], job
            assert profile_inputs[0] in profiles, f"no profile job for {depth_folder}"
            used.add(profile_inputs[0])
        else:
            assert profile_inputs == [], job
    # Profile jobs exist for Admin only, one per depth, and every one is used.
    assert {p["wildcards"]["variant"] for p in profiles.values()} == {"admin"}
    assert {p["wildcards"]["seed"] for p in profiles.values()} == {"1111"}
    depths = {(j["wildcards"]["dataset"], j["wildcards"]["depth"]) for j in trains}
    assert len(profiles) == len(depths)
    assert used == set(profiles)


def test_profiling_per_run_is_still_an_option():
    jobs = plan("paper_iwslt14_de_en", "--config", "variants=[admin]",
                "experiments={iwslt14_de_en: {profiling: {per: run}}}")  # fmt: skip
    assert counts(jobs)["profile"] == 5
    for job in jobs:
        if job["rule"] == "train":
            seed = job["wildcards"]["seed"]
            assert f"results/iwslt14_de_en/admin/6-6/seed{seed}/profile.json" in job["input"]


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
            assert res["gpus_per_node"] == gpus and res["nodes"] == nodes, job
            # one node: GPUs in total (`gpu`, which the run's SLURM group job can hold);
            # several: per node (`gres`), never both (sbatch would get --gres and --gpus)
            if nodes == 1:
                assert res["gpu"] == gpus and res["gres"] == "", job
            else:
                assert "gpu" not in res and res["gres"] == f"gpu:{gpus}", job
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
    # downloads run on the submit host (compute nodes often have no internet), the targets
    # are bookkeeping, recipes, tables and plots take seconds; everything else goes to the
    # cluster
    assert local == {"download", "recipe", "table", "curves", "bleu_plot", "all", "default", *PAPER,
                     "paper_all", "mini_multi30k_de_en", *ANALYSIS_TARGETS}  # fmt: skip
    archives = [j["wildcards"]["archive"] for j in plans["paper_wmt14_en_de"]
                if j["rule"] == "download"]  # fmt: skip
    assert sorted(archives) == sorted([
        "training-parallel-europarl-v7.tgz", "training-parallel-commoncrawl.tgz",
        "training-parallel-nc-v12.tgz", "dev.tgz", "test-full.tgz",
    ])  # fmt: skip


def test_checkpoints_are_never_declared_outputs(plans):
    for job in plans["paper_all"]:
        assert not any("checkpoint" in f for f in job["output"]), job


def _spec(job: dict[str, Any]) -> dict[str, Any]:
    """The recipe a recipe job writes (admin.recipe, without the data-bin's identity)."""
    return json.loads(shell_option(job, "--spec"))


def test_train_hyperparameters_come_from_the_recipe(plans):
    jobs = plans["paper_all"]
    key = lambda j: (j["wildcards"]["dataset"], j["wildcards"]["variant"],  # noqa: E731
                     j["wildcards"]["depth"])  # fmt: skip
    recipes = {key(j): _spec(j)["identity"] for j in jobs if j["rule"] == "recipe"}
    trains = {key(j): j for j in jobs if j["rule"] == "train"}
    assert recipes.keys() == trains.keys()
    iwslt = recipes["iwslt14_de_en", "admin", "6-6"]["hparams"]
    assert iwslt["arch"] == "admin_transformer_iwslt_de_en" and iwslt["optimizer"] == "radam"
    assert (iwslt["lr"], iwslt["warmup_updates"], iwslt["max_tokens"]) == (7e-4, 6000, 4096)
    assert (iwslt["dropout"], iwslt["weight_decay"]) == (0.3, 1e-4)
    assert json.loads(shell_option(trains["iwslt14_de_en", "admin", "6-6"], "--stop")) == {
        "max_epoch": 90, "max_update": 100000}  # fmt: skip
    ende = recipes["wmt14_en_de", "postln", "18-18"]
    assert (ende["hparams"]["lr"], ende["hparams"]["warmup_updates"]) == (1e-3, 8000)
    assert ende["hparams"]["arch"] == "admin_transformer_wmt_en_de"
    assert (ende["hparams"]["max_tokens"], ende["batches_per_update"]) == (8192, 4)  # 1 x 4 GPUs
    fr6 = recipes["wmt14_en_fr", "preln", "6-6"]
    fr60 = recipes["wmt14_en_fr", "preln", "60-12"]
    assert (fr6["hparams"]["lr"], fr6["hparams"]["max_tokens"], fr6["batches_per_update"]) == (
        7e-4, 8000, 80,  # update-freq 10 x 8 GPUs
    )  # fmt: skip
    assert (fr60["hparams"]["max_tokens"], fr60["batches_per_update"]) == (5000, 256)  # 16 x 16
    for (_, variant, depth), identity in recipes.items():
        # the steps own these; the matrix gives depth and seed
        assert not {"encoder_layers", "decoder_layers", "seed", "save_dir",
                    "update_freq"} & identity["hparams"].keys()  # fmt: skip
        assert identity["variant"] == variant
        assert f"{identity['encoder_layers']}-{identity['decoder_layers']}" == depth
        assert identity["hparams"]["fp16"] is True
        assert not recipes_stop_keys() & identity["hparams"].keys()


def recipes_stop_keys() -> set[str]:
    from admin.recipe import RUNTIME_OPTIONS, STOP_CONDITIONS

    return set(STOP_CONDITIONS | RUNTIME_OPTIONS)


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
        {"demo_corpus": 1, "tokenize": 1, "bpe": 1, "binarize": 1, "recipe": 6, "profile": 2,
         "train": 6, "average": 6, "evaluate": 6, "table": 1, "curves": 2, "bleu_plot": 1,
         "default": 1}
    )  # fmt: skip
    variants = {j["wildcards"]["variant"] for j in jobs if j["rule"] == "train"}
    depths = {j["wildcards"]["depth"] for j in jobs if j["rule"] == "train"}
    assert variants == {"postln", "preln", "admin"} and len(depths) == 2
    for job in jobs:  # the demo runs on CPU
        assert not job["resources"].get("gpu") and not job["resources"].get("gres"), job
        if job["rule"] in ("profile", "train"):
            assert shell_option(job, "--device") == "cpu"
    # the deep runs' jobs go first on the two cores (their layers), the rest after
    for job in jobs:
        if job["rule"] in ("profile", "train", "average", "evaluate"):
            enc, dec = job["wildcards"]["depth"].split("-")
            assert job["priority"] == int(enc) + int(dec), job
        else:
            assert job["priority"] == 0, job


def test_matrix_narrows_from_the_command_line():
    # (targets first: --config takes every word after it)
    jobs = plan("paper_wmt14_en_de", "--config", "depths=[6-6]")
    assert counts(jobs)["train"] == 3 and counts(jobs)["profile"] == 1
    assert {j["wildcards"]["depth"] for j in jobs if j["rule"] == "train"} == {"6-6"}
    jobs = plan("paper_iwslt14_de_en", "--config", "variants=[admin]", "seeds=[1111, 2222]")
    assert counts(jobs)["train"] == 2 and counts(jobs)["profile"] == 1  # one per depth
    # a profiling seed outside the matrix still profiles (its folder holds only that)
    jobs = plan("paper_iwslt14_de_en", "--config", "variants=[admin]", "seeds=[2222]")
    assert counts(jobs)["train"] == 1 and counts(jobs)["profile"] == 1
    (profile,) = [j for j in jobs if j["rule"] == "profile"]
    assert profile["output"] == ["results/iwslt14_de_en/admin/6-6/seed1111/profile.json"]
    jobs = plan("paper_all", "--config", "depths=[6-6]", "variants=[postln, preln]")
    assert counts(jobs)["train"] == 2 * 5 + 2 + 2 and counts(jobs)["profile"] == 0


def test_batch_size_is_kept_when_a_profile_changes_the_gpu_count():
    # 60L-12L: 16 GPUs x 5000 tokens x update-freq 16; on 2 nodes x 4 GPUs the recipe (and
    # its batch) is the same, and the train job accumulates 32 batches per update
    jobs = plan(
        "paper_wmt14_en_fr", "--set-resources", "train:gpus_per_node=4", "train:gres=gpu:4",
        "--config", "depths=[60-12]", "variants=[preln]",
    )  # fmt: skip
    (train,) = [j for j in jobs if j["rule"] == "train"]
    (recipe,) = [j for j in jobs if j["rule"] == "recipe"]
    assert _spec(recipe)["identity"]["batches_per_update"] == 256
    assert shell_option(train, "--nproc-per-node") == "4"
    assert shell_option(train, "--nnodes") == "2"
    from admin.recipe import update_freq

    assert update_freq(256, 4 * 2) == 32


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


# --------------------------------------------------------------------------- analyses


def _analysis_config() -> tuple[dict[str, Any], str, dict[str, Any]]:
    """config.yaml's analysis section, its dataset and that dataset's matrix."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    analysis = cfg["analysis"]
    dataset = analysis.get("dataset", "demo")
    return analysis, dataset, cfg["experiments"][dataset]["matrix"]


def _words(job: dict[str, Any]) -> list[str]:
    return shlex.split(job["shell"].split(" > ", 1)[0])


def _values(words: list[str], option: str) -> list[str]:
    """The words after ``option`` up to the next option."""
    start = words.index(option) + 1
    end = next((i for i in range(start, len(words)) if words[i].startswith("--")), len(words))
    return words[start:end]


def test_analysis_output_change_plan():
    analysis, dataset, _ = _analysis_config()
    jobs = plan("analysis_output_change")
    jobs_by_rule = counts(jobs)
    # one measuring job on the dataset's data-bin; nothing is trained
    assert jobs_by_rule["output_change"] == 1 and jobs_by_rule["analysis_output_change"] == 1
    assert not {"profile", "train", "average", "evaluate"} & set(jobs_by_rule)
    assert set(jobs_by_rule) - {"output_change", "analysis_output_change"} <= {
        "download", "prepare", "demo_corpus", "tokenize", "bpe", "binarize",
    }  # fmt: skip
    (job,) = [j for j in jobs if j["rule"] == "output_change"]
    assert sorted(job["output"]) == [
        "results/analysis/output_change.csv", "results/analysis/output_change.png",
    ]  # fmt: skip
    assert job["input"] == [f"resources/{dataset}/data-bin"]
    assert not job["resources"].get("gpu")
    words = _words(job)
    settings = analysis["output_change"]
    assert _values(words, "--variants") == settings["variants"]
    assert _values(words, "--depths") == [str(d) for d in settings["depths"]]
    assert _values(words, "--inits") == [str(s) for s in settings["inits"]]
    assert shell_option(job, "--dim") == str(settings["embed_dim"])
    assert shell_option(job, "--ffn-dim") == str(settings["ffn_embed_dim"])


def test_analysis_dependency_plan_reads_the_trained_runs():
    analysis, dataset, matrix = _analysis_config()
    variants = analysis["dependency"]["variants"]
    depths = analysis["dependency"].get("depths") or matrix["depths"]  # from the matrix
    seed = matrix["seeds"][0]
    trained = [(v, d) for v in variants for d in depths
               if v in matrix["variants"] and d in matrix["depths"]]  # fmt: skip
    jobs = plan("analysis_dependency")
    jobs_by_rule = counts(jobs)
    assert jobs_by_rule["dependency"] == len(variants) * len(depths)
    assert jobs_by_rule["train"] == jobs_by_rule["average"] == len(trained)
    assert jobs_by_rule["profile"] == len([v for v, _ in trained if v == "admin"])
    assert "evaluate" not in jobs_by_rule  # the heatmaps need the averaged model, not BLEU
    deps = [j for j in jobs if j["rule"] == "dependency"]
    assert sorted(f for j in deps for f in j["output"]) == sorted(
        f"results/analysis/dependency_{v}_{d}.{ext}"
        for v in variants for d in depths for ext in ("png", "csv")
    )  # fmt: skip
    for job in deps:
        variant, depth = job["wildcards"]["variant"], job["wildcards"]["depth"]
        run = f"results/{dataset}/{variant}/{depth}/seed{seed}"
        assert f"resources/{dataset}/data-bin" in job["input"]
        assert shell_option(job, "--seed") == str(seed)
        assert shell_option(job, "--depth") == depth
        assert hparams(job)["arch"].startswith("admin_transformer")  # the dataset's recipe
        if (variant, depth) in trained:
            assert f"{run}/average.json" in job["input"]
            assert shell_option(job, "--average") == f"{run}/average.json"
        if (variant, depth) in trained and variant == "admin":
            # the heatmap at initialisation starts from the trained run's own profile
            assert shell_option(job, "--profile") == f"{run}/profile.json"
        else:
            assert "--profile" not in _words(job)


def test_analysis_dependency_at_an_untrained_depth_is_init_only():
    jobs = plan(
        "analysis_dependency", "--config",
        "analysis={dependency: {variants: [admin, postln], depths: [3-3]}}",
    )  # fmt: skip
    jobs_by_rule = counts(jobs)
    assert jobs_by_rule["dependency"] == 2
    assert not {"profile", "train", "average"} & set(jobs_by_rule)
    for job in (j for j in jobs if j["rule"] == "dependency"):
        assert "--average" not in _words(job) and "--profile" not in _words(job)
        assert shell_option(job, "--depth") == "3-3"


def test_built_analyses_join_the_default_target(tmp_path):
    """Once built, the analyses are inputs of `all` (kept up to date, and in --report)."""

    def default_plan() -> list[dict[str, Any]]:
        proc = snakemake(
            "-n", "-p", "-F", "--nolock", "--cores", "256",
            "--configfile", str(REPO / "config" / "config.yaml"), cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return parse_dry_run(proc.stdout + proc.stderr)

    assert "output_change" not in counts(default_plan())
    built = Path(tmp_path, "results", "analysis")
    built.mkdir(parents=True)
    for name in ("output_change.csv", "output_change.png"):
        (built / name).write_text("")
    jobs = default_plan()
    assert counts(jobs)["output_change"] == 1 and "dependency" not in counts(jobs)
    (target,) = [j for j in jobs if j["rule"] == "default"]
    assert "results/analysis/output_change.csv" in target["input"]


def test_analysis_dataset_must_be_defined():
    proc = snakemake(
        "-n", "--nolock", "analysis_output_change", "--config", "analysis={dataset: nosuch}"
    )
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "analysis.dataset: 'nosuch' is not defined under experiments" in text
