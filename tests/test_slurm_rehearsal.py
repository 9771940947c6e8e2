"""The paper's plan rehearsed on the local two-node SLURM cluster, through
``--profile slurm`` and a user's own cluster profile, and the fault drills.

The rehearsal is ``paper_wmt14_en_fr --config rehearsal=true`` (the table that holds the
two-node 60L-12L runs), with the presets' requests fitted to the local nodes
(``tests.slurm_support.local_cluster_config``: 2 GPUs per node, the presets' node counts).
The nodes declare GPUs as GRES but have none, so every rank runs on the CPU
(``--device auto``).  Two faults are injected while it runs, each into one of its two-node
trainings after that run's first mid-epoch checkpoint (a two-node training holds every
CPU of both nodes, so no other job is on them):

* the Post-LN training job is cancelled (a preemption): the rule's retry resumes it;
* a node is set DOWN under the Pre-LN training: SLURM requeues the job, and it resumes
  from its checkpoint.

While it runs, ``python -m admin.status`` follows it: every job the status names is the
one squeue lists for that run, in this workflow's folder, and once it is done every run is
scored with its files' numbers.

A drill then trains a run outside the table's matrix (seed 7, more epochs) in the same
folder: Snakemake killed on the submit host while its training job runs, then started
again: the new training job stops at once on the run's lock (no second trainer), the
first one is then killed by its SLURM time limit mid-epoch, and a third run resumes it
from its mid-epoch checkpoint (taking the stale lock over) and completes the table.

Needs the two-node cluster (``bash scripts/slurm-local-cluster.sh start``); fails without
one when ADMIN_REQUIRE_SLURM=1 (CI).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from admin import budget
from admin.status import load
from tests.slurm_support import (
    REPO,
    SNAKEMAKE,
    cancel_run_jobs,
    job_stats,
    local_cluster,
    run_snakemake,
    snakemake_env,
    squeue_fields,
    submissions,
    workflow_rules,
)
from tests.slurm_support import LocalCluster as Cluster
from tests.steps_support import probe_folder
from tests.test_status import hours_rows, run_rows, status

pytestmark = pytest.mark.slow

PROBE = REPO / "tests" / "rank_probe"
DATASET = "wmt14_en_fr"
RESULTS = Path("rehearsal") / "results" / DATASET
TWO_NODE_RUN = RESULTS / "postln" / "60-12" / "seed1111"
NODE_DOWN_RUN = RESULTS / "preln" / "60-12" / "seed1111"  # the node failure's run
ATTEMPT = "==== admin.train attempt"
TARGET = "paper_wmt14_en_fr"
# a run's state in admin.status while one of its SLURM jobs is queued or running
JOB_STATE = re.compile(r"^(training|queued|profiling) \(job (\d+)(, profile)?\)$")
STATUS_EVERY = 10.0  # seconds between the status polls (each costs ~1.5 CPU-s)
LOADED_RE = re.compile(r"Loaded checkpoint \S+ \(epoch (\d+) @ (\d+) updates\)")


@dataclass
class Run:
    rc: int
    log: str
    seconds: float

    def check(self) -> str:
        assert self.rc == 0, self.log[-8000:]
        return self.log


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    return local_cluster(tmp_path_factory.mktemp("slurm_rehearsal"))


def _args(cluster: Cluster, *targets: str, config: Sequence[str] = ()) -> list[str]:
    """A rehearsal of ``targets``, with more --config items."""
    return cluster.args(*targets, config=["rehearsal=true", *config])


def _start(cluster: Cluster, args: list[str], log: Path, env: dict[str, str] | None = None):
    handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed by _finish
    proc = subprocess.Popen(
        [*SNAKEMAKE, *args], cwd=REPO, env=snakemake_env(env), stdout=handle,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    proc.log_handle = handle  # type: ignore[attr-defined]
    return proc


def _finish(proc: subprocess.Popen, log: Path, t0: float, timeout: float) -> Run:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.log_handle.close()  # type: ignore[attr-defined]
    text = log.read_text()
    if proc.returncode != 0:
        cancel_run_jobs(text)
    return Run(proc.returncode, text, time.monotonic() - t0)


def _train_job(log: Path, run: Path) -> str | None:
    """The SLURM job id of the newest job training ``run`` in a Snakemake log: its own
    train job (training on two nodes) or the run's group job holding its train step."""
    variant, depth, seed = run.parts[-3], run.parts[-2], run.parts[-1].removeprefix("seed")
    wildcards = f"{DATASET}_{variant}_{depth}_{seed}"
    jobs = [
        s["slurm"] for s in submissions(log.read_text())
        if f"/rule_train/{wildcards}/" in s["log"]
        or (f"/group_run_{wildcards}_" in s["log"] and "train" in _kind_of(s).split("_"))
    ]  # fmt: skip
    return jobs[-1] if jobs else None


