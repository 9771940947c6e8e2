# Input functions and the glue between Snakemake and the admin package.  No rules here.
#
# The logic lives in Python and is unit-tested there: admin.common.config (loading, validation,
# the matrix, per-rule resources), admin.recipe (what a run trains, when it stops, how it
# runs), admin.common.step_options (the options each rule passes to its step) and
# admin.common.run_folder (the run folder's layout and status words).  This file only
# adapts them to Snakemake: wildcards, file patterns, and which params Snakemake tracks.
#
# Parse time stays light: no fairseq or torch import.

import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.sourcecache import LocalSourceFile

import admin.common.config as admin_config
from admin import recipe as recipes
from admin.common import cluster_check, job_requests, run_folder
from admin.common import step_options
from admin.common.errors import AdminError
from admin.common.variants import VARIANTS, needs_profile

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
# The rules' conda environments (--sdm conda) install the admin package from the
# workflow's own folder (envs/install-admin.sh); a local workflow, or a local module of
# another one, tells them where that is.
# (Set here, not read: nothing for the envvars directive to assert.)
WORKFLOW_ROOT_VARIABLE = "ADMIN_WORKFLOW_ROOT"
_HERE = workflow.current_basedir
if isinstance(_HERE, LocalSourceFile):
    os.environ[WORKFLOW_ROOT_VARIABLE] = str(
        Path(_HERE.get_path_or_uri(secret_free=True)).parents[1]
    )


def set_layout(prefix):
    """Where outputs go: results/, resources/ and logs/, under ``prefix`` (a rehearsal's
    own folder, so that it can never be mistaken for, or overwrite, real results)."""
    global RESULTS, RESOURCES, LOGS, BENCHMARKS, RUN, RUN_LOGS, RUN_BENCHMARKS
    global ANALYSIS, ANALYSIS_LOGS, ANALYSIS_BENCHMARKS
    RESULTS = f"{prefix}results"
    RESOURCES = f"{prefix}resources"
    LOGS = f"{prefix}logs"
    BENCHMARKS = f"{LOGS}/benchmarks"
    # One run folder (admin.common.run_folder) and its logs, as rule patterns.
    RUN = run_folder.pattern(RESULTS)
    RUN_LOGS = run_folder.pattern(LOGS)
    RUN_BENCHMARKS = run_folder.pattern(BENCHMARKS)
    ANALYSIS = f"{RESULTS}/analysis"
    ANALYSIS_LOGS = f"{LOGS}/analysis"
    ANALYSIS_BENCHMARKS = f"{BENCHMARKS}/analysis"


# The steps run as `python -m admin.<step>`.  With --sdm conda, `python` is the rule's
# conda environment's; otherwise it is the interpreter running Snakemake (the project's
# .venv), put first on PATH here rather than written into each rule, so that the
# interpreter's path is no part of what Snakemake tracks: moving the checkout or
# switching --sdm conda on or off reruns nothing.
USES_CONDA = "conda" in {
    str(m).lower() for m in workflow.deployment_settings.deployment_method
}
if not USES_CONDA:
    shell.prefix(
        "set -euo pipefail; "
        f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"; '
    )


def untracked(get):
    """``get(wildcards)`` as a param Snakemake does not track.  Snakemake compares only the
    params that do not derive from input, output, threads or resources; logging, data
    loading and other runtime options must not rerun a finished run when they change."""

    def param(wildcards, input):
        return get(wildcards)

    return param


# --------------------------------------------------------------------------- config


def load_config(cfg):
    """Merge the presets under ``cfg`` (in place), then check it; bad configs stop here."""
    try:
        merged = admin_config.load(
            cfg,
            # presets are relative to the repository root, two folders up from here
            locate=lambda preset: workflow.source_path(f"../../{preset}"),
            schema=SCHEMA,
            overrides=workflow.config_settings.config or {},
        )
    except admin_config.ConfigError as err:
        raise WorkflowError(str(err)) from None
    if merged["rehearsal"]:
        merged = admin_config.rehearse(merged)
    cfg.clear()
    cfg.update(merged)
    set_layout("rehearsal/" if cfg["rehearsal"] else "")


def device(kind):
    """A job's --device: a rehearsal decides on the node (admin.common.launch.resolve_device);
    otherwise the job's resources say it."""

    def get(wildcards, resources):
        gpus = resources.gpus_per_node if kind == "train" else resources.gpu
        return step_options.device(config, gpus)

    return get


def rehearsal_flag(wildcards):
    return step_options.rehearsal_flag(config)


def matrix(dataset):
    return admin_config.matrix(config, dataset)


def run_dir(dataset, variant, depth, seed):
    return str(run_folder.RunKey(dataset, variant, depth, int(seed)).folder(RESULTS))


def runs(dataset):
    return [run_dir(dataset, *cell) for cell in admin_config.cells(config, dataset)]


def dataset_targets(dataset):
    _, depths, _ = matrix(dataset)
    return [
        *(f"{RESULTS}/{dataset}/table.{ext}" for ext in ("md", "csv", "json")),
        f"{RESULTS}/{dataset}/bleu_vs_depth.png",
        *(f"{RESULTS}/{dataset}/curves_{depth}.png" for depth in depths),
    ]


