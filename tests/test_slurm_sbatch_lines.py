"""The sbatch lines ``--profile slurm`` produces for the GPU rules, without a cluster.

The jobs come from the real workflow: ``snakemake -n`` with the project's profile
(plus an overlay filling the partition placeholders with "cpu"/"gpu") plans the
WMT'14 En-Fr paper matrix, whose presets hold the three shapes that matter:
profiling on one GPU, 6L-6L training on 1 node x 8 GPUs and 60L-12L training on
2 nodes x 8 GPUs. Each planned job's threads and evaluated resources are handed to
the plugin's own submit-string functions (``get_submit_command`` and
``set_gres_string``, as the plugin's tests do) and to the jobstep's srun settings.
The two-node launch itself runs for real on the local two-node cluster
(tests/test_slurm_cluster.py, tests/test_slurm_rehearsal.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.slurm_support import (
    PROFILE_DIR,
    REPO,
    dry_run_text,
    jobstep_srun_prefix,
    load_profile,
    mock_job,
    parse_job_infos,
    planned_groups,
    sbatch_line,
    workflow_rules,
    write_local_overlay,
)

CPU_PART, GPU_PART = "cpu", "gpu"


def _overlay(tmp: Path, **extra: Any) -> Path:
    # The user's profile as slurm/my-cluster.example.yaml has it: CPU and GPU partitions.
    return write_local_overlay(tmp, CPU_PART, GPU_PART, **extra)


def _plan_text(tmp_path: Path, overlay_extra: dict[str, Any] | None = None) -> str:
    overlay = _overlay(tmp_path / "overlay", **(overlay_extra or {}))
    return dry_run_text(
        REPO,
        ["--profile", str(PROFILE_DIR), "--profile", str(overlay), "paper_wmt14_en_fr"],
        REPO,
    )


def _plan(tmp_path: Path, overlay_extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return parse_job_infos(_plan_text(tmp_path, overlay_extra))


@pytest.fixture(scope="module")
def plan_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _plan_text(tmp_path_factory.mktemp("plan"))


@pytest.fixture(scope="module")
def plan(plan_text: str) -> list[dict[str, Any]]:
    return parse_job_infos(plan_text)


def _settings() -> SimpleNamespace:
    profile = load_profile()
    return SimpleNamespace(
        requeue=bool(profile.get("slurm-requeue")),
        no_requeue=bool(profile.get("slurm-no-requeue")),
        qos=profile.get("slurm-qos"),
        reservation=profile.get("slurm-reservation"),
    )


def _job(plan: list[dict[str, Any]], rule: str, **wildcards: str) -> dict[str, Any]:
    for job in plan:
        wc = dict(item.split("=", 1) for item in (job.get("wildcards") or "").split(", ") if item)
        if job["rule"] == rule and all(wc.get(k) == v for k, v in wildcards.items()):
            return job
    raise AssertionError(f"no planned {rule} job with {wildcards}")


def _lines(job: dict[str, Any]) -> tuple[str, str, Any]:
    mjob = mock_job(job["rule"], job["threads"], job["resources"])
    sbatch = sbatch_line(mjob, _settings())
    # $SLURM_GPUS is set in the job only when sbatch got --gpus.
    gpus = re.search(r"--gpus=(\S+)", sbatch)
    srun = jobstep_srun_prefix(mjob, gpus.group(1) if gpus else None)
    return sbatch, srun, mjob


def _flags(line: str) -> list[str]:
    return line.split()


def test_profiling_asks_for_one_gpu(plan: list[dict[str, Any]]) -> None:
    job = _job(plan, "profile", variant="admin", depth="6-6")
    sbatch, srun, _ = _lines(job)
    flags = _flags(sbatch)
    assert "--gpus=1" in flags, sbatch
    assert f"{GPU_PART}" == flags[flags.index("-p") + 1], sbatch
    assert "--requeue" in flags, sbatch
    assert not any(f.startswith("--nodes=") and f != "--nodes=1" for f in flags), sbatch
    assert f"--cpus-per-task={job['threads']}" in flags, sbatch
    assert flags[flags.index("--mem") + 1] == str(job["resources"]["mem_mb"])
    assert flags[flags.index("-t") + 1] == str(job["resources"]["runtime"])
    for trap in ("--ntasks", "--ntasks-per-gpu", "--gres"):
        assert not any(f.startswith(trap) for f in flags), (trap, sbatch)
    assert srun == f"srun -n1 --cpu-bind=q --cpus-per-task={job['threads']} --gpus=1 --nodes=1"


def test_profiling_gpu_model(tmp_path: Path) -> None:
    overlay_plan = _plan(tmp_path)
    job = _job(overlay_plan, "profile", variant="admin", depth="6-6")
    job["resources"]["gpu_model"] = "a100"  # what a user puts in the profile's placeholder
    sbatch, _, _ = _lines(job)
    assert "--gpus=a100:1" in _flags(sbatch), sbatch


@pytest.mark.parametrize("depth,nodes,runtime", [("6-6", 1, "2700"), ("60-12", 2, "2880")])
def test_training_gpus_and_nodes(
    plan: list[dict[str, Any]], depth: str, nodes: int, runtime: str
) -> None:
    job = _job(plan, "train", variant="admin", depth=depth)
    sbatch, srun, _ = _lines(job)
    flags = _flags(sbatch)
    assert f"--nodes={nodes}" in flags, sbatch
    if nodes == 1:
        # 8 GPUs in total on one node, which the run's group job (with the evaluate
        # step's one GPU) can ask for: docs/slurm-internals.md, "One job per run"
        assert "--gpus=8" in flags and not any(f.startswith("--gres") for f in flags), sbatch
    else:
        # 8 GPUs on every node, as a per-node GRES; never a job-wide --gpus count.
        assert "--gres=gpu:8" in flags, sbatch
        assert not any(f.startswith("--gpus") for f in flags), sbatch
    # One task per node (sbatch's default): no --ntasks, no --ntasks-per-gpu.
    assert not any(f.startswith("--ntasks") for f in flags), sbatch
    assert flags[flags.index("-p") + 1] == GPU_PART, sbatch
    assert "--requeue" in flags, sbatch
    # threads = CPUs per node (one task per node)
    assert f"--cpus-per-task={job['threads']}" in flags, sbatch
    assert flags[flags.index("--mem") + 1] == str(job["resources"]["mem_mb"])
    # The config's training time limit (resources.train.runtime, minutes): a one-node
    # run's job adds its average and evaluate steps' to it (48 h in all).
    assert flags[flags.index("-t") + 1] == str(job["resources"]["runtime"]) == runtime, sbatch
    # The jobstep's srun runs the rule once (-n1) and passes the node count (reduced to
    # one node by srun since -n1); a multi-node step asks for no GPU count (it gets all
    # of the job's GRES on its node).
    gpus = " --gpus=8" if nodes == 1 else ""
    assert srun == f"srun -n1 --cpu-bind=q --cpus-per-task={job['threads']}{gpus} --nodes={nodes}"


def test_a_runs_steps_share_one_group_and_partition(
    plan: list[dict[str, Any]], plan_text: str
) -> None:
    """On SLURM a run's train, average and evaluate steps are one job: a Snakemake group
    named after the run, whose members must agree on every string resource (partition);
    a two-node training is outside its run's group (admin.common.job_requests)."""
    for depth in ("6-6", "60-12"):
        jobs = {rule: _job(plan, rule, variant="admin", depth=depth)
                for rule in ("train", "average", "evaluate")}  # fmt: skip
        parts = {rule: job["resources"]["slurm_partition"] for rule, job in jobs.items()}
        assert parts == dict.fromkeys(jobs, GPU_PART), parts
        assert (jobs["evaluate"]["resources"]["gpu"], "gpu" in jobs["average"]["resources"]) == (
            1, False)  # fmt: skip
    groups = planned_groups(plan_text)
    cells = [(v, d) for v in ("postln", "preln", "admin") for d in ("6-6", "60-12")]
    one_node = {"average", "evaluate", "train"}
    assert groups == {
        f"run_wmt14_en_fr_{v}_{d}_1111": one_node if d == "6-6" else one_node - {"train"}
        for v, d in cells
    }, groups  # fmt: skip