def _wait(
    predicate: Any, timeout: float, what: str, proc: subprocess.Popen | None = None,
    interval: float = 0.5,
):  # fmt: skip
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- the rehearsal ------------------------------------------------------------------


@dataclass
class Followed:
    """What ``admin.status`` said while the rehearsal ran, and once it was done."""

    # (run, state, job, squeue's comment and workdir)
    seen: list[tuple[str, ...]] = field(default_factory=list)
    sample: str = ""  # the status while a run trained, with progress if it was seen
    progress: dict[str, list[int]] = field(default_factory=dict)  # updates seen, per run
    errors: list[str] = field(default_factory=list)
    done: str = ""


@dataclass
class Rehearsal:
    run: Run
    probe: Path
    cancelled: str
    requeued: str
    status: Followed


@pytest.fixture(scope="module")
def rehearsal(cluster: Cluster) -> Rehearsal:
    probe = cluster.base / "probe"
    probe.mkdir()
    log = cluster.base / "rehearsal.log"
    t0 = time.monotonic()
    env = {"PYTHONPATH": _with_probe(), "ADMIN_RANK_PROBE_DIR": str(probe)}
    proc = _start(cluster, _args(cluster, TARGET), log, env=env)
    cancelled: list[str] = []

    def mid_epoch_job(run: Path, timeout: float) -> str:
        """The SLURM job training ``run``, once the run has its first mid-epoch checkpoint."""
        run_dir = cluster.workdir / run
        _wait(lambda: list((run_dir / "checkpoints").glob("checkpoint_1_*.pt")), timeout,
              f"the first mid-epoch checkpoint of {run}", proc, interval=0.1)  # fmt: skip
        job = _train_job(log, run_dir)
        assert job is not None, f"no training job of {run} in the log"
        return job

    def preempt() -> None:
        """scancel the two-node Post-LN training after its first mid-epoch checkpoint."""
        try:
            job = mid_epoch_job(TWO_NODE_RUN, 900)
            subprocess.run(["scancel", job], check=True, timeout=30)
            cancelled.append(job)
        except AssertionError as err:
            cancelled.append(f"not cancelled: {err}")

    requeued: list[str] = []

    def node_failure() -> None:
        """Set node n2 DOWN under the two-node Pre-LN training after its first mid-epoch
        checkpoint, until SLURM has requeued the job; then bring the node back."""
        try:
            job = mid_epoch_job(NODE_DOWN_RUN, 1200)
            subprocess.run(["scontrol", "update", "NodeName=n2", "State=DOWN",
                            "Reason=drill"], check=True, timeout=30)  # fmt: skip
            _wait(lambda: squeue_fields(job, "%T") in ("PENDING", "REQUEUED"), 120,
                  "the job to be requeued")  # fmt: skip
            requeued.append(job)
        except AssertionError as err:
            requeued.append(f"not requeued: {err}")
        finally:
            subprocess.run(["scontrol", "update", "NodeName=n2", "State=RESUME"], timeout=30)

    followed = Followed()

    def follow() -> None:
        """Poll the status while Snakemake runs; note each job it names with squeue's
        comment and working directory of that job."""
        while proc.poll() is None:
            try:
                out = _status(cluster)
                for run, row in run_rows(out).items():
                    m = JOB_STATE.match(row["state"])
                    if not m:
                        continue
                    fields = squeue_fields(m[2], "%k|%Z").split("|")
                    followed.seen.append((run, row["state"], m[2], *fields))
                    if m[1] == "training" and (row["update"] != "—" or not followed.sample):
                        followed.sample = out
                    if m[1] == "training" and row["update"] != "—":
                        followed.progress.setdefault(run, []).append(int(row["update"]))
            except (AssertionError, subprocess.SubprocessError) as err:
                followed.errors.append(str(err)[-3000:])
            time.sleep(STATUS_EVERY)

    watchers = [threading.Thread(target=f, daemon=True) for f in (preempt, node_failure, follow)]
    for watcher in watchers:
        watcher.start()
    run = _finish(proc, log, t0, timeout=1500)
    for watcher in watchers:
        watcher.join(timeout=130)
    followed.done = _status(cluster)
    print(f"\nrehearsal of {TARGET}: {len(submissions(run.log))} SLURM jobs in "
          f"{run.seconds:.0f} s")  # fmt: skip
    return Rehearsal(run, probe, cancelled[0] if cancelled else "watcher did not finish",
                     requeued[0] if requeued else "watcher did not finish",
                     followed)  # fmt: skip