def targets(datasets):
    return [path for dataset in datasets for path in dataset_targets(dataset)]


def alternation(names):
    """A regex that matches exactly one of ``names`` (never anything if empty)."""
    names = sorted(names, key=len, reverse=True)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def datasets_by_source(demo):
    return step_options.datasets_by_source(config, demo)


def paper_targets(dataset, preset=None):
    """Input function of a named target (a paper table, or a preset such as
    mini_multi30k_de_en), evaluated only when that target is requested."""
    preset = preset or f"config/paper_{dataset}.yaml"

    def get(wildcards):
        if dataset not in config["experiments"]:
            raise WorkflowError(
                f"experiments.{dataset} is not defined: add {preset} to presets"
            )
        return dataset_targets(dataset)

    return get


# --------------------------------------------------------------------------- data


def source(dataset):
    return step_options.source(config, dataset)


def languages(dataset):
    return step_options.languages(config, dataset)


def archives(wildcards):
    names = step_options.archive_names(config, wildcards.dataset)
    return [f"{RESOURCES}/{wildcards.dataset}/archives/{name}" for name in names]


def download_options(wildcards):
    return step_options.download_options(config)


def corpus_options(wildcards):
    return step_options.corpus_options(config, wildcards.dataset)


def tokenize_options(wildcards):
    return step_options.tokenize_options(config, wildcards.dataset)


def bpe_options(wildcards):
    return step_options.bpe_options(config, wildcards.dataset)


# --------------------------------------------------------------------------- resources


def res(rule_name, key):
    """An input function for one resource of a rule's jobs (threads and resources)."""

    def get(wildcards):
        values = admin_config.lookup_resources(
            config,
            rule_name,
            getattr(wildcards, "dataset", None),
            getattr(wildcards, "depth", None),
        )
        # gpu: the GPUs of a one-node job (sbatch --gpus, --resources gpu=N)
        if key == "gpu":
            return values["gpus"] * values["nodes"]
        return values[key]

    return get


def train_gpu_request(kind):
    """The train rule's GPU request of ``kind`` (``gpu`` or ``gres``): a one-node job's
    GPUs as ``gpu`` (which the run's SLURM group shares, and a local ``--resources
    gpu=N`` caps), a multi-node job's per node as ``gres`` (admin.common.job_requests).
    """
    per_node, nodes = res("train", "gpus"), res("train", "nodes")

    def get(wildcards):
        gpus, hosts = per_node(wildcards), nodes(wildcards)
        if kind == "gres":
            return job_requests.train_gres(gpus, hosts)
        # a local run's cap (a Resource, valued None if not given); SLURM jobs have none
        cap = workflow.global_resources.get("gpu")
        cap = getattr(cap, "value", cap) if workflow.local_exec else None
        named = ", ".join(f"{k}={v}" for k, v in wildcards.items())
        try:
            return job_requests.train_gpu(
                gpus, hosts, cap=cap, where=f"rule train ({named})"
            )
        except AdminError as err:
            raise WorkflowError(str(err)) from None

    return get


def depth_priority(wildcards):
    """Deeper runs first (admin.common.job_requests.depth_priority)."""
    return job_requests.depth_priority(wildcards.depth)


def run_group(step):
    """The SLURM job group of a run's step: one job per run (admin.common.job_requests)."""
    nodes = res("train", "nodes")

    def get(wildcards):
        key = run_folder.RunKey(
            wildcards.dataset, wildcards.variant, wildcards.depth, int(wildcards.seed)
        )
        return job_requests.run_group(step, key, nodes(wildcards))

    return get


def check_slurm_requests():
    """With the SLURM executor, stop before the first sbatch if a job asks for more than
    its partition's nodes have (SLURM would leave it pending for ever).  Called by
    onstart: after the DAG is built, in real runs of the main process only."""
    if workflow.executor_plugin.cli_prefix != "slurm":
        return
    # with the plugin's partition config, jobs naming no partition go where they fit
    settings = workflow.executor_settings
    auto = bool(getattr(settings, "partition_config", None))
    auto = auto or "SNAKEMAKE_SLURM_PARTITIONS" in os.environ
    jobs = [job for job in workflow.dag.needrun_jobs() if not job.is_local]
    try:
        cluster_check.check_jobs(jobs, auto_partition=auto)
    except AdminError as err:
        raise WorkflowError(str(err)) from None


# --------------------------------------------------------------------------- runs


def recipe_spec(wildcards):
    """The run's recipe (tracked: any change reruns the run and what depends on it)."""
    spec = recipes.spec(
        config,
        wildcards.dataset,
        wildcards.variant,
        wildcards.depth,
        int(wildcards.seed),
    )
    return json.dumps(spec, sort_keys=True)


def stop_conditions(wildcards):
    """When the run stops (tracked: raising max_epoch reruns training, which continues)."""
    stop = recipes.stop_conditions(config, wildcards.dataset, wildcards.depth)
    return json.dumps(stop, sort_keys=True)


