"""Helpers for the tests that use SLURM: the local cluster, profile overlays,
Snakemake runs through the project's profile, and the plugin's sbatch lines.

A test that needs a running SLURM cluster calls :func:`require_slurm`. Without a
cluster it skips with the reason; with ``ADMIN_REQUIRE_SLURM=1`` (CI sets it) the
skip becomes a failure, so CI can never pass without having run these tests.
Start the cluster with ``bash scripts/slurm-local-cluster.sh start`` (as root).
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import pytest
import yaml

from tests.workflow_support import snakemake_env

REPO = Path(__file__).resolve().parents[1]
PROFILE_DIR = REPO / "slurm"
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
# Snakemake as the SLURM tests start it: its real command line, with the SLURM plugin's
# status checks kept close together (tests/slurm_snakemake.py says why).
SNAKEMAKE = [sys.executable, "-P", str(REPO / "tests" / "slurm_snakemake.py")]
START_HINT = "start one with: sudo bash scripts/slurm-local-cluster.sh start"

# The executor plugin logs one such line per sbatch submission.
# a rule's job has a number, a group job (a run's steps) a uuid
SUBMITTED_RE = re.compile(
    r"Job (?P<job>[\w-]+) has been submitted with SLURM jobid (?P<slurm>\d+) "
    r"\(log: (?P<log>[^)]*)\)"
)


def slurm_required() -> bool:
    return os.environ.get("ADMIN_REQUIRE_SLURM", "") not in ("", "0", "false", "no")


@functools.lru_cache(maxsize=1)
def cluster_problem() -> str | None:
    """Why no SLURM cluster can take jobs here, or None when one can."""
    for tool in ("sinfo", "sbatch", "squeue", "srun", "scontrol"):
        if shutil.which(tool) is None:
            return f"no SLURM cluster: `{tool}` is not on PATH ({START_HINT})"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%P %a %t"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return f"no SLURM cluster: `sinfo` did not answer within 15 s ({START_HINT})"
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit status {out.returncode}"
        return f"no SLURM cluster: `sinfo` failed: {why} ({START_HINT})"
    usable = [
        line
        for line in out.stdout.splitlines()
        if len(line.split()) == 3
        and line.split()[1] == "up"
        and line.split()[2] in ("idle", "mix", "alloc", "comp")
    ]
    if not usable:
        return f"no SLURM node can take jobs (sinfo: {out.stdout.strip()!r}) ({START_HINT})"
    return None


def require_slurm() -> None:
    """Skip (or, with ADMIN_REQUIRE_SLURM=1, fail) unless a SLURM cluster answers."""
    problem = cluster_problem()
    if problem is None:
        return
    if slurm_required():
        pytest.fail(f"ADMIN_REQUIRE_SLURM is set but {problem}", pytrace=False)
    pytest.skip(problem)


def default_partition() -> str:
    """The cluster's default partition (marked `*` by sinfo), else the first one."""
    out = subprocess.run(
        ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True, timeout=15
    ).stdout.split()
    for name in out:
        if name.endswith("*"):
            return name[:-1]
    return out[0]


def node_cpus() -> int:
    """CPUs of the smallest node SLURM knows (`sinfo %c`), or this machine's."""
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, timeout=15
        ).stdout.split()
        return min(int(x.rstrip("+")) for x in out)
    except (OSError, ValueError, subprocess.SubprocessError):
        return os.cpu_count() or 1


def load_profile() -> dict[str, Any]:
    return yaml.safe_load((PROFILE_DIR / "config.yaml").read_text(encoding="utf-8"))


def write_local_overlay(
    dest: Path, partition: str, gpu_partition: str | None = None, **extra: Any
) -> Path:
    """The user's own cluster profile for the local cluster, given after ``--profile
    slurm``: slurm/my-cluster.example.yaml as a user fills it in (the partitions named,
    no account: there is no accounting here), with what a cluster without slurmdbd
    needs (squeue for status) and what makes tests quick; ``extra`` on top."""
    overlay = yaml.safe_load((PROFILE_DIR / "my-cluster.example.yaml").read_text())
    overlay["default-resources"] = {"slurm_partition": partition}
    for res in overlay["set-resources"].values():
        res["slurm_partition"] = gpu_partition or partition
    overlay.update({
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "slurm-keep-successful-logs": True,
        "latency-wait": 10,
    })  # fmt: skip
    overlay.update(extra)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")
    return dest


def run_snakemake(
    args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SNAKEMAKE, *args],
        cwd=cwd,
        env=snakemake_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def submissions(log_text: str) -> list[dict[str, str]]:
    """The plugin's 'submitted with SLURM jobid' lines, as dicts."""
    return [m.groupdict() for m in SUBMITTED_RE.finditer(log_text)]