def _status(cluster: Cluster) -> str:
    """``python -m admin.status`` of the rehearsal, as a user runs it beside Snakemake."""
    return status(TARGET, workdir=cluster.workdir, configfile=cluster.configfiles,
                  config=["rehearsal=true"])  # fmt: skip


def _with_probe() -> str:
    """PYTHONPATH with the rank probe first (and whatever the tests run with)."""
    return os.pathsep.join(p for p in (str(PROBE), os.environ.get("PYTHONPATH", "")) if p)


def _kind_of(sub: dict[str, str]) -> str:
    """A submission's rule, or ``group:<its steps>`` for a run's group job (its SLURM log
    folder is group_run_<dataset>_<variant>_<depth>_<seed>_<steps, sorted, joined by _>)."""
    m = re.search(r"/slurm_logs/rule_([A-Za-z0-9_]+)/", sub["log"])
    if m:
        return m.group(1)
    m = re.search(r"/slurm_logs/group_run_[^/]*?_((?:average|evaluate|train)(?:_\w+)?)/",
                  sub["log"])  # fmt: skip
    return f"group:{m.group(1)}" if m else "?"


def test_rehearsal_runs_the_whole_table_apart_and_marked(cluster: Cluster, rehearsal: Rehearsal):
    log = rehearsal.run.check()
    assert rehearsal.cancelled.isdigit(), rehearsal.cancelled
    out = cluster.workdir / RESULTS
    table = json.loads((out / "table.json").read_text())
    assert table["rehearsal"] is True
    assert table["variants"] == ["postln", "preln", "admin"] and table["depths"] == ["6-6", "60-12"]
    for variant in table["variants"]:
        for depth in table["depths"]:
            assert table["cells"][variant][depth]["n"] == 1, (variant, depth, table["cells"])
    assert "REHEARSAL, not a reproduction" in (out / "table.md").read_text()
    header = next(csv.reader((out / "table.csv").read_text().splitlines()))
    assert header[0] == "variant (REHEARSAL, not a reproduction)"
    for png in ("bleu_vs_depth.png", "curves_6-6.png", "curves_60-12.png"):
        assert (out / png).stat().st_size > 0
    assert not (cluster.workdir / "results").exists()  # real results are never touched

    # Every job but the local ones went through sbatch and completed, once; the cancelled
    # training ran a second time (the rule's retry).  A run is one SLURM job (its train,
    # average and evaluate steps), except that a two-node training is a job of its own
    # beside the run's average and evaluate job.
    subs = submissions(log)
    _, local = workflow_rules()
    planned = {rule: n for rule, n in job_stats(log).items() if rule not in local}
    submitted: dict[str, int] = {}
    for sub in subs:
        kind = _kind_of(sub)
        submitted[kind] = submitted.get(kind, 0) + 1
        state = squeue_fields(sub["slurm"], "%T")
        assert state == ("CANCELLED" if sub["slurm"] == rehearsal.cancelled else "COMPLETED"), (
            sub, state)  # fmt: skip
    assert planned["train"] == planned["average"] == planned["evaluate"] == 6
    assert planned["profile"] == 2
    expected = {rule: n for rule, n in planned.items() if rule not in ("train", "average",
                                                                      "evaluate")}  # fmt: skip
    expected.update({"group:average_evaluate_train": 3, "train": 3 + 1,
                     "group:average_evaluate": 3})  # fmt: skip
    assert submitted == expected, (submitted, planned)
    print(f"\n{len(subs)} sbatch jobs for {sum(planned.values())} SLURM-side steps")