def runtime_options(wildcards):
    return json.dumps(
        recipes.runtime_options(config, wildcards.dataset, wildcards.depth),
        sort_keys=True,
    )


def average_options(wildcards):
    return step_options.average_options(config, wildcards.dataset)


def kept_window_options(wildcards):
    return step_options.kept_window_options(config, wildcards.dataset)


def divergence_settings(wildcards):
    return step_options.divergence_settings(config, wildcards.dataset)


def keep_checkpoints(wildcards):
    return step_options.keep_checkpoints(config)


def profile_of(dataset, variant, depth, seed):
    """The profile an Admin run trains from: its own run folder's, or, with
    ``profiling.per: depth``, that of the dataset's profiling seed at its depth."""
    pseed = admin_config.profile_seed(config, dataset, int(seed))
    return f"{run_dir(dataset, variant, depth, pseed)}/profile.json"


def profile_input(wildcards):
    """Admin's train job reads its profile (profile_of); no other variant has one."""
    if needs_profile(wildcards.variant):
        return profile_of(
            wildcards.dataset, wildcards.variant, wildcards.depth, wildcards.seed
        )
    return []


def profile_options(wildcards, input):
    return step_options.profile_options(wildcards.variant, input.profile or None)


# --------------------------------------------------------------------------- evaluation


def generate_hparams(wildcards):
    return step_options.generate_hparams(config, wildcards.dataset)


def raw_text(wildcards):
    """The folder with the test set's raw references (sacreBLEU scores against them)."""
    folder = step_options.raw_text_folder(config, wildcards.dataset)
    return f"{RESOURCES}/{wildcards.dataset}/{folder}"


def detok_options(wildcards, input):
    return step_options.detok_options(config, wildcards.dataset, input.raw)


def scoring_options(wildcards):
    return step_options.scoring_options(config, wildcards.dataset)


# --------------------------------------------------------------------------- report


def run_files(name):
    def get(wildcards):
        return [f"{run}/{name}" for run in runs(wildcards.dataset)]

    return get


def depth_run_files(name):
    """``name`` in every run folder of one depth (all variants and seeds)."""

    def get(wildcards):
        variants, _, seeds = matrix(wildcards.dataset)
        return [
            f"{run_dir(wildcards.dataset, v, wildcards.depth, s)}/{name}"
            for v in variants
            for s in seeds
        ]

    return get


def run_folders(paths):
    return step_options.run_folders(paths)


# --------------------------------------------------------------------------- analyses


def analysis_dataset():
    try:
        return admin_config.analysis_dataset(config)
    except admin_config.ConfigError as err:
        raise WorkflowError(str(err)) from None


def analysis_data_bin(wildcards):
    return f"{RESOURCES}/{analysis_dataset()}/data-bin"


def output_change_targets():
    return [f"{ANALYSIS}/output_change.{ext}" for ext in ("csv", "png")]


def output_change_options(wildcards):
    return step_options.output_change_options(config)


def dependency_depths():
    analysis_dataset()
    return admin_config.dependency_depths(config)


def dependency_seed():
    analysis_dataset()
    return admin_config.dependency_seed(config)


def dependency_targets(wildcards=None):
    return [
        f"{ANALYSIS}/dependency_{variant}_{depth}.{ext}"
        for variant in config["analysis"]["dependency"]["variants"]
        for depth in dependency_depths()
        for ext in ("png", "csv")
    ]


def trained_run(variant, depth):
    """The analysis dataset's run folder of this variant and depth at the dependency seed,
    if its matrix trains one; otherwise None."""
    dataset, seed = analysis_dataset(), dependency_seed()
    if (variant, depth, seed) in admin_config.cells(config, dataset):
        return run_dir(dataset, variant, depth, seed)
    return None


def dependency_average(wildcards):
    """A trained run's average.json (it names the averaged checkpoint), if there is one."""
    run = trained_run(wildcards.variant, wildcards.depth)
    return f"{run}/average.json" if run else []


def dependency_profile(wildcards):
    """Admin with a trained run: the profile that run started from, so that the heatmap
    at initialisation is that run's start.  Without one the step profiles itself."""
    run = trained_run(wildcards.variant, wildcards.depth)
    if not run or not needs_profile(wildcards.variant):
        return []
    dataset, seed = analysis_dataset(), dependency_seed()
    return profile_of(dataset, wildcards.variant, wildcards.depth, seed)


def dependency_hparams(wildcards):
    """The analysis dataset's recipe at this depth: the heatmaps show the models it trains."""
    return step_options.dependency_hparams(config, analysis_dataset(), wildcards.depth)


def dependency_options(wildcards, input):
    profile, average = input.profile or None, input.average or None
    return step_options.dependency_options(config, dependency_seed(), profile, average)


def built_analyses(wildcards):
    """The analyses' outputs that exist already.  The default target lists them, so that once
    built they are kept up to date and `snakemake --report` includes them."""
    if config["analysis"]["dataset"] not in config["experiments"]:
        return []
    wanted = output_change_targets() + dependency_targets()
    return [path for path in wanted if Path(path).exists()]
