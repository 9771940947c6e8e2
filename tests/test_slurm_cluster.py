"""The local SLURM cluster behaves like a real two-node GPU cluster, and the
project's profile drives it.

The cluster (``scripts/slurm-local-cluster.sh``) has two nodes on this machine,
each with the machine's CPUs, half its memory and GPUs as GRES. Here, on the real
scheduler:

* both nodes are in the partition with their GPUs, CPUs and memory;
* ``--gres=gpu:G`` runs one task per node, each seeing its node's G GPUs;
* a request for more GPUs than a node (or the cluster) has is refused by sbatch;
  one that fits the cluster but not its free GPUs waits (PENDING, Resources) and
  starts when the GPUs are released;
* tasks are bound to their CPUs (task/cgroup or task/affinity);
* inside a two-node job whose step is started the way Snakemake's SLURM jobstep
  starts a rule's command, the rule sees the one-node step (SLURM_JOB_NODELIST
  included), a nested ``srun --overlap`` over both nodes (the multi-node training
  launch) cannot start in that environment, and in the jobstep's own environment
  it runs one task per node with the CPUs ``--cpus-per-task`` gives (the job's by
  default) and the job's GPUs on each node (docs/slurm-internals.md);
* a two-rule workflow runs through ``--profile slurm``: every non-local job went
  through sbatch, ran under its SLURM id and is COMPLETED in our partition.

Needs a SLURM cluster (``bash scripts/slurm-local-cluster.sh start``); skips
without one, fails instead with ADMIN_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.slurm_support import (
    PROFILE_DIR,
    cancel_run_jobs,
    default_partition,
    jobstep_kept_slurm_vars,
    jobstep_srun_prefix,
    mock_job,
    require_slurm,
    run_snakemake,
    sbatch_line,
    snakemake_env,
    squeue_fields,
    submissions,
    write_local_overlay,
)

pytestmark = pytest.mark.slow

RESTART_HINT = "(re)start it with: sudo bash scripts/slurm-local-cluster.sh start"
UP_STATES = ("idle", "mix", "alloc", "comp")
# SLURM's answer to a request no node (or no set of nodes) of the partition can hold.
UNSATISFIABLE = "Requested node configuration is not available"

# Run by every task: where it runs and what it may use, as one JSON file.
PROBE = textwrap.dedent(
    """
    import json, os, sys
    env = os.environ
    record = {
        "label": sys.argv[1],
        "node": env.get("SLURMD_NODENAME"),
        "procid": env.get("SLURM_PROCID"),
        "cpus": sorted(os.sched_getaffinity(0)),
        "cuda": env.get("CUDA_VISIBLE_DEVICES"),
        "slurm": {k: v for k, v in env.items() if k.startswith(("SLURM_", "SRUN_"))},
    }
    name = f"{record['label']}.{record['node']}.{record['procid']}.json"
    with open(os.path.join(sys.argv[2], name), "w") as out:
        json.dump(record, out)
    """
)


@dataclass
class Node:
    name: str
    state: str
    hostname: str
    cpus: int
    mem_mb: int
    gpus: int


@dataclass
class Cluster:
    partition: str
    nodes: list[Node]

    @property
    def gpus_per_node(self) -> int:
        return self.nodes[0].gpus

    @property
    def cpus_per_node(self) -> int:
        return self.nodes[0].cpus


def _node(name: str) -> Node:
    out = subprocess.run(
        ["scontrol", "show", "node", "-o", name],
        capture_output=True, text=True, check=True, timeout=15,
    ).stdout  # fmt: skip
    fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
    gres = fields.get("Gres", "")
    gpus = int(gres.split("gpu:", 1)[1].split("(")[0].split(":")[-1]) if "gpu:" in gres else 0
    return Node(
        name=name,
        state=fields["State"].split("+")[0].lower(),
        hostname=fields.get("NodeHostName", ""),
        cpus=int(fields["CPUTot"]),
        mem_mb=int(fields["RealMemory"]),
        gpus=gpus,
    )


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    require_slurm()
    partition = default_partition()
    names = subprocess.run(
        ["sinfo", "-h", "-N", "-p", partition, "-o", "%N"],
        capture_output=True, text=True, check=True, timeout=15,
    ).stdout.split()  # fmt: skip
    nodes = [_node(name) for name in sorted(set(names))]
    assert len(nodes) == 2 and all(n.gpus > 0 for n in nodes), (
        f"partition {partition} should hold two GPU nodes, has {nodes}; {RESTART_HINT}"
    )
    return Cluster(partition, nodes)


def _slurm(*argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """A SLURM client command run as from a login shell (no SLURM_* of ours)."""
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, env=snakemake_env()
    )


def _probe(tmp: Path) -> tuple[Path, Path]:
    """The probe script and the folder its records go to."""
    tmp.mkdir(parents=True, exist_ok=True)
    script = tmp / "probe.py"
    script.write_text(PROBE, encoding="utf-8")
    records = tmp / "records"
    records.mkdir()
    return script, records


def _records(records: Path, label: str) -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in sorted(records.glob(f"{label}.*.json"))]
    return sorted(found, key=lambda r: (r["node"], r["procid"]))


def _srun_probe(cluster: Cluster, tmp: Path, label: str, *options: str) -> list[dict[str, Any]]:
    script, records = _probe(tmp)
    proc = _slurm(
        "srun", "-p", cluster.partition, "-t", "2", *options,
        sys.executable, str(script), label, str(records),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return _records(records, label)


def _gpu_ids(n: int) -> str:
    return ",".join(str(i) for i in range(n))


def test_two_nodes_in_the_partition_with_their_gpus(cluster: Cluster) -> None:
    expected_gpus = int(os.environ.get("ADMIN_SLURM_GPUS_PER_NODE", "2"))
    machine_cpus = len(os.sched_getaffinity(0))
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        machine_mb = int(meminfo.readline().split()[1]) // 1024
    for node in cluster.nodes:
        assert node.state in UP_STATES, (node, RESTART_HINT)
        assert node.gpus == expected_gpus, node
        # Both nodes are this machine: its CPUs, on this host.
        assert node.cpus == machine_cpus, node
        assert node.hostname == socket.gethostname().split(".")[0], node
    # The machine's memory is split between the nodes, not promised twice.
    assert sum(n.mem_mb for n in cluster.nodes) <= machine_mb
    assert all(n.mem_mb >= machine_mb // 2 - 1024 for n in cluster.nodes), cluster.nodes
    # sinfo shows the partition's GRES as SLURM schedules them
    gres = _slurm("sinfo", "-h", "-p", cluster.partition, "-N", "-o", "%N %G").stdout.split("\n")
    assert sorted(line for line in gres if line) == [
        f"{n.name} gpu:{expected_gpus}" for n in cluster.nodes
    ]


def test_gres_job_runs_one_task_per_node_with_their_gpus(cluster: Cluster, tmp_path: Path) -> None:
    g = cluster.gpus_per_node
    records = _srun_probe(cluster, tmp_path, "gres", "-N2", "-n2", f"--gres=gpu:{g}")
    assert [r["node"] for r in records] == [n.name for n in cluster.nodes], records
    for r in records:
        assert r["cuda"] == _gpu_ids(g), r
        assert r["slurm"]["SLURM_STEP_GPUS"] == _gpu_ids(g), r
        assert r["slurm"]["SLURM_GPUS_ON_NODE"] == str(g), r


def test_gpus_in_total_are_spread_over_the_nodes(cluster: Cluster, tmp_path: Path) -> None:
    # --gpus=N counts GPUs over the whole job: all of them needs both nodes.
    total = cluster.gpus_per_node * len(cluster.nodes)
    records = _srun_probe(cluster, tmp_path, "gpus", "-N2", "-n2", f"--gpus={total}")
    assert [r["node"] for r in records] == [n.name for n in cluster.nodes], records
    assert all(r["cuda"] == _gpu_ids(cluster.gpus_per_node) for r in records), records


@pytest.mark.parametrize("request_kind", ["gres_per_node", "gpus_in_total"])
def test_more_gpus_than_the_cluster_has_are_refused_at_submit(
    cluster: Cluster, request_kind: str
) -> None:
    g = cluster.gpus_per_node
    ask = (
        ["-N1", f"--gres=gpu:{g + 1}"]
        if request_kind == "gres_per_node"
        else [f"--gpus={g * len(cluster.nodes) + 1}"]
    )
    proc = _slurm("sbatch", "--parsable", "-p", cluster.partition, "-t", "1", *ask, "--wrap=true")
    assert proc.returncode != 0, (ask, proc.stdout)
    assert UNSATISFIABLE in proc.stderr, proc.stderr
    assert not proc.stdout.strip(), "sbatch printed a job id"


def _wait_state(job: str, want: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = squeue_fields(job, "%T")
        if state in want:
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job} is {state!r} after {timeout} s, not one of {want}")


def _submit(cluster: Cluster, tmp: Path, *options: str, wrap: str) -> str:
    proc = _slurm(
        "sbatch", "--parsable", "-p", cluster.partition, "-t", "2", "-D", str(tmp),
        "--output", str(tmp / "%j.out"), *options, "--wrap", wrap,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def test_job_waits_for_busy_gpus_and_starts_when_they_are_free(
    cluster: Cluster, tmp_path: Path
) -> None:
    g = cluster.gpus_per_node
    release = tmp_path / "release"
    holder = _submit(
        cluster, tmp_path, "-N2", f"--gres=gpu:{g}",
        wrap=f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.2; done",
    )  # fmt: skip
    waiter = ""
    try:
        _wait_state(holder, {"RUNNING"}, 60)
        # One GPU: the cluster has it, but none is free now (CPUs are).
        waiter = _submit(cluster, tmp_path, "-N1", "--gpus=1", wrap="echo $CUDA_VISIBLE_DEVICES")
        deadline = time.monotonic() + 15
        state, reason = squeue_fields(waiter, "%T %r").split()
        while reason == "None" and time.monotonic() < deadline:
            time.sleep(0.3)
            state, reason = squeue_fields(waiter, "%T %r").split()
        assert (state, reason) == ("PENDING", "Resources"), (state, reason)
        release.touch()
        _wait_state(holder, {"COMPLETED"}, 60)
        _wait_state(waiter, {"COMPLETED"}, 60)
    finally:
        subprocess.run(["scancel", holder, *([waiter] if waiter else [])], timeout=30)
    held_end = squeue_fields(holder, "%e")
    waited_start = squeue_fields(waiter, "%S")
    assert waited_start >= held_end, (held_end, waited_start)  # ISO times sort as strings
    assert (tmp_path / f"{waiter}.out").read_text().strip() == "0"


def test_tasks_are_bound_to_their_cpus(cluster: Cluster, tmp_path: Path) -> None:
    one = _srun_probe(cluster, tmp_path / "one", "one", "-N1", "-n1", "--cpus-per-task=1")
    every = _srun_probe(
        cluster, tmp_path / "all", "all", "-N1", "-n1", f"--cpus-per-task={cluster.cpus_per_node}"
    )
    assert len(one) == len(every) == 1
    assert len(one[0]["cpus"]) == 1, one
    assert every[0]["cpus"] == sorted(os.sched_getaffinity(0)), every


def _hostnames(nodelist: str) -> list[str]:
    return subprocess.run(
        ["scontrol", "show", "hostnames", nodelist],
        capture_output=True, text=True, check=True, timeout=15,
    ).stdout.split()  # fmt: skip


def test_nested_srun_in_the_jobstep_gets_cpus_and_gpus_per_node(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A two-node training job as the profile submits it: sbatch from the plugin's
    submit string, the rule's command under the jobstep's own ``srun`` with the
    jobstep's environment, and inside it the launcher's nested ``srun --overlap``:
    as admin.common.launch starts it today (in the rule's environment), then in the
    environment the jobstep itself gives srun, without and with ``--cpus-per-task``."""
    g, c, n = cluster.gpus_per_node, cluster.cpus_per_node, len(cluster.nodes)
    job = mock_job("train", threads=c, resources={
        "nodes": n, "gres": f"gpu:{g}", "mem_mb": 500, "runtime": 2,
        "slurm_partition": cluster.partition,
    })  # fmt: skip
    script, records = _probe(tmp_path)
    probe = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    out = shlex.quote(str(records))
    nested = f"srun --overlap --nodes {n} --ntasks {n} --ntasks-per-node 1"
    inherited_err = tmp_path / "inherited.err"
    # The jobstep keeps these SLURM_* variables for its srun and drops all other
    # SLURM_*, SRUN_* and SBATCH_* ones.
    keep = "|".join(sorted(jobstep_kept_slurm_vars()))
    jobstep_env = (
        "jobstep_env() {\n"
        "    for var in $(env | cut -d= -f1 | grep -E '^(SLURM|SRUN|SBATCH)_'); do\n"
        f'        case $var in {keep}) ;; *) unset "$var" ;; esac\n'
        "    done\n"
        "}\n"
    )
    rule = tmp_path / "rule.sh"
    rule.write_text(
        jobstep_env
        + f"{probe} rule {out}\n"
        + f"{nested} {probe} inherited {out} 2>{shlex.quote(str(inherited_err))} || true\n"
        + f"(jobstep_env; {nested} {probe} clean {out})\n"
        + f"(jobstep_env; {nested} --cpus-per-task=1 {probe} clean_c1 {out})\n"
        + f"(jobstep_env; {nested} --cpus-per-task={c} {probe} clean_call {out})\n",
        encoding="utf-8",
    )
    batch = tmp_path / "batch.sh"
    batch.write_text(
        f"#!/bin/sh\n{jobstep_env}jobstep_env\n"
        f"exec {jobstep_srun_prefix(job, None)} sh {shlex.quote(str(rule))}\n",
        encoding="utf-8",
    )
    submit = shlex.split(sbatch_line(job, workdir=tmp_path, logfile=str(tmp_path / "%j.log")))
    proc = _slurm(*submit, str(batch))
    assert proc.returncode == 0, (submit, proc.stderr)
    job_id = proc.stdout.strip().split(";")[0]
    try:
        _wait_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, 90)
    finally:
        subprocess.run(["scancel", job_id], timeout=30)
    log = (tmp_path / f"{job_id}.log").read_text()
    assert squeue_fields(job_id, "%T") == "COMPLETED", log
    assert f"--nodes={n}" in submit and f"--gres=gpu:{g}" in submit, submit

    names = [node.name for node in cluster.nodes]
    every_cpu = sorted(os.sched_getaffinity(0))
    gpus = _gpu_ids(g)
    # The rule's command runs once, on the first node, with the step's CPUs and the
    # node's GPUs. Its environment describes the one-node step, SLURM_JOB_NODELIST
    # included; only SLURM_NODELIST names the job's nodes.
    (rule_rec,) = _records(records, "rule")
    env = rule_rec["slurm"]
    assert rule_rec["node"] == names[0], rule_rec
    assert (rule_rec["cpus"], rule_rec["cuda"]) == (every_cpu, gpus), rule_rec
    assert (env["SLURM_NNODES"], env["SLURM_JOB_NODELIST"]) == ("1", names[0]), env
    assert _hostnames(env["SLURM_NODELIST"]) == names, env
    assert env["SLURM_CPUS_PER_TASK"] == str(c), env
    assert "SLURM_JOB_NUM_NODES" not in env, env
    # In that environment a nested srun over the job's nodes cannot start: it takes
    # the allocation from the step's SLURM_JOB_NODELIST.
    assert not _records(records, "inherited")
    assert f"Only allocated 1 nodes asked for {n}" in inherited_err.read_text()
    # In the jobstep's environment it runs one task per node, each with its node's
    # GPUs, and the job's --cpus-per-task as its default; binding follows the flag.
    for label, cpus in (("clean", every_cpu), ("clean_c1", every_cpu[:1]),
                        ("clean_call", every_cpu)):  # fmt: skip
        tasks = _records(records, label)
        assert [r["node"] for r in tasks] == names, (label, tasks)
        for r in tasks:
            assert (r["cpus"], r["cuda"]) == (cpus, gpus), (label, r)
            assert r["slurm"]["SLURM_STEP_GPUS"] == gpus, (label, r)
            assert _hostnames(r["slurm"]["SLURM_JOB_NODELIST"]) == names, (label, r)
            assert r["slurm"]["SLURM_NNODES"] == str(n), (label, r)