def _job_field(job: str, name: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True,
                         text=True, check=True, timeout=30).stdout  # fmt: skip
    m = re.search(rf"(?:^|\s){name}=(\S*)", out)
    return m[1] if m else ""


def test_gpu_shaped_requests_scheduled_on_the_nodes_gres(cluster: Cluster, rehearsal: Rehearsal):
    """The preset's nodes and GPUs per node, as GRES the scheduler places; G processes per
    node on the CPU (the local GPUs are only GRES)."""
    log = rehearsal.run.check()
    shapes = {}
    for sub in submissions(log):
        kind = _kind_of(sub)
        if kind in ("train", "group:average_evaluate_train"):
            depth = "60-12" if "_60-12_" in sub["log"] else "6-6"
            shapes.setdefault((kind, depth), set()).add((
                _job_field(sub["slurm"], "NumNodes"), _job_field(sub["slurm"], "TresPerNode"),
                _job_field(sub["slurm"], "TresPerJob")))  # fmt: skip
        if kind in ("profile", "group:average_evaluate"):
            assert _job_field(sub["slurm"], "TresPerJob") == "gres:gpu:1", sub
    # one node: the run's job asks the node's 2 GPUs in total (--gpus=2); two nodes:
    # 2 per node (--gres=gpu:2), the training alone
    assert shapes == {
        ("group:average_evaluate_train", "6-6"): {("1", "", "gres:gpu:2")},
        ("train", "60-12"): {("2", "gres:gpu:2", "")},
    }, shapes  # fmt: skip

    folder = probe_folder(rehearsal.probe, cluster.workdir / TWO_NODE_RUN)
    ranks = [json.loads((folder / f"cpus.rank{r}.json").read_text()) for r in range(4)]
    nodes = sorted(r["slurmd_nodename"] for r in ranks)
    assert nodes == ["n1", "n1", "n2", "n2"], ranks  # 2 nodes x 2 processes
    status = json.loads((cluster.workdir / TWO_NODE_RUN / "status.json").read_text())
    assert status["world_size"] == 4
    assert "no GPU visible to torch" in (cluster.workdir / TWO_NODE_RUN / "train.log").read_text()


def test_each_rank_gets_its_share_of_its_nodes_cpus(cluster: Cluster, rehearsal: Rehearsal):
    """Binding is enforced on the cluster: each node's two ranks split its 2 CPUs, one each,
    with one torch thread; both see the node's two GPUs."""
    rehearsal.run.check()
    for run in (TWO_NODE_RUN, RESULTS / "admin" / "6-6" / "seed1111"):
        folder = probe_folder(rehearsal.probe, cluster.workdir / run)
        ranks = [json.loads(p.read_text()) for p in sorted(folder.glob("cpus.rank*.json"))]
        assert len(ranks) == (4 if "60-12" in str(run) else 2), (run, ranks)
        by_node: dict[str, list[list[int]]] = {}
        for rank in ranks:
            assert rank["torch_threads"] == 1 and rank["omp_num_threads"] == "1", rank
            assert rank["cuda_visible_devices"] == "0,1", rank
            by_node.setdefault(rank["slurmd_nodename"], []).append(rank["affinity"])
        for node, masks in by_node.items():
            assert sorted(masks) == [[0], [1]], (run, node, masks)


