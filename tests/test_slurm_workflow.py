"""The project's workflow on a real SLURM cluster, through ``--profile slurm``.

One shrunk demo (Admin at 2-2, trained by 2 CPU ranks) runs end to end in a
temporary folder; the other tests reuse its data:

* every job except the local ones went through sbatch (one SLURM job id per job in
  the plugin's log, COMPLETED in squeue under the rule's name) and the table is
  produced;
* a single-process training (Pre-LN 1-1, outside the demo's matrix) is cancelled
  with ``scancel`` after its first checkpoint; running the workflow again resumes
  it from ``checkpoint_last.pt`` and the update count continues;
* the demo's training ran data-parallel on CPU with 2 ranks inside its SLURM job:
  world size 2, identical omegas on both ranks (the profile's), an effective batch
  twice the single-process one (that of the resumed run), and one set of
  checkpoints, written by rank 0 only (observed by tests/rank_probe, as in
  tests/test_steps_distributed.py).

Needs a SLURM cluster (``bash scripts/slurm-local-cluster.sh start``); skips
without one, fails instead with ADMIN_REQUIRE_SLURM=1. About 6 minutes on 2 shared cores.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from admin.common import profiling
from tests.slurm_support import (
    PROFILE_DIR,
    REPO,
    SNAKEMAKE,
    cancel_run_jobs,
    default_partition,
    job_stats,
    require_slurm,
    run_snakemake,
    snakemake_env,
    squeue_fields,
    submissions,
    workflow_rules,
    write_local_overlay,
)
from tests.test_steps_distributed import _first_epoch

pytestmark = pytest.mark.slow

PROBE = REPO / "tests" / "rank_probe"
# The demo's one cell: Admin, trained by 2 CPU ranks (by_depth 2-2 below).
ADMIN_RUN = "results/demo/admin/2-2/seed1"
# Outside the demo's matrix: one process, cancelled after its first checkpoint.
RESUME_RUN = "results/demo/preln/1-1/seed1"
RESUME_EPOCHS = 5

# The demo (config/config.yaml) shrunk to fit two shared cores, as in
# tests/test_workflow_e2e.py: a small corpus, one cell, a tiny model, one epoch.
# Every run of this file uses this one config, so the later runs find the demo's
# data up to date and build only their target.
SHRINK: dict[str, Any] = {
    "datasets": ["demo"],
    "experiments": {
        "demo": {
            "data": {"corpus": {"seed": 1, "train": 1200, "valid": 60, "test": 60},
                     "bpe_merges": 300},
            "matrix": {"variants": ["admin"], "depths": ["2-2"], "seeds": [1]},
            "hparams": {"encoder_embed_dim": 32, "decoder_embed_dim": 32,
                        "encoder_ffn_embed_dim": 64, "decoder_ffn_embed_dim": 64,
                        "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                        "max_tokens": 2000, "max_epoch": 1, "warmup_updates": 6,
                        "log_interval": 1},
            "generate": {"beam": 2, "batch_size": 60},
            "average": {"last": 1, "upper_bound": None},
            "by_depth": {
                # the data-parallel CPU mode: 2 gloo ranks in one job of 2 CPUs
                "2-2": {"resources": {"train": {"cpus": 2, "cpu_procs": 2}}},
                # the resumed run: long enough to be cancelled mid-run
                "1-1": {"hparams": {"max_epoch": RESUME_EPOCHS}},
            },
        }
    },
}  # fmt: skip

ATTEMPT = "==== admin.train attempt"
LOADED_RE = re.compile(r"Loaded checkpoint \S*checkpoint_last\.pt \(epoch (\d+) @ (\d+) updates\)")


@dataclass
class Cluster:
    base: Path
    workdir: Path
    config: Path
    overlay: Path
    partition: str

    def args(self, *targets: str, overlay: Path | None = None) -> list[str]:
        # targets first: --configfile takes every word after it
        return [
            *targets, "--snakefile", str(REPO / "Snakefile"), "--directory", str(self.workdir),
            "--profile", str(PROFILE_DIR), "--profile", str(overlay or self.overlay),
            "--configfile", str(REPO / "config" / "config.yaml"), str(self.config),
        ]  # fmt: skip


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def log(self) -> str:
        return self.proc.stdout + self.proc.stderr

    def check(self) -> str:
        assert self.proc.returncode == 0, self.log[-8000:]
        return self.log


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    require_slurm()
    base = tmp_path_factory.mktemp("slurm_workflow")
    workdir = base / "work"
    workdir.mkdir()
    config = base / "shrink.yaml"
    config.write_text(yaml.safe_dump(SHRINK, sort_keys=False), encoding="utf-8")
    partition = default_partition()
    overlay = write_local_overlay(base / "overlay", partition)
    return Cluster(base, workdir, config, overlay, partition)


@pytest.fixture(scope="module")
def demo(cluster: Cluster) -> Run:
    """The shrunk demo through --profile slurm, with the rank probe on."""
    probe = cluster.base / "probe"
    probe.mkdir()
    t0 = time.monotonic()
    proc = run_snakemake(
        cluster.args(),
        cwd=REPO,
        timeout=900,
        env={"PYTHONPATH": str(PROBE), "ADMIN_RANK_PROBE_DIR": str(probe)},
    )
    run = Run(proc, time.monotonic() - t0)
    if proc.returncode != 0:
        cancel_run_jobs(run.log)
    print(f"\ndemo through SLURM: {len(submissions(run.log))} jobs in {run.seconds:.0f} s")
    return run


def _completed(log: str) -> list[dict[str, str]]:
    """The run's sbatch submissions; each job COMPLETED, under its rule's name."""
    subs = submissions(log)
    for sub in subs:
        sub["rule"] = _rule_of(sub)
        state, comment = squeue_fields(sub["slurm"], "%T %k").split()
        assert state == "COMPLETED", (sub, state)
        assert comment.startswith(f"rule_{sub['rule']}_wildcards_"), (sub, comment)
    return subs


def _rule_of(sub: dict[str, str]) -> str:
    m = re.search(r"/slurm_logs/rule_([A-Za-z0-9_]+)/", sub["log"])
    return m.group(1) if m else "?"


def test_demo_through_slurm(cluster: Cluster, demo: Run) -> None:
    log = demo.check()
    out = cluster.workdir / "results" / "demo"
    for name in ("table.md", "table.csv", "table.json", "bleu_vs_depth.png", "curves_2-2.png"):
        assert (out / name).stat().st_size > 0, name
    scores = json.loads((cluster.workdir / ADMIN_RUN / "scores.json").read_text())
    cell = json.loads((out / "table.json").read_text())["cells"]["admin"]["2-2"]
    if scores["status"] == "diverged":
        assert cell["text"] == "diverged"
    else:
        assert cell["mean"] == pytest.approx(scores["bleu_tokenized"])

    # Every job Snakemake ran went through sbatch, once, except the local rules.
    subs = _completed(log)
    assert len({s["slurm"] for s in subs}) == len(subs) == len({s["job"] for s in subs})
    _, local = workflow_rules()
    planned = {rule: n for rule, n in job_stats(log).items() if rule not in local}
    submitted: dict[str, int] = {}
    for sub in subs:
        submitted[sub["rule"]] = submitted.get(sub["rule"], 0) + 1
    assert submitted == planned, (submitted, job_stats(log))
    for rule in ("demo_corpus", "tokenize", "bpe", "binarize", "profile", "train", "average",
                 "evaluate", "table", "curves", "bleu_plot"):  # fmt: skip
        assert submitted.get(rule) == 1, (rule, submitted)
    # The plugin kept each job's SLURM log (the overlay keeps successful ones).
    for sub in subs:
        assert Path(sub["log"]).name == f"{sub['slurm']}.log" and Path(sub["log"]).is_file()


# --- a cancelled training resumes ---------------------------------------------------


def _updates(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"num_updates[ =](\d+)", text)]


def _step_processes(workdir: Path) -> list[str]:
    """Live admin.* step processes (fairseq ranks included) working in ``workdir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = (entry / "cwd").resolve()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cwd == workdir.resolve() and " -m admin." in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _wait_for(predicate: Any, timeout: float, what: str, first: subprocess.Popen[str],
              log: Path) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not predicate():
        if first.poll() is not None:
            raise AssertionError(f"snakemake ended before {what}:\n{log.read_text()[-6000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


@dataclass
class Resumed:
    first_log: str
    first_rc: int
    cancelled: str
    survivors: list[str]
    status_after_cancel: bool
    last_after_cancel: bool
    second: Run


@pytest.fixture(scope="module")
def resumed(cluster: Cluster, demo: Run) -> Resumed:
    """Pre-LN 1-1 trained as a SLURM job, scancel'ed after its first checkpoint, then
    the same workflow run again. Without retries, so that the rerun is ours."""
    no_retry = write_local_overlay(cluster.base / "no-retry", cluster.partition, retries=0)
    target = f"{RESUME_RUN}/status.json"
    run = cluster.workdir / RESUME_RUN
    history = run / "checkpoints" / "train.log"
    first_log = cluster.base / "first.log"
    with open(first_log, "w", encoding="utf-8") as out:
        first = subprocess.Popen(
            [SNAKEMAKE, *cluster.args(target, overlay=no_retry)], cwd=REPO,
            env=snakemake_env(), stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        # fairseq logs "Saved checkpoint" once checkpoint1.pt, _best and _last are written
        _wait_for(lambda: history.is_file() and "Saved checkpoint" in history.read_text(),
                  600, "the first checkpoint", first, first_log)  # fmt: skip
        trains = [s for s in submissions(first_log.read_text()) if _rule_of(s) == "train"]
        assert len(trains) == 1, first_log.read_text()[-4000:]
        cancelled = trains[0]["slurm"]
        subprocess.run(["scancel", cancelled], check=True, timeout=30)
        first.wait(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
            cancel_run_jobs(first_log.read_text())
    deadline = time.monotonic() + 20
    while _step_processes(cluster.workdir) and time.monotonic() < deadline:
        time.sleep(0.5)
    survivors = _step_processes(cluster.workdir)
    status_after_cancel = (run / "status.json").exists()
    last_after_cancel = (run / "checkpoints" / "checkpoint_last.pt").is_file()

    t0 = time.monotonic()
    second = run_snakemake(cluster.args(target), cwd=REPO, timeout=600)
    result = Run(second, time.monotonic() - t0)
    if second.returncode != 0:
        cancel_run_jobs(result.log)
    print(f"\nrerun after scancel: {result.seconds:.0f} s")
    return Resumed(first_log.read_text(), first.returncode, cancelled, survivors,
                   status_after_cancel, last_after_cancel, result)  # fmt: skip


def test_training_resumes_after_scancel(cluster: Cluster, resumed: Resumed) -> None:
    # The first run: its training job was cancelled, nothing of it survives.
    assert resumed.first_rc != 0, resumed.first_log[-4000:]
    assert squeue_fields(resumed.cancelled, "%T") == "CANCELLED"
    assert f"SLURM-job '{resumed.cancelled}' failed" in resumed.first_log, resumed.first_log[-4000:]
    assert not resumed.survivors, resumed.survivors
    assert not resumed.status_after_cancel
    assert resumed.last_after_cancel, "checkpoint_last.pt did not survive the cancelled job"

    # The second run: only the training, as a SLURM job, completed.
    log = resumed.second.check()
    subs = _completed(log)
    assert [s["rule"] for s in subs] == ["train"], subs
    assert subs[0]["slurm"] != resumed.cancelled

    run = cluster.workdir / RESUME_RUN
    history = (run / "checkpoints" / "train.log").read_text()
    assert (run / "train.log").read_text() == history  # --log holds every attempt
    attempts = history.split(ATTEMPT)
    assert len(attempts) == 3, [a[:200] for a in attempts]  # "" then two attempts
    killed, rerun = attempts[1], attempts[2]
    assert "done training" not in killed, "the first attempt was not cut short"
    per_epoch = _first_epoch(killed)[1]
    loaded = LOADED_RE.findall(rerun)
    assert len(loaded) == 1, rerun[-4000:]
    # (fairseq names the epoch it resumes in: the one after the checkpoint's)
    epoch, at = (int(x) for x in loaded[0])
    assert epoch >= 2 and at == (epoch - 1) * per_epoch, (loaded, per_epoch)
    assert at <= max(_updates(killed))
    # The update count continues where the checkpoint left it, up to the same total
    # as an uninterrupted run.
    assert _updates(rerun)[0] == at + 1, _updates(rerun)[:5]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed", status
    assert status["epochs"] == RESUME_EPOCHS
    assert status["num_updates"] == RESUME_EPOCHS * per_epoch, (status, per_epoch)


# --- 2 CPU ranks inside one SLURM job ------------------------------------------------


def test_cpu_data_parallel_two_ranks_in_a_slurm_job(
    cluster: Cluster, demo: Run, resumed: Resumed
) -> None:
    log = demo.check()
    trains = [s for s in _completed(log) if s["rule"] == "train"]
    assert len(trains) == 1 and "demo_admin_2-2_1" in trains[0]["log"], trains
    run = cluster.workdir / ADMIN_RUN
    probe = cluster.base / "probe"

    # world size 2: torchrun started two gloo ranks inside the job
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["world_size"] == 2, status
    train_log = (run / "train.log").read_text()
    assert "torch.distributed.run" in train_log.splitlines()[0]
    assert "training on 2 devices" in train_log
    assert "distributed init (rank 0)" in train_log and "distributed init (rank 1)" in train_log
    # the job's 2 CPUs are shared by the 2 ranks (each with 2 threads, gloo crawls)
    assert re.search(r"OMP_NUM_THREADS=1 \S+ -m admin\.train .*--nproc-per-node 2\b", log)

    # Both ranks start from the profile's omegas, identically.
    omegas = [json.loads((probe / f"omegas.rank{r}.json").read_text()) for r in (0, 1)]
    assert omegas[0] and omegas[0] == omegas[1]
    profile = profiling.read_profile(run / "profile.json")
    for stack, per_layer in (("encoder", 2), ("decoder", 3)):
        want = profile.stack(stack).omegas
        assert len(want) == 2 * per_layer
        for layer in range(2):
            for i, row in enumerate(omegas[0][f"{stack}.layers.{layer}.omega"]):
                assert row == pytest.approx([want[layer * per_layer + i]] * len(row))

    # Effective batch: each update sees both ranks' batches, so twice the sentences and
    # half the updates of the single-process epoch of the same data and max_tokens (the
    # resumed run's first epoch).
    history = (cluster.workdir / RESUME_RUN / "checkpoints" / "train.log").read_text()
    one_bsz, one_updates = _first_epoch(history)
    two_bsz, two_updates = _first_epoch(train_log)
    assert two_updates == math.ceil(one_updates / 2), (one_updates, two_updates)
    assert two_bsz * two_updates == pytest.approx(one_bsz * one_updates, rel=0.01)
    assert two_bsz == pytest.approx(2 * one_bsz, rel=1 / one_updates), (one_bsz, two_bsz)

    # One set of checkpoints, written by rank 0 only.
    # (the ranks run in the job's working directory: relative paths are under it)
    save_dir = run / "checkpoints"
    writes = [
        [cluster.workdir / p for p in (probe / f"writes.rank{r}.txt").read_text().splitlines()]
        for r in (0, 1)
    ]
    assert any(save_dir in p.parents and p.suffix == ".pt" for p in writes[0]), writes[0]
    assert not [p for p in writes[1] if save_dir in p.parents], writes[1]
    assert {p.name for p in (run / "checkpoints").glob("*.pt")} == {
        "checkpoint1.pt", "checkpoint_last.pt",  # checkpoint_best.pt is never kept
    }  # fmt: skip
