"""A job the cluster can never run stops ``snakemake --profile slurm`` before any sbatch.

On the local cluster (nodes of 2 CPUs) a tiny demo whose ``bpe`` asks for 8 CPUs per
task, the case SLURM accepts and leaves PENDING for ever (reason PartitionConfig):

* the real run stops in seconds with the message naming rule bpe, its 8 CPUs and the
  partition's CPUs per node; nothing was submitted (no "submitted with SLURM jobid"
  line, no job of the run in squeue) and no output was made;
* the dry run of the same plan is unaffected (the check runs in real runs only);
* a target whose jobs fit (the demo corpus, 1 CPU) goes through sbatch, with no word
  from the check (the run is stopped once submitted: the cluster is shared).

Needs a SLURM cluster (``bash scripts/slurm-local-cluster.sh start``); skips without
one, fails instead with ADMIN_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.slurm_support import (
    PROFILE_DIR,
    REPO,
    SNAKEMAKE,
    cancel_run_jobs,
    default_partition,
    node_cpus,
    require_slurm,
    run_snakemake,
    snakemake_env,
    submissions,
    write_local_overlay,
)

pytestmark = pytest.mark.slow

HEADLINE = "SLURM can never run these jobs, so nothing was submitted"
# The demo, tiny; bpe asks for more CPUs per task than a local node has.
CONFIG = {
    "datasets": ["demo"],
    "experiments": {
        "demo": {
            "data": {"corpus": {"seed": 1, "train": 200, "valid": 20, "test": 20},
                     "bpe_merges": 50},
            "resources": {
                "demo_corpus": {"cpus": 1, "mem_mb": 1000, "runtime": 10},
                "tokenize": {"cpus": 1, "mem_mb": 1000, "runtime": 10},
                "bpe": {"cpus": 8, "mem_mb": 2000, "runtime": 10},
            },
        }
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    require_slurm()
    base = tmp_path_factory.mktemp("cluster_check")
    workdir = base / "work"
    workdir.mkdir()
    config = base / "big_bpe.yaml"
    config.write_text(yaml.safe_dump(CONFIG, sort_keys=False), encoding="utf-8")
    # threads unclamped, as with slurm/config.yaml alone (the test overlay clamps them)
    overlay = write_local_overlay(base / "overlay", default_partition(), **{"max-threads": 1000})
    args = [
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--profile", str(PROFILE_DIR), "--profile", str(overlay),
        "--configfile", str(REPO / "config" / "config.yaml"), str(config),
    ]  # fmt: skip
    return workdir, args


def _run(targets: list[str], args: list[str], *extra: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = run_snakemake([*targets, *extra, *args], cwd=REPO, timeout=300)
    log = proc.stdout + proc.stderr
    return proc.returncode, log, time.monotonic() - t0


def test_impossible_job_stops_the_run_before_any_sbatch(setup: tuple[Path, list[str]]) -> None:
    workdir, args = setup
    rc, log, seconds = _run(["resources/demo/bpe"], args)
    if submissions(log):
        cancel_run_jobs(log)
    print(f"\nstopped after {seconds:.1f} s")
    assert rc != 0, log[-4000:]
    assert HEADLINE in log, log[-4000:]
    partition, cpus = default_partition(), node_cpus()
    assert (
        f"rule bpe (dataset=demo) asks for 1 node x (8 CPUs, 2000 MB), 10 min; "
        f"partition '{partition}' has 2 nodes of at most {cpus} CPUs, " in log
    ), log[-4000:]
    assert "too many CPUs" in log and "config/README.md, section Resources" in log
    # only bpe is reported: demo_corpus and tokenize fit
    assert "rule demo_corpus" not in log and "rule tokenize" not in log
    # nothing went to SLURM: no submission line, no job under this run's name
    assert submissions(log) == []
    run_id = re.search(r"SLURM run ID: (\S+)", log)
    assert run_id, log[-4000:]
    queued = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name", run_id.group(1), "-o", "%i"],
        capture_output=True, text=True, check=True, timeout=15,
    ).stdout.split()  # fmt: skip
    assert queued == []
    assert not (workdir / "resources" / "demo" / "raw").exists()


def test_dry_run_is_not_checked(setup: tuple[Path, list[str]]) -> None:
    _, args = setup
    rc, log, _ = _run(["resources/demo/bpe"], args, "-n")
    assert rc == 0, log[-4000:]
    assert HEADLINE not in log
    assert re.search(r"^bpe\s+1$", log, re.MULTILINE), log[-4000:]


def test_jobs_that_fit_are_submitted(setup: tuple[Path, list[str]]) -> None:
    """The check lets them through: the run reaches sbatch.  It is stopped there (Ctrl-C,
    and the job cancelled), so that the test does not wait for a shared cluster's queue."""
    _, args = setup
    cmd = [*SNAKEMAKE, "resources/demo/raw", *args]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=snakemake_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    log = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log += line
            if submissions(log):
                proc.send_signal(signal.SIGINT)
                break
        log += proc.communicate(timeout=120)[0]
    finally:
        watchdog.cancel()
        proc.kill()
        cancel_run_jobs(log)
    assert HEADLINE not in log
    subs = submissions(log)
    assert len(subs) == 1 and "/rule_demo_corpus/" in subs[0]["log"], log[-4000:]