def test_checkpoints_are_written_by_rank_0_only(cluster: Cluster, rehearsal: Rehearsal):
    rehearsal.run.check()
    folder = probe_folder(rehearsal.probe, cluster.workdir / TWO_NODE_RUN)
    save_dir = cluster.workdir / TWO_NODE_RUN / "checkpoints"
    writes = [
        [cluster.workdir / p for p in (folder / f"writes.rank{r}.txt").read_text().splitlines()]
        for r in range(4)
    ]
    assert any(save_dir in p.parents and p.suffix == ".pt" for p in writes[0]), writes[0]
    for rank in (1, 2, 3):
        assert not [p for p in writes[rank] if save_dir in p.parents], (rank, writes[rank])


def test_a_cancelled_two_node_training_resumes(cluster: Cluster, rehearsal: Rehearsal):
    """The preemption: scancel after the first mid-epoch checkpoint; the retry continues
    the update count from it, on both nodes again."""
    rehearsal.run.check()
    history = (cluster.workdir / TWO_NODE_RUN / "train.log").read_text()
    attempts = history.split(ATTEMPT)[1:]
    assert len(attempts) == 2, [a[:300] for a in attempts]
    loaded = LOADED_RE.findall(attempts[1])
    assert len(loaded) == 1, attempts[1][-3000:]
    epoch, at = (int(x) for x in loaded[0])
    assert at >= 4, loaded
    updates = [int(n) for n in re.findall(r"num_updates=(\d+)", attempts[1])]
    assert updates[0] == at + 1, updates[:5]
    assert "training on 4 devices" in attempts[1]
    status = json.loads((cluster.workdir / TWO_NODE_RUN / "status.json").read_text())
    assert status["status"] == "completed" and status["num_updates"] == max(updates)


def test_status_follows_the_rehearsal(cluster: Cluster, rehearsal: Rehearsal):
    """``admin.status`` beside the running rehearsal: every job it names is the one
    squeue lists for that run's profiling, its training (a two-node run's own train job)
    or its group job (train, average and evaluate), in this workflow's folder, and the one
    Snakemake submitted for it.  Once done: every run scored, with its files' numbers."""
    text = rehearsal.run.check()
    followed = rehearsal.status
    assert not followed.errors, followed.errors
    print(f"\nthe status while a run trained on SLURM:\n{followed.sample}")
    assert any(state.startswith("training (job ") for _, state, *_ in followed.seen), followed.seen
    submitted = {s["slurm"]: s["log"] for s in submissions(text)}
    for run, state, job, comment, where in followed.seen:
        variant, depth, seed = run.replace("seed", "").split()
        wildcards = f"{DATASET}_{variant}_{depth}_{seed}"
        m = JOB_STATE.match(state)
        assert m is not None, state
        if m[1] == "profiling" or m[3]:
            rule, logged = f"profile_wildcards_{wildcards}", f"/rule_profile/{wildcards}/"
        elif depth == "60-12":  # a two-node training is a job of its own
            rule, logged = f"train_wildcards_{wildcards}", f"/rule_train/{wildcards}/"
        else:  # the run's one job: its train, average and evaluate steps
            group = f"run_{wildcards}_average_evaluate_train"
            rule, logged = group, f"/group_{group}/"
        assert comment == f"rule_{rule}", (run, state, comment)
        assert os.path.realpath(where) == os.path.realpath(cluster.workdir)
        assert f"{logged}{job}.log" in submitted.get(job, ""), (job, submitted)

    out = followed.done
    assert "SLURM: 0 jobs of this workflow in squeue" in out
    rows = run_rows(out)
    assert sorted(rows) == sorted(f"{v} {d} seed1111" for v in ("postln", "preln", "admin")
                                  for d in ("6-6", "60-12"))  # fmt: skip
    cfg, prefix = load(cluster.configfiles, ["rehearsal=true"])
    stop = cfg["experiments"][DATASET]["hparams"]["max_epoch"]
    for run, row in rows.items():
        variant, depth, seed = run.replace("seed", "").split()
        folder = cluster.workdir / RESULTS / variant / depth / f"seed{seed}"
        done = json.loads((folder / "status.json").read_text())
        bleu = json.loads((folder / "scores.json").read_text())["bleu_tokenized"]
        assert row["state"] == f"scored: BLEU {bleu:.2f}", row
        assert row["epoch"] == f"{done['epochs']}/{stop}" and row["update"] == str(
            done["num_updates"])  # fmt: skip
        assert float(row["GPU-hours"]) > 0  # GPUs (GRES) per train job
        # seen while training: never past where the run ended, and never backwards within
        # one attempt (the two runs hit by a fault resume from a checkpoint behind it)
        seen_updates = followed.progress.get(run, [])
        assert all(0 < u <= done["num_updates"] for u in seen_updates), (run, seen_updates)
        if len(_attempts(folder)) == 1:
            assert seen_updates == sorted(seen_updates), (run, seen_updates)
    hours = hours_rows(out)[DATASET]
    priced = budget.runs(cfg, DATASET, cluster.workdir / prefix / "resources")
    estimate = sum(r.plan.gpu_hours(budget.Hardware()) for r in priced)
    assert hours["finished"] == "6" and hours["estimate"] == budget.num(estimate)