def job_stats(log_text: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (jobs per rule) of the first plan in a log."""
    stats: dict[str, int] = {}
    lines = iter(log_text.splitlines())
    for line in lines:
        if line.strip() == "Job stats:":
            break
    for line in lines:
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            continue
        if fields[0] == "total":
            break
        stats[fields[0]] = int(fields[1])
    return stats


def squeue_fields(job_id: str, fmt: str) -> str:
    """``squeue`` fields of a job, finished ones included (MinJobAge is long on
    the local cluster)."""
    return subprocess.run(
        ["squeue", "--states=all", "--noheader", "-j", job_id, "-o", fmt],
        capture_output=True,
        text=True,
        check=True,
        timeout=15,
    ).stdout.strip()


def cancel_run_jobs(log_text: str) -> None:
    """scancel every job a run submitted (cleanup after a failed test)."""
    ids = [s["slurm"] for s in submissions(log_text)]
    if ids and shutil.which("scancel"):
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


# --- sbatch lines without a cluster ----------------------------------------------


def dry_run_text(snakefile_dir: Path, args: list[str], workdir: Path) -> str:
    """What ``snakemake -n`` prints: the jobs as Snakemake plans them.

    ``args`` carries the profile(s), config and targets. ``--cores`` is set large so
    that threads are not clamped to the dry-run's single core.
    """
    proc = run_snakemake(
        ["-n", "--cores", "256", "--snakefile", str(snakefile_dir / "Snakefile"), *args],
        cwd=workdir,
        timeout=300,
    )
    if proc.returncode != 0:
        raise AssertionError(f"snakemake -n failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def dry_run_jobs(snakefile_dir: Path, args: list[str], workdir: Path) -> list[dict[str, Any]]:
    """Jobs as Snakemake plans them (``-n``): rule, threads and evaluated resources."""
    return parse_job_infos(dry_run_text(snakefile_dir, args, workdir))


_GROUP_RE = re.compile(r"\] Group job (?P<group>\S+) \(jobs in lexicogr\. order\):$")
_MEMBER_RE = re.compile(r"^ {4}(?:local)?rule (?P<rule>\w+):\s*$")


def planned_groups(text: str) -> dict[str, set[str]]:
    """The group jobs of a dry run (``snakemake -n``), each with its members' rules."""
    groups: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in text.splitlines():
        if m := _GROUP_RE.search(line):
            current = groups.setdefault(m["group"], set())
        elif (m := _MEMBER_RE.match(line)) and current is not None:
            current.add(m["rule"])
        elif _RULE_RE.match(line):  # a job outside any group
            current = None
    return groups


_RULE_RE = re.compile(r"^(?:local)?rule (?P<rule>\w+):\s*$")


def parse_job_infos(text: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        m = _RULE_RE.match(line)
        if m:
            current = {
                "rule": m.group("rule"),
                "threads": 1,
                "resources": {},
                "local": raw.lstrip().startswith("localrule"),
            }
            jobs.append(current)
            continue
        if current is None:
            continue
        if line.startswith("threads:"):
            current["threads"] = int(line.split(":", 1)[1])
        elif line.startswith("resources:"):
            body = line.split(":", 1)[1].strip()
            for item in re.split(r", (?=\w+=)", body):
                key, _, value = item.partition("=")
                current["resources"][key] = _typed(value)
        elif line.startswith("wildcards:"):
            current["wildcards"] = line.split(":", 1)[1].strip()
    return jobs


def _typed(value: str) -> Any:
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def mock_job(rule: str, threads: int, resources: dict[str, Any]) -> MagicMock:
    """A job object shaped like the ones the plugin's own tests build."""
    res = SimpleNamespace(**resources)
    res.get = lambda key, default=None: getattr(res, key, default)
    res.keys = lambda: list(vars(res).keys() - {"get", "keys"})
    job = MagicMock()
    job.resources = res
    job.name = rule
    job.threads = threads
    job.wildcards = {}
    job.is_group.return_value = False
    job.jobid = 1
    return job


def sbatch_line(
    job: MagicMock, settings: Any = None, workdir: Path = REPO, logfile: str | None = None
) -> str:
    """The sbatch command the plugin submits for ``job`` (without --wrap)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    partition = job.resources.get("slurm_partition")
    account = job.resources.get("slurm_account")
    params = {
        "run_uuid": "RUN-UUID",
        "slurm_logfile": logfile or f".snakemake/slurm_logs/rule_{job.name}/%j.log",
        "comment_str": f"rule_{job.name}",
        "account": f" -A {account}" if account else "",
        "partition": f" -p {partition}" if partition else "",
        "workdir": str(workdir),
    }
    return get_submit_command(job, params, settings=settings) + set_gres_string(job)


def jobstep_srun_prefix(job: MagicMock, slurm_gpus_env: str | None) -> str:
    """The ``srun`` line the jobstep executor wraps a non-MPI job's command in,
    inside the allocation (``slurm_gpus_env`` = the job's $SLURM_GPUS)."""
    from snakemake_executor_plugin_slurm_jobstep import (
        get_cpu_setting,
        get_gpu_setting,
        get_node_setting,
    )

    parts = [
        "srun -n1 --cpu-bind=q",
        get_cpu_setting(job, slurm_gpus_env),
        get_gpu_setting(job),
        get_node_setting(job),
    ]
    return " ".join(p for p in parts if p)


def jobstep_kept_slurm_vars() -> frozenset[str]:
    """The SLURM_* variables the jobstep executor keeps for its ``srun``; it removes
    every other SLURM_*, and every SRUN_* and SBATCH_* variable. Read from the
    plugin's own code (the set is a local of ``Executor.run_job``)."""
    from snakemake_executor_plugin_slurm_jobstep import Executor

    tree = ast.parse(textwrap.dedent(inspect.getsource(Executor.run_job)))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["keep_slurm"]
            and isinstance(node.value, ast.Set)
        ):
            return frozenset(ast.literal_eval(node.value))
    raise AssertionError("the jobstep's run_job no longer has its keep_slurm set: reread it")


def workflow_rules(snakefile: Path = REPO / "Snakefile") -> tuple[set[str], set[str]]:
    """(all rule names, local rule names) of a workflow, as Snakemake loads it."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, Quietness, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(), snakefile=snakefile, workdir=snakefile.parent
        )
        workflow = wf._workflow
        return {r.name for r in workflow.rules}, set(workflow._localrules)


# --- the paper presets fitted to the local cluster ----------------------------------

# What a user of a small cluster writes to run the presets there: the two local nodes have
# 2 CPUs, about 12 GB and 2 GPUs each. Training keeps each preset's nodes (En-Fr 60-12 on
# both), with 2 GPUs per node where the preset has more (update_freq keeps the batch).
# Short time limits, as a user of such a cluster sets them, let SLURM's backfill start a
# small job on an idle node while a two-node job waits for both.
_SMALL = {"cpus": 1, "mem_mb": 1000, "runtime": 5}


def local_cluster_config() -> dict[str, Any]:
    """A config overlay fitting every rule's request to the local two-node cluster."""
    data_rules = ("default", "download", "demo_corpus", "prepare", "tokenize", "bpe",
                  "binarize", "average", "table", "plots", "analysis")  # fmt: skip
    per_dataset = {
        "resources": {
            **{rule: dict(_SMALL) for rule in data_rules},
            "profile": {"cpus": 1, "mem_mb": 1500, "runtime": 5, "gpus": 1, "nodes": 1},
            "train": {"cpus": 2, "mem_mb": 3000, "runtime": 10, "gpus": 2, "nodes": 1},
            "evaluate": {"cpus": 1, "mem_mb": 1500, "runtime": 5, "gpus": 1},
        }
    }
    experiments = {name: per_dataset for name in ("wmt14_en_de", "wmt14_en_fr")}
    # IWSLT'14 trains on one GPU; a 1-CPU job lets two of them share a node.
    experiments["iwslt14_de_en"] = deep_update(per_dataset, {"resources": {
        "train": {"cpus": 1, "gpus": 1}}})  # fmt: skip
    experiments["wmt14_en_fr"] = deep_update(per_dataset, {"by_depth": {"60-12": {
        "resources": {"train": {"cpus": 2, "mem_mb": 3000, "runtime": 10, "gpus": 2,
                                "nodes": 2}}}}})  # fmt: skip
    return {"resources": {rule: dict(_SMALL) for rule in data_rules},
            "experiments": experiments}  # fmt: skip


def deep_update(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (deep_update(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)  # fmt: skip
    return out


# --- a workflow on the local two-node cluster ------------------------------------------


@dataclass
class LocalCluster:
    """A workflow folder set up for the local two-node cluster: the presets' requests
    fitted to its nodes (a config file) and a user's own profile for it."""

    base: Path
    workdir: Path
    config: Path
    profile: Path

    @property
    def configfiles(self) -> list[str]:
        return [str(REPO / "config" / "config.yaml"), str(self.config)]

    def args(self, *targets: str, config: Sequence[str] = (), profile: Path | None = None) -> list:
        """Snakemake's arguments for ``targets``; ``config``: --config items."""
        # targets first: --configfile takes every word after it; --config last
        return [
            *targets, "--snakefile", str(REPO / "Snakefile"), "--directory", str(self.workdir),
            "--profile", str(PROFILE_DIR), "--profile", str(profile or self.profile),
            "--configfile", *self.configfiles, "--config", *config,
        ]  # fmt: skip


def local_cluster(base: Path) -> LocalCluster:
    """``base``/work as the workflow folder, the cluster's config and profile beside it."""
    require_slurm()
    workdir = base / "work"
    workdir.mkdir(parents=True)
    config = base / "local-cluster.yaml"
    config.write_text(yaml.safe_dump(local_cluster_config(), sort_keys=False))
    profile = write_local_overlay(base / "my-cluster", default_partition())
    return LocalCluster(base, workdir, config, profile)
