"""Local GPU leasing through the real steps: ``python -m admin.train``, ``admin.profile_run``
and ``admin.evaluate`` started as concurrent processes on the tiny data-bin, on a
simulated GPU server (``ADMIN_GPU_POOL``) with a lock folder of the test's own.  They
compute on the CPU (``--device cpu``) while holding their simulated devices.

Each job's log says which devices it leased and released, with the time; a job killed
by SIGKILL says nothing more, and its end is the moment the test saw it die."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from tests import steps_support
from tests.conftest import REPO
from tests.steps_support import ok, profile_args, run_step, step_cmd, step_env, train_args

GENERATE = json.dumps({"beam": 2, "max_len_b": 20, "batch_size": 16})
_LEASED = re.compile(r"devices (\S+) leased from pool .* at (\S+) after")
_RELEASED = re.compile(r"devices (\S+) released at (\S+)")


@dataclass
class Job:
    name: str
    proc: subprocess.Popen
    log: Path
    ended: float | None = None  # when the test saw it exit (epoch seconds)

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def held(self) -> tuple[frozenset[str], float, float]:
        """(devices, leased at, released at): the release from its log, else its end."""
        text = self.text()
        leased = _LEASED.search(text)
        assert leased, f"{self.name} leased nothing:\n{text[-3000:]}"
        released = _RELEASED.search(text)
        end = _epoch(released[2]) if released else self.ended
        assert end is not None, self.name
        return frozenset(leased[1].split(",")), _epoch(leased[2]), end


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def pool_env(tmp_path: Path) -> dict[str, str]:
    """A simulated server of three GPUs, polled often so that the tests stay short."""
    return step_env(
        ADMIN_GPU_POOL="0,1,2",
        ADMIN_GPU_LOCK_DIR=str(tmp_path / "locks"),
        ADMIN_GPU_POLL_SECONDS="0.2",
    )


def start(name: str, module: str, args: list[Any], env: dict[str, str], logs: Path) -> Job:
    log = logs / f"{name}.log"
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(
            step_cmd(module, *args), cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    return Job(name, proc, log)


def wait_all(jobs: list[Job], timeout: float = 900) -> None:
    deadline = time.time() + timeout
    while any(job.ended is None for job in jobs):
        for job in jobs:
            if job.ended is None and job.proc.poll() is not None:
                job.ended = time.time()
        if time.time() > deadline:
            for job in jobs:
                job.proc.kill()
            pytest.fail("the jobs did not finish in time")
        time.sleep(0.05)


def wait_for(job: Job, pattern: str, log: Path | None = None, timeout: float = 300) -> None:
    """Until ``pattern`` appears in ``log`` (default: the job's own output)."""
    log = log or job.log
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.is_file() and re.search(pattern, log.read_text(errors="replace")):
            return
        assert job.proc.poll() is None, f"{job.name} exited:\n{job.text()[-3000:]}"
        time.sleep(0.05)
    pytest.fail(f"{job.name} never logged {pattern!r} in {log}:\n{job.text()[-3000:]}")


@pytest.fixture(scope="module")
def averaged_run(tiny_databin, tmp_path_factory) -> Path:
    """The trained tiny Admin run, averaged: what admin.evaluate reads."""
    run = steps_support.trained_admin_run(tiny_databin, tmp_path_factory)
    if not (run / "average.json").is_file():
        ok(run_step(
            "average", "--checkpoints", run / "checkpoints", "--status", run / "status.json",
            "--last", 3, "--out", run / "average.json",
        ))  # fmt: skip
    return run


@pytest.mark.slow
def test_concurrent_steps_never_share_a_device(tiny_databin, averaged_run, pool_env, tmp_path):
    """Five devices asked of three: a 2-rank training, a 1-rank training, a profiling run
    and an evaluation start together.  Whoever cannot get its devices waits, saying so;
    no two jobs hold a device at the same time; each training's ranks see its devices."""
    logs, results = tmp_path / "logs", tmp_path / "results" / "tiny"
    logs.mkdir()
    probe = tmp_path / "probe"
    # the rank probe records what each rank of the 2-rank training sees
    probe_path = f"{REPO / 'tests' / 'rank_probe'}:{pool_env['PYTHONPATH']}"
    probe_env = {**pool_env, "ADMIN_RANK_PROBE_DIR": str(probe), "PYTHONPATH": probe_path}
    two = results / "postln" / "2-2" / "seed1"
    one = results / "preln" / "2-2" / "seed1"
    eval_out = tmp_path / "evaluated"
    eval_out.mkdir()
    jobs = [
        start("train-2", "train", train_args(tiny_databin, two, "postln", "--nproc-per-node", 2,
                                             world=2, max_epoch=2), probe_env, logs),
        start("train-1", "train", train_args(tiny_databin, one, "preln", max_epoch=2),
              pool_env, logs),
        start("profile", "profile_run",
              profile_args(tiny_databin, results / "admin" / "2-2" / "seed1" / "profile.json"),
              pool_env, logs),
        start("evaluate", "evaluate", [
            "--data-bin", tiny_databin, "--average", averaged_run / "average.json",
            "--hparams", GENERATE, "--device", "cpu", "--out-dir", eval_out,
            "--scores", eval_out / "scores.json", "--keep-checkpoints", "all",
        ], pool_env, logs),
    ]  # fmt: skip
    wait_all(jobs)
    for job in jobs:
        assert job.proc.returncode == 0, f"{job.name}:\n{job.text()[-4000:]}"
    held = {job.name: job.held() for job in jobs}
    origin = min(begin for _, begin, _ in held.values())
    print("\njob       devices  leased (s)  released (s)")
    for name, (devices, begin, end) in sorted(held.items(), key=lambda kv: kv[1][1]):
        print(f"{name:9} {','.join(sorted(devices)):8} {begin - origin:10.2f} {end - origin:12.2f}")

    assert len(held["train-2"][0]) == 2
    assert all(len(devices) == 1 for name, (devices, _, _) in held.items() if name != "train-2")
    assert set().union(*(devices for devices, _, _ in held.values())) <= {"0", "1", "2"}
    overlapping = 0
    for (a, (da, sa, ea)), (b, (db, sb, eb)) in combinations(held.items(), 2):
        if sa < eb and sb < ea:  # their leases overlapped in time
            overlapping += 1
            assert not da & db, f"{a} and {b} held {sorted(da & db)} at the same time"
    assert overlapping >= 2, held  # the jobs really ran side by side
    # five devices of three: someone waited, and said who held what
    waiting = [job for job in jobs if "waiting for 1 of pool 0,1,2 (ADMIN_GPU_POOL)" in job.text()
               or "waiting for 2 of pool 0,1,2 (ADMIN_GPU_POOL)" in job.text()]  # fmt: skip
    assert waiting, "nobody waited"
    assert re.search(r"\d held by pid \d+ on \S+ \(admin\.\w+ ", waiting[0].text())
    # the status and the training's log record the devices, and the ranks saw them
    for name, run in (("train-2", two), ("train-1", one)):
        status = json.loads((run / "status.json").read_text())
        assert status["status"] == "completed"
        assert frozenset(status["devices"]) == held[name][0]
        assert (
            f"admin.train: devices {','.join(status['devices'])} leased"
            in (run / "train.log").read_text()
        )
    ranks = steps_support.probe_folder(probe, two)
    for rank in (0, 1):
        seen = json.loads((ranks / f"cpus.rank{rank}.json").read_text())
        assert frozenset(seen["cuda_visible_devices"].split(",")) == held["train-2"][0]
    assert json.loads((eval_out / "scores.json").read_text())["num_sentences"] == 60


@pytest.mark.slow
def test_a_killed_jobs_devices_go_to_the_next_waiter(tiny_databin, pool_env, tmp_path):
    env = {**pool_env, "ADMIN_GPU_POOL": "0"}
    logs, results = tmp_path / "logs", tmp_path / "results" / "tiny"
    logs.mkdir()
    # a training far longer than the test: it holds device 0 until it is killed
    run = results / "postln" / "2-2" / "seed1"
    killed = start("train", "train", train_args(tiny_databin, run, "postln", max_epoch=500),
                   env, logs)  # fmt: skip
    try:
        wait_for(killed, r"devices 0 leased")
        wait_for(killed, r"\| epoch 001", log=run / "train.log")  # fairseq is training on it
        ranks = _children(killed.proc.pid)
        assert ranks, "no fairseq process under the training step"
        profile_json = results / "admin" / "2-2" / "seed1" / "profile.json"
        waiter = start("profile", "profile_run", profile_args(tiny_databin, profile_json), env,
                       logs)  # fmt: skip
        wait_for(waiter, rf"waiting for 1 of pool 0 \(ADMIN_GPU_POOL\): 0 free, 0 held by pid "
                         rf"{killed.proc.pid} on \S+ \(admin\.train ")  # fmt: skip
        killed.proc.send_signal(signal.SIGKILL)
        killed.proc.wait(timeout=30)
        killed.ended = time.time()
        wait_all([waiter])
    finally:
        killed.proc.kill()
    assert killed.proc.returncode == -signal.SIGKILL
    assert waiter.proc.returncode == 0, waiter.text()[-4000:]
    devices, leased, _ = waiter.held()
    assert devices == {"0"} and leased >= killed.ended - 0.5
    print(f"\ntrain killed at {killed.ended:.2f}; profile leased device 0 at {leased:.2f}")
    assert profile_json.is_file()
    # the killed step's fairseq process did not outlive it (SIGTERM on its parent's death)
    deadline = time.time() + 60
    while any(Path(f"/proc/{pid}").exists() for pid in ranks) and time.time() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in ranks if Path(f"/proc/{pid}").exists()]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_more_devices_than_the_pool_stops_before_any_work(tiny_databin, pool_env, tmp_path):
    run = tmp_path / "results" / "tiny" / "postln" / "2-2" / "seed1"
    proc = run_step("train", *train_args(tiny_databin, run, "postln", "--nproc-per-node", 4,
                                         world=4), env=pool_env)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(
        "error: this step needs 4 GPUs but the pool has 3: 0,1,2 (ADMIN_GPU_POOL); "
    )
    # nothing ran: the folder holds only its recipe, no lock file was taken
    assert sorted(p.name for p in run.iterdir()) == ["recipe.json"]
    assert not (tmp_path / "locks").exists()