# --- fault drills ---------------------------------------------------------------------


def _processes(workdir: Path, run: Path, needle: str = "admin.") -> list[int]:
    """Live processes of ``run``'s training (admin.train and its ranks), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = (entry / "cwd").resolve()
        except OSError:
            continue
        if cwd == workdir.resolve() and needle in cmdline and str(run) in cmdline:
            found.append(int(entry.name))
    return found


def _elapsed(job: str) -> int:
    """Seconds a job has run (squeue's %M: [D-][H:]M:SS)."""
    text = squeue_fields(job, "%M")
    days, _, clock = text.rpartition("-")
    seconds = 0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds + int(days or 0) * 86400


def _attempts(run_dir: Path) -> list[str]:
    return (run_dir / "checkpoints" / "train.log").read_text().split(ATTEMPT)[1:]


@dataclass
class KilledDrill:
    job: str
    refused: str
    second: Run
    third: Run
    run_dir: Path


@pytest.fixture(scope="module")
def killed_snakemake(cluster: Cluster, rehearsal: Rehearsal) -> KilledDrill:
    """Snakemake killed while its training job runs; started again while that job still
    holds the run; the job then killed by its SLURM time limit mid-epoch; started again."""
    run = RESULTS / "postln" / "2-2" / "seed7"
    run_dir = cluster.workdir / run
    config = ["variants=[postln]", "depths=[2-2]", "seeds=[7]", "rehearsal_settings={epochs: 10}"]
    args = _args(cluster, "paper_wmt14_en_fr", config=config)
    first_log = cluster.base / "killed-first.log"
    first = _start(cluster, args, first_log)
    stopped: list[int] = []
    try:
        # Polled tightly: the tiny run saves every 4 updates and ends its epoch at 12 in
        # well under a second; a half-second poll once let it reach the epoch's end, and
        # the drill then resumed from the epoch checkpoint, not a mid-epoch one.
        _wait(lambda: list((run_dir / "checkpoints").glob("checkpoint_*_*.pt")), 900,
              "a mid-epoch checkpoint of the drill's run", first, interval=0.02)  # fmt: skip
        # Freeze the trainer right there (it still holds the run), then kill Snakemake.
        stopped = _processes(cluster.workdir, run)
        assert stopped, "no training process found"
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        job = _train_job(first_log, run_dir)
        assert job and squeue_fields(job, "%T") == "RUNNING", job
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        unlock = run_snakemake([*args, "--unlock"], cwd=REPO, timeout=300)
        assert unlock.returncode == 0, unlock.stderr[-3000:]

        t0 = time.monotonic()
        second = run_snakemake(args, cwd=REPO, timeout=900)
        second_run = Run(second.returncode, second.stdout + second.stderr,
                         time.monotonic() - t0)  # fmt: skip
        refused = (cluster.workdir / "rehearsal" / "logs" / DATASET / "postln" / "2-2" /
                   "seed7" / "train.log").read_text()  # fmt: skip

        # The SLURM time limit ends the frozen first job, mid-epoch.
        _wait(lambda: _elapsed(job) >= 60, 120, "a minute of the first job")
        subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=1"], check=True,
                       timeout=30)  # fmt: skip
        _wait(lambda: squeue_fields(job, "%T") == "TIMEOUT", 180, "the job's time limit")
        t0 = time.monotonic()
        third = _finish(_start(cluster, args, cluster.base / "killed-third.log"),
                        cluster.base / "killed-third.log", t0, timeout=900)  # fmt: skip
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        first.log_handle.close()  # type: ignore[attr-defined]
    return KilledDrill(job, refused, second_run, third, run_dir)