# --- the profile drives the cluster ---------------------------------------------------

SNAKEFILE = textwrap.dedent(
    """
    localrules: all, fetch

    rule all:
        input: "b.txt"

    # Stands for a download: a local rule runs on the submit host, never through sbatch.
    rule fetch:
        output: "fetched.txt"
        shell: "echo job=${{SLURM_JOB_ID:-none}} > {output}"

    rule a:
        input: "fetched.txt"
        output: "a.txt"
        threads: 2
        resources: mem_mb=500, runtime=5
        shell:
            "echo job=$SLURM_JOB_ID cpus=$SLURM_CPUS_PER_TASK host=$(hostname) > {output}"

    rule b:
        input: "a.txt"
        output: "b.txt"
        shell: "cat {input} > {output}; echo job=$SLURM_JOB_ID >> {output}"
    """
)


def _job_id(line: str) -> str:
    return line.split("job=", 1)[1].split()[0]


def test_two_rule_workflow_goes_through_sbatch(tmp_path: Path) -> None:
    require_slurm()
    partition = default_partition()
    (tmp_path / "Snakefile").write_text(SNAKEFILE, encoding="utf-8")
    overlay = write_local_overlay(tmp_path / "overlay", partition)

    proc = run_snakemake(
        ["--profile", str(PROFILE_DIR), "--profile", str(overlay), "all"],
        cwd=tmp_path,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    try:
        assert proc.returncode == 0, log
        assert "Using profile" in log and str(PROFILE_DIR) in log, log

        subs = submissions(log)
        # a and b were submitted, once each; fetch and all were not.
        assert len(subs) == 2, log
        slurm_ids = [s["slurm"] for s in subs]
        assert len(set(slurm_ids)) == 2

        fetched = (tmp_path / "fetched.txt").read_text()
        assert _job_id(fetched) == "none", "the local rule ran inside a SLURM job"

        a_line, b_line = (tmp_path / "b.txt").read_text().splitlines()
        a_id, b_id = _job_id(a_line), _job_id(b_line)
        assert {a_id, b_id} == set(slurm_ids), (a_id, b_id, slurm_ids)
        # threads became --cpus-per-task
        assert "cpus=2" in a_line, a_line

        for job_id in slurm_ids:
            state, part = squeue_fields(job_id, "%T %P").split()
            assert state == "COMPLETED", (job_id, state)
            assert part == partition, (job_id, part)

        # The plugin's SLURM log of each job is where the profile says it is.
        for sub in subs:
            log_file = Path(sub["log"])
            if not log_file.is_absolute():
                log_file = tmp_path / log_file
            assert log_file.name == f"{sub['slurm']}.log"
            assert tmp_path / ".snakemake" / "slurm_logs" in log_file.parents
            assert log_file.is_file(), log_file
    finally:
        if proc.returncode != 0:
            cancel_run_jobs(log)
