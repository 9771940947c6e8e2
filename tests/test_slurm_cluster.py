"""The project's SLURM profile drives a real SLURM cluster.

A two-rule workflow (plus a local rule standing for a download) runs with
``--profile slurm`` and an overlay that fills in the local partition. Every
non-local job must have gone through sbatch: the plugin logged a SLURM job id for
it, the job ran under that id, and SLURM reports it COMPLETED in our partition.

Needs a SLURM cluster (``bash scripts/slurm-local-cluster.sh start``); skips
without one, fails instead with ADMIN_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.slurm_support import (
    PROFILE_DIR,
    cancel_run_jobs,
    default_partition,
    require_slurm,
    run_snakemake,
    squeue_fields,
    submissions,
    write_local_overlay,
)

pytestmark = pytest.mark.slow

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