def test_no_second_trainer_while_a_run_is_held(killed_snakemake: KilledDrill):
    drill = killed_snakemake
    # The restarted Snakemake's training job stopped at once, naming the holder.
    assert drill.second.rc != 0
    assert "another trainer is working on" in drill.refused, drill.refused[-3000:]
    assert f"SLURM job {drill.job}" in drill.refused
    # One trainer in the history until the job's end: the first job's attempt, then the
    # resumed one; the refused attempts never touched the checkpoints or their history.
    attempts = _attempts(drill.run_dir)
    assert len(attempts) == 2, [a[:200] for a in attempts]


def test_a_time_limit_kill_resumes_from_the_mid_epoch_checkpoint(killed_snakemake: KilledDrill):
    drill = killed_snakemake
    log = drill.third.check()
    assert squeue_fields(drill.job, "%T") == "TIMEOUT"
    first, resumed = _attempts(drill.run_dir)
    saved = re.findall(r"Saved checkpoint \S+/checkpoint_(\d+)_(\d+)\.pt \(epoch", first)
    epoch, updates = (int(x) for x in saved[-1])
    loaded = LOADED_RE.findall(resumed)
    # fairseq resumes within the epoch it was in, at the mid-epoch checkpoint's update
    assert loaded == [(str(epoch), str(updates))], (loaded, saved)
    counts = [int(n) for n in re.findall(r"num_updates=(\d+)", resumed)]
    assert counts[0] == updates + 1
    # the resumed trainer took the killed job's lock over (said just before its attempt)
    history = (drill.run_dir / "checkpoints" / "train.log").read_text()
    takeover = re.search(r"^admin\.train: took over a stale lock of .*$", history, re.M)
    assert takeover and f"SLURM job {drill.job}," in takeover[0], history[-3000:]
    status = json.loads((drill.run_dir / "status.json").read_text())
    # all its epochs: the rehearsal's 10, within En-Fr's averaging window of 10
    assert status["status"] == "completed" and status["epochs"] == status["stop"]["max_epoch"] == 10
    table = json.loads((drill.run_dir.parents[2] / "table.json").read_text())
    assert table["cells"]["postln"]["2-2"]["n"] == 1  # the table is complete in the end
    assert "Nothing to be done" not in log


def test_a_node_failure_requeues_and_the_run_resumes(cluster: Cluster, rehearsal: Rehearsal):
    """n2 set DOWN under a two-node training: SLURM requeues the same job (no new
    submission: the rehearsal's job counts hold), and it resumes from its checkpoint on
    both nodes again."""
    rehearsal.run.check()
    assert rehearsal.requeued.isdigit(), rehearsal.requeued
    assert re.search(r"Restarts=[1-9]", subprocess.run(
        ["scontrol", "show", "job", rehearsal.requeued], capture_output=True, text=True,
        timeout=30).stdout)  # fmt: skip
    run_dir = cluster.workdir / NODE_DOWN_RUN
    attempts = _attempts(run_dir)
    assert len(attempts) == 2, [a[:200] for a in attempts]
    loaded = LOADED_RE.findall(attempts[1])
    assert loaded and int(loaded[0][1]) >= 4, attempts[1][-3000:]
    assert "training on 4 devices" in attempts[1]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed" and status["epochs"] == status["stop"]["max_epoch"] == 2