def _rule_blocks() -> dict[str, str]:
    """Each rule's text in the workflow's rule files."""
    blocks: dict[str, str] = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for chunk in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            name, _, body = chunk.partition(":")
            blocks[name.strip()] = body
    return blocks


def test_only_training_and_evaluation_retry() -> None:
    """A deterministic failure of a 12-hour preparation job is not resubmitted; a training
    or decoding job lost to a time limit, a preemption or a node is (training resumes)."""
    retries = {
        name: int(m[1]) for name, body in _rule_blocks().items()
        if (m := re.search(r"^\s+retries: (\d+)$", body, re.M))
    }  # fmt: skip
    assert retries == {"train": 2, "evaluate": 2}
    assert "retries" not in load_profile()
    # the project's profile holds nothing cluster-specific: the user's own profile may set
    # default-resources and set-resources without losing anything of it
    assert not {"default-resources", "set-resources", "set-threads"} & set(load_profile())


def test_tables_and_plots_run_on_the_submit_host() -> None:
    _, local = workflow_rules()
    assert {"table", "curves", "bleu_plot", "recipe", "download"} <= local


def test_cpu_preprocessing_asks_for_cores_and_memory(plan: list[dict[str, Any]]) -> None:
    for rule in ("prepare", "bpe", "binarize"):
        job = _job(plan, rule)
        sbatch, _, _ = _lines(job)
        flags = _flags(sbatch)
        assert job["threads"] > 1, (rule, job)
        assert f"--cpus-per-task={job['threads']}" in flags, sbatch
        assert "--ntasks=1" in flags, sbatch
        assert flags[flags.index("--mem") + 1] == str(job["resources"]["mem_mb"]), sbatch
        assert flags[flags.index("-p") + 1] == CPU_PART, sbatch
        assert not any(f.startswith(("--gpus", "--gres")) for f in flags), sbatch


def test_downloads_are_local() -> None:
    rules, local = workflow_rules()
    assert "download" in local
    assert not local & {"prepare", "tokenize", "bpe", "binarize", "profile", "train", "evaluate"}


def test_profile_names_only_existing_rules() -> None:
    """Snakemake ignores set-resources for unknown rules silently: catch typos in the
    template of the user's profile."""
    rules, _ = workflow_rules()
    example = yaml.safe_load((PROFILE_DIR / "my-cluster.example.yaml").read_text())
    named = set(example.get("set-resources") or {}) | set(example.get("set-threads") or {})
    assert named <= rules, named - rules
