"""One run's state for ``admin.status``, from its folder and what runs for it now.

The words, first match wins (docs/status.md):

* ``status.json`` written (the training step ended): ``stopped: <rule>`` (flagged and
  stopped early), ``flagged: <rule>`` (flagged at its end), else ``completed, not
  scored``; ``scored: BLEU x`` once ``scores.json`` exists (after ``; `` for a flagged run);
  an averaging or evaluation job of the run is named after it;
* its SLURM train job running: ``training (job N)``; pending: ``queued (job N)``;
* its profile job running: ``profiling (job N)``; pending: ``queued (job N, profile)``;
* a live trainer holds its lock (a local run, or a job squeue cannot tell of):
  ``training (pid N)``; a profiling step on this machine: ``profiling (this machine)``;
* a training history but nothing running: ``interrupted`` (the next run resumes it);
* else ``waiting``.

Nothing here writes: the run folder is only read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from admin.common import run_folder as rf
from admin.common.errors import AdminError
from admin.status_jobs import Job, lock_holder
from admin.status_log import LogState, read_history
from admin.table import read_score

# The rules of a run's own jobs (their wildcards are the run's); recipe is a local rule.
RUN_RULES = ("profile", "train", "average", "evaluate")


@dataclass
class RunView:
    key: rf.RunKey
    state: str
    active: bool = False  # training now: its ETA counts
    epoch: int | None = None
    max_epoch: int | None = None
    updates: int | None = None
    max_update: int | None = None
    valid_nll: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    gpu_hours: float | None = None  # spent: GPUs x the attempts' spans (status_log)
    why: str | None = None  # a verdict's reason (stopped, flagged) or a read error
    bleu: float | None = None


def _limit(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and value else None


def remaining_updates(log: LogState, max_epoch: int | None, max_update: int | None) -> int | None:
    """Updates left to the first stop condition, from the newest progress: the rest of
    the current epoch and the epochs after it, or the updates to ``max_update``."""
    if log.num_updates is None:
        return None
    left = []
    if max_update:
        left.append(max(0, max_update - log.num_updates))
    if max_epoch and log.epoch is not None and log.position is not None:
        inner_epoch, done, per_epoch = log.position
        rest = 0 if log.epoch_ended or inner_epoch != log.epoch else per_epoch - done
        left.append(max(0, rest + (max_epoch - log.epoch) * per_epoch))
    return min(left) if left else None


def _finished(folder: rf.RunFolder, view: RunView, jobs: Mapping[str, Job]) -> None:
    status = rf.read_status(folder.status)
    stop = status.doc.get("stop") or {}  # the stop conditions it was trained under
    view.max_epoch = _limit(stop.get("max_epoch")) or view.max_epoch
    view.max_update = _limit(stop.get("max_update")) or view.max_update
    view.epoch, view.updates = status.epochs, status.num_updates
    rule = str(status.doc.get("rule") or "diverged")
    if status.diverged:
        view.state = f"stopped: {rule}" if status.doc.get("stopped_early") else f"flagged: {rule}"
        view.why = status.reason
    if folder.scores.is_file():
        view.bleu = read_score(folder.path).bleu
        scored = "not scored" if view.bleu is None else f"scored: BLEU {view.bleu:.2f}"
        view.state = f"{view.state}; {scored}" if status.diverged else scored
    elif not status.diverged:
        view.state = "completed, not scored"
    for rule_name in ("evaluate", "average"):
        if job := jobs.get(rule_name):
            doing = "queued" if job.pending else "running"
            view.state += f"; {rule_name} {doing} (job {job.job_id})"
            break


def _unfinished(
    folder: rf.RunFolder, view: RunView, jobs: Mapping[str, Job], all_jobs: Sequence[Job] | None,
    local: str | None, log: LogState | None,
) -> None:  # fmt: skip
    train, profile = jobs.get("train"), jobs.get("profile")
    holder = lock_holder(folder, all_jobs) if folder.lock.is_file() else None
    if train is not None:
        view.state = f"queued (job {train.job_id})" if train.pending else (
            f"training (job {train.job_id})")  # fmt: skip
        view.active = not train.pending
    elif profile is not None:
        view.state = (f"queued (job {profile.job_id}, profile)" if profile.pending
                      else f"profiling (job {profile.job_id})")  # fmt: skip
    elif holder is not None or local == "train":
        view.state, view.active = f"training ({holder or 'this machine'})", True
    elif local == "profile":
        view.state = "profiling (this machine)"
    elif log is not None and log.num_updates is not None:
        view.state = "interrupted"  # trained, nothing runs it: the next run resumes it
    if log is not None:
        view.epoch, view.updates = log.epoch, log.num_updates


def run_view(
    key: rf.RunKey,
    folder: rf.RunFolder,
    stop: Mapping[str, object],
    gpus: int,
    jobs: Mapping[str, Job],
    all_jobs: Sequence[Job] | None,
    local: str | None,
) -> RunView:
    """The run's state; ``stop``: its stop conditions in the config, ``gpus``: GPUs of its
    train job (for the GPU-hours), ``jobs``: its SLURM jobs by rule, ``local``: "train"
    or "profile" when a step on this machine works on it."""
    view = RunView(key, "waiting", max_epoch=_limit(stop.get("max_epoch")),
                   max_update=_limit(stop.get("max_update")))  # fmt: skip
    try:
        log = read_history(folder.history, folder.attempts)
        if folder.status.is_file():
            _finished(folder, view, jobs)
        else:
            _unfinished(folder, view, jobs, all_jobs, local, log)
    except (AdminError, OSError) as err:  # one broken folder must not hide the others
        view.state, view.why = "unreadable", str(err)
        return view
    if log is None:
        return view
    view.valid_nll = log.valid_nll
    view.tokens_per_second = log.tokens_per_second
    span = log.span_seconds
    # a CPU run spends no GPU-hours, and its CPU time is not what the budget prices
    view.gpu_hours = gpus * span / 3600 if span is not None and gpus else None
    left = remaining_updates(log, view.max_epoch, view.max_update)
    seconds = log.seconds_per_update
    if view.active and left is not None and seconds is not None and math.isfinite(seconds):
        view.eta_seconds = left * seconds
    return view
