"""``python -m admin.status`` on the local two-node SLURM cluster while a rehearsal runs.

The rehearsal is ``paper_iwslt14_de_en --config rehearsal=true`` narrowed to Post-LN and
Admin at seed 1111 (two runs: Admin's has a profiling job), through ``--profile slurm``
and a user's cluster profile fitted to the local nodes, as tests/test_slurm_rehearsal.py
runs its own.  While Snakemake runs, the status is polled: every job it names is the
one ``squeue`` lists for that run's profiling or for the run's group job (its train,
average and evaluate steps; by the plugin's comment, in this workflow's folder) and the
one Snakemake says it submitted for it.  Once the rehearsal is done
every run is scored, with status.json's epochs and updates and scores.json's BLEU.

Needs the two-node cluster (``bash scripts/slurm-local-cluster.sh start``); fails without
one when ADMIN_REQUIRE_SLURM=1 (CI).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from admin import budget
from admin.status import load
from tests.slurm_support import (
    REPO,
    SNAKEMAKE,
    cancel_run_jobs,
    local_cluster,
    snakemake_env,
    squeue_fields,
    submissions,
)
from tests.test_status import hours_rows, run_rows

pytestmark = pytest.mark.slow

TARGET, DATASET = "paper_iwslt14_de_en", "iwslt14_de_en"
NARROW = ["rehearsal=true", "variants=[postln,admin]", "seeds=[1111]"]
RUNS = ("postln 6-6 seed1111", "admin 6-6 seed1111")
JOB_STATE = re.compile(r"^(training|queued|profiling) \(job (\d+)(, profile)?\)$")


def _rule(state: str) -> str:
    m = JOB_STATE.match(state)
    assert m is not None, state
    return "profile" if m[1] == "profiling" or m[3] else "train"


def test_status_follows_a_rehearsal_on_slurm(tmp_path: Path):
    cluster = local_cluster(tmp_path)
    workdir, configfiles = cluster.workdir, cluster.configfiles
    log = tmp_path / "snakemake.log"

    def status() -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "admin.status", TARGET, "--directory", str(workdir),
             "--configfile", *configfiles, "--config", *NARROW],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen([SNAKEMAKE, *cluster.args(TARGET, config=NARROW)], cwd=REPO,
                                env=snakemake_env(),
                                stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        seen: list[tuple[str, ...]] = []  # (run, state, job, squeue's comment and workdir)
        sample = ""  # the status while a run trains, with progress if it was seen
        progress: dict[str, list[int]] = {}  # updates seen while training, per run
        try:
            deadline = time.monotonic() + 1500
            while proc.poll() is None:
                assert time.monotonic() < deadline, "the rehearsal did not finish in time"
                out = status()
                for run, row in run_rows(out).items():
                    m = JOB_STATE.match(row["state"])
                    if m:
                        fields = squeue_fields(m[2], "%k|%Z").split("|")
                        seen.append((run, row["state"], m[2], *fields))
                        if m[1] == "training" and (row["update"] != "—" or not sample):
                            sample = out
                        if m[1] == "training" and row["update"] != "—":
                            progress.setdefault(run, []).append(int(row["update"]))
                time.sleep(1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=120)
            if proc.returncode != 0:
                cancel_run_jobs(log.read_text())
    text = log.read_text()
    assert proc.returncode == 0, text[-8000:]
    print(f"\nthe status while a run trained on SLURM:\n{sample}")

    # every job the status named is that run's job of that rule, in this workflow
    assert any(state.startswith("training (job ") for _, state, *_ in seen), seen
    submitted = {s["slurm"]: s["log"] for s in submissions(text)}
    for run, state, job, comment, where in seen:
        variant, depth, seed = run.replace("seed", "").split()
        if _rule(state) == "profile":
            assert comment == f"rule_profile_wildcards_{DATASET}_{variant}_{depth}_{seed}", seen
            where_logged = f"/rule_profile/{DATASET}_{variant}_{depth}_{seed}/{job}.log"
        else:  # the run's one job: its train, average and evaluate steps
            group = f"run_{DATASET}_{variant}_{depth}_{seed}_average_evaluate_train"
            assert comment == f"rule_{group}", seen
            where_logged = f"/group_{group}/{job}.log"
        assert os.path.realpath(where) == os.path.realpath(workdir)
        assert where_logged in submitted.get(job, ""), (job, submitted)

    # done: every run scored, its numbers its files'
    out = status()
    assert "SLURM: 0 jobs of this workflow in squeue" in out
    rows = run_rows(out)
    assert sorted(rows) == sorted(RUNS)
    cfg, prefix = load(configfiles, NARROW)
    stop = cfg["experiments"][DATASET]["hparams"]["max_epoch"]
    for run, row in rows.items():
        variant, depth, seed = run.replace("seed", "").split()
        folder = workdir / prefix / "results" / DATASET / variant / depth / f"seed{seed}"
        done = json.loads((folder / "status.json").read_text())
        bleu = json.loads((folder / "scores.json").read_text())["bleu_tokenized"]
        assert row["state"] == f"scored: BLEU {bleu:.2f}", row
        assert row["epoch"] == f"{done['epochs']}/{stop}" and row["update"] == str(
            done["num_updates"])  # fmt: skip
        assert float(row["GPU-hours"]) > 0  # one GPU (GRES) per train job
        # seen while training: never past where the run ended, and never backwards
        seen_updates = progress.get(run, [])
        assert seen_updates == sorted(seen_updates)
        assert all(0 < u <= done["num_updates"] for u in seen_updates), seen_updates
    hours = hours_rows(out)[DATASET]
    priced = budget.runs(cfg, DATASET, workdir / prefix / "resources")
    estimate = sum(r.plan.gpu_hours(budget.Hardware()) for r in priced)
    assert hours["finished"] == "2" and hours["estimate"] == budget.num(estimate)
