"""What is running for a workflow now (``admin.status``): its SLURM jobs, as ``squeue``
lists them, and the training and profiling steps running on this machine.

snakemake-executor-plugin-slurm (2.8) names every job by the workflow run's uuid and
comments it ``rule_<rule>_wildcards_<values joined by _>``, the values in the order of
the rule's output pattern (``get_job_wildcards``): ``rule_train_wildcards_wmt14_en_de_
admin_6-6_1111`` for a run's training.  It submits with ``--chdir`` the workflow's
directory, so the jobs of this workflow are those whose working directory (``%Z``) is
it: another workflow of the same user (another checkout, a rehearsal elsewhere) is left
out.  One ``squeue`` call serves a whole refresh.

A run's train, average and evaluate steps go to SLURM as one group job
(:mod:`admin.common.job_requests`), which the plugin comments
``rule_<group>_<its rules, sorted, joined by _>`` (Snakemake's ``GroupJob.name``):
``rule_run_wmt14_en_de_admin_6-6_1111_average_evaluate_train``.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from admin.common import run_folder as rf
from admin.common.errors import AdminError
from admin.common.job_requests import RUN_STEPS, group_name

# The steps whose processes say a run is being worked on, and the option naming the run.
STEP_MODULES = {"admin.train": ("train", "--run-dir"), "admin.profile_run": ("profile", "--out")}
PENDING = "PENDING"
SQUEUE_FORMAT = "%i|%T|%M|%r|%Z|%k"  # the comment last: nothing after it to split off


@dataclass(frozen=True)
class Job:
    job_id: str
    state: str  # squeue's %T: PENDING, RUNNING, COMPLETING, ...
    elapsed: str  # %M: [days-]hours:minutes:seconds since it started
    reason: str  # %r: why it pends (Resources, Priority, ...)
    comment: str

    @property
    def pending(self) -> bool:
        return self.state == PENDING


def comment(rule: str, key: rf.RunKey) -> str:
    """The comment the SLURM plugin gives a job of ``rule`` on run ``key``."""
    return f"rule_{rule}_wildcards_{key.dataset}_{key.variant}_{key.depth}_{key.seed}"


def group_rules(job_comment: str, key: rf.RunKey) -> tuple[str, ...]:
    """The steps of run ``key`` that a group job with this comment holds; empty when it
    is not one of that run's group jobs."""
    prefix = f"rule_{group_name(key)}_"
    if not job_comment.startswith(prefix):
        return ()
    rules = tuple(job_comment[len(prefix) :].split("_"))
    return rules if set(rules) <= set(RUN_STEPS) else ()


def squeue_jobs(workdir: Path) -> list[Job] | None:
    """The user's queued and running jobs submitted from ``workdir``; None without SLURM."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    argv = [squeue, "--noheader", "--user", getpass.getuser(), "--format", SQUEUE_FORMAT]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        raise AdminError(f"squeue did not answer: {err}") from None
    if out.returncode != 0:
        why = (out.stderr or out.stdout).strip().splitlines()
        raise AdminError(f"squeue failed: {why[-1] if why else f'exit {out.returncode}'}")
    here = os.path.realpath(workdir)
    jobs = []
    for line in out.stdout.splitlines():
        fields = line.split("|", 5)
        if len(fields) == 6 and os.path.realpath(fields[4]) == here:
            jobs.append(Job(fields[0], fields[1], fields[2], fields[3], fields[5]))
    return jobs


def elapsed_seconds(text: str) -> float | None:
    """squeue's ``%M`` ("[days-][hours:]minutes:seconds") in seconds."""
    days, _, clock = text.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
        seconds = int(days) * 86400 if days else 0
    except ValueError:
        return None  # "INVALID" before a job starts
    if not 1 <= len(parts) <= 3:
        return None
    clock_seconds = 0
    for part in parts:
        clock_seconds = clock_seconds * 60 + part
    return float(seconds + clock_seconds)


# --------------------------------------------------------------------------- this machine


def _pid_alive(pid: int, start: str | None) -> bool:
    """The process runs, and is the one that took the lock (not a reused pid)."""
    now = rf._pid_start(pid)  # the lock's own notion of a process's identity
    return now is not None and (start is None or now == start)


def lock_holder(folder: rf.RunFolder, jobs: Iterable[Job] | None) -> str | None:
    """Who holds the run's trainer lock, if a live trainer does: "pid N", "host H" or
    "job N"; None when the folder has no lock or its holder is gone (a stale lock)."""
    try:
        holder = json.loads(folder.lock.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(holder, dict):
        return None
    job = holder.get("slurm_job_id")
    if job and jobs is not None:  # squeue answered: the job is live or gone
        return f"job {job}" if any(j.job_id == str(job) for j in jobs) else None
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        return f"pid {pid}" if _pid_alive(pid, holder.get("pid_start")) else None
    # another host without SLURM: nothing here can tell, so the lock is believed
    return f"host {holder.get('host')}"


def local_steps(deadline_s: float = 5.0) -> dict[Path, str]:
    """Run folders (resolved) that a training or profiling step on this machine is
    working on, read from the processes' command lines: "train" or "profile".

    Reading ``/proc/<pid>/cmdline`` takes the target's memory lock, and a process frozen
    by SLURM's cgroup freezer can hold it for as long as it stays frozen; the read then
    blocks, and no signal but a fatal one ends it.  So the scan runs in a daemon thread
    and the status waits for it at most ``deadline_s``: it then reports what was read."""
    found: dict[Path, str] = {}
    scan = threading.Thread(target=_scan_processes, args=(found,), daemon=True)
    scan.start()
    scan.join(deadline_s)
    return dict(found)


def _scan_processes(found: dict[Path, str]) -> None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue  # gone meanwhile, or another user's
        step = next((STEP_MODULES[argv[i + 1]] for i, a in enumerate(argv[:-1])
                     if a == "-m" and argv[i + 1] in STEP_MODULES), None)  # fmt: skip
        if step is None:
            continue
        what, option = step
        if option in argv[:-1]:
            path = Path(argv[argv.index(option) + 1])
            run = path if what == "train" else path.parent  # --out <run>/profile.json
            found[(cwd / run).resolve()] = what
