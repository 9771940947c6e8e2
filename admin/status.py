"""Where a target's runs stand: state, progress, speed, ETA and GPU-hours.

    python -m admin.status paper_wmt14_en_de [--configfile my.yaml] [--config KEY=VALUE ...]
    python -m admin.status all --config rehearsal=true --directory WORKDIR --watch 30

TARGET and the config are those of the run: ``all`` (the config's ``datasets``), a
paper target (``paper_all``, ...), ``mini_multi30k_de_en`` or a dataset; the config is
loaded as admin.budget and the workflow load it (``--configfile``, ``--config``; a
rehearsal's folders are under ``rehearsal/``).  For every run of the target one row:
its state (admin.status_runs), epoch e/E and update u/U, its last validation
``nll_loss``, its recent tokens/s (fairseq's ``wps``) and, while it trains, the time to
its first stop condition at that speed; per dataset, GPU-hours spent against
admin.budget's estimate.  It reads the run folders (the ends of their histories only)
and, where SLURM is present, one ``squeue``; it changes nothing.  ``--watch N``
refreshes every N seconds until interrupted.  docs/status.md explains each column.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from admin import budget
from admin.common import config as cfgmod
from admin.common import run_folder as rf
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.recipe import stop_conditions
from admin.status_jobs import Job, comment, group_rules, local_steps, squeue_jobs
from admin.status_runs import RUN_RULES, RunView, run_view

REHEARSAL_PREFIX = "rehearsal/"  # the workflow's layout of a rehearsal (common.smk)
CLEAR = "\033[H\033[2J"


@dataclass
class DatasetStatus:
    name: str
    runs: list[RunView]
    estimate: float | None  # admin.budget's GPU-hours of every run, None if unknown
    estimate_note: str  # why there is none


@dataclass
class Snapshot:
    target: str
    rehearsal: bool
    datasets: list[DatasetStatus]
    squeue: str  # what squeue said, in words
    at: datetime


# --------------------------------------------------------------------------- config


def load(configfiles: Sequence[Path], config: Sequence[str]) -> tuple[dict[str, Any], str]:
    """The config as the workflow has it, and the prefix of its output folders."""
    cfg = budget.load_config(configfiles, config)
    if cfg.get("rehearsal"):
        return cfgmod.rehearse(cfg), REHEARSAL_PREFIX
    return cfg, ""


def target_datasets(cfg: Mapping[str, Any], target: str) -> tuple[str, ...]:
    """The datasets a target builds: ``all`` is the workflow's default target."""
    if target == "all":
        return tuple(cfg["datasets"])
    try:
        return budget.target_datasets(cfg, target)
    except AdminError as err:
        raise AdminError(f"{err}, or all") from None


# --------------------------------------------------------------------------- collecting


def _estimates(
    cfg: Mapping[str, Any], dataset: str, resources: Path, hw: budget.Hardware
) -> tuple[list[tuple[str, str, int]], dict[tuple[str, str, int], float | None], str]:
    """The dataset's cells and admin.budget's GPU-hours of each; the budget's refusal
    (a recipe it cannot count) leaves the cells without an estimate, not the status."""
    try:
        priced = budget.runs(cfg, dataset, resources)
    except AdminError as err:
        return cfgmod.cells(cfg, dataset), {}, f"admin.budget: {err}"
    hours = {(r.variant, r.depth, r.seed): r.plan.gpu_hours(hw) for r in priced}
    if all(h is not None for h in hours.values()):
        note = ""
    elif any(not r.plan.world for r in priced):
        note = "its runs train on the CPU (no GPU-hours)"
    else:
        note = "its corpus size is unknown until its data-bin exists"
    return list(hours), hours, note


def _jobs_by_run(keys: Sequence[rf.RunKey], jobs: Sequence[Job]) -> dict[rf.RunKey, dict[str, Job]]:
    """Each run's SLURM jobs by rule (the newest where a rule has several); a run's group
    job stands for each of the steps it holds."""
    index = {comment(rule, key): (key, rule) for key in keys for rule in RUN_RULES}
    out: dict[rf.RunKey, dict[str, Job]] = {}
    for job in sorted(jobs, key=lambda j: int(j.job_id.split("_")[0])):
        if job.comment in index:
            key, rule = index[job.comment]
            out.setdefault(key, {})[rule] = job
            continue
        for key in keys if job.comment.startswith("rule_run_") else ():
            for rule in group_rules(job.comment, key):
                out.setdefault(key, {})[rule] = job
    return out


def snapshot(
    cfg: Mapping[str, Any], prefix: str, target: str, workdir: Path, hw: budget.Hardware
) -> Snapshot:
    datasets = target_datasets(cfg, target)
    try:
        jobs = squeue_jobs(workdir)
        said = (
            "no squeue here"
            if jobs is None
            else f"{len(jobs)} job{'' if len(jobs) == 1 else 's'} of this workflow in squeue"
        )
    except AdminError as err:
        jobs, said = None, f"{err} (states from the run folders only)"
    local = local_steps()
    results, resources = workdir / f"{prefix}results", workdir / f"{prefix}resources"
    out = []
    for dataset in datasets:
        cells, hours, note = _estimates(cfg, dataset, resources, hw)
        keys = [rf.RunKey(dataset, v, d, int(s)) for v, d, s in cells]
        by_run = _jobs_by_run(keys, jobs or [])
        per_depth: dict[str, tuple[dict[str, Any], int]] = {}
        views = []
        for key in keys:
            if key.depth not in per_depth:
                res = cfgmod.lookup_resources(cfg, "train", dataset, key.depth)
                per_depth[key.depth] = (stop_conditions(cfg, dataset, key.depth),
                                        res["gpus"] * res["nodes"])  # fmt: skip
            stop, gpus = per_depth[key.depth]
            folder = rf.RunFolder(key.folder(results))
            views.append(run_view(key, folder, stop, gpus, by_run.get(key, {}), jobs,
                                  local.get(folder.path.resolve())))  # fmt: skip
        known = [h for h in hours.values() if h is not None]
        estimate = sum(known) if hours and len(known) == len(hours) else None
        out.append(DatasetStatus(dataset, views, estimate, note))
    return Snapshot(target, bool(cfg.get("rehearsal")), out, said, datetime.now(UTC))


# --------------------------------------------------------------------------- printing


def duration(seconds: float | None) -> str:
    """45s, 12m, 3h05m, 2d04h: as precise as a speed-based estimate deserves."""
    if seconds is None:
        return "—"
    if seconds < 59.5:
        return f"{seconds:.0f}s"
    minutes = int(round(seconds / 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{mins:02d}m" if hours else f"{mins}m"


def _of(value: int | None, limit: int | None) -> str:
    if value is None:
        return "—"
    return f"{value}/{limit}" if limit else str(value)


def run_rows(views: Sequence[RunView]) -> list[list[str]]:
    return [[
        f"{v.key.variant} {v.key.depth} seed{v.key.seed}", v.state,
        _of(v.epoch, v.max_epoch), _of(v.updates, v.max_update),
        f"{v.valid_nll:.3f}" if v.valid_nll is not None else "—",
        f"{v.tokens_per_second:,.0f}" if v.tokens_per_second is not None else "—",
        duration(v.eta_seconds),
        f"{v.gpu_hours:.3g}" if v.gpu_hours is not None else "—",
    ] for v in views]  # fmt: skip


RUN_HEADER = ["run", "state", "epoch", "update", "valid nll_loss", "tokens/s", "ETA",
              "GPU-hours"]  # fmt: skip


def spent(views: Sequence[RunView]) -> float:
    return sum(v.gpu_hours or 0.0 for v in views)


def hours_rows(snap: Snapshot) -> list[list[str]]:
    groups = [(d.name, d.runs, d.estimate) for d in snap.datasets]
    if len(groups) > 1:
        known = [d.estimate for d in snap.datasets]
        total = sum(known) if all(e is not None for e in known) else None
        groups.append((snap.target, [v for d in snap.datasets for v in d.runs], total))
    rows = []
    for name, views, estimate in groups:
        finished = sum(v.state.startswith(("scored", "completed", "stopped", "flagged"))
                       for v in views)  # fmt: skip
        used = spent(views)
        rows.append(
            [
                name,
                str(len(views)),
                str(finished),
                budget.num(estimate),
                budget.num(used),
                budget.num(None if estimate is None else estimate - used),
            ]
        )
    return rows


HOURS_HEADER = ["target", "runs", "finished", "estimate", "spent", "left"]


def render(snap: Snapshot, hw: budget.Hardware) -> str:
    runs = sum(len(d.runs) for d in snap.datasets)
    out = [
        f"# {snap.target}{' (REHEARSAL)' if snap.rehearsal else ''}: {runs} runs, "
        f"{snap.at.isoformat(timespec='seconds')}; SLURM: {snap.squeue}",
        "",
    ]
    for d in snap.datasets:
        out += [f"## {d.name}", "", budget.table(RUN_HEADER, run_rows(d.runs)), ""]
        notes = [f"- {v.key.variant} {v.key.depth} seed{v.key.seed}: {v.why}"
                 for v in d.runs if v.why]  # fmt: skip
        out += [*notes, ""] if notes else []
    out += [f"## GPU-hours, against admin.budget's estimate at {hw.name}", "",
            budget.table(HOURS_HEADER, hours_rows(snap)), ""]  # fmt: skip
    out += [f"- {d.name}: no estimate: {d.estimate_note}" for d in snap.datasets
            if d.estimate is None and d.estimate_note]  # fmt: skip
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- CLI


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin.status", description=__doc__.split("\n")[0])
    p.add_argument("target", help=f"all, {', '.join(budget.NAMED_TARGETS)} or a dataset")
    budget.add_config_arguments(p)
    p.add_argument(
        "--directory",
        "-d",
        type=Path,
        default=Path("."),
        help="the workflow's working directory (Snakemake's --directory; default: here)",
    )
    p.add_argument(
        "--gpu",
        choices=list(budget.GPUS),
        default=budget.SLOWEST_GPU,
        help="the GPU kind of admin.budget's estimate",
    )
    p.add_argument(
        "--watch", type=positive, metavar="N", help="print again every N seconds until interrupted"
    )
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)  # refreshes (tests)
    return p  # fmt: skip


def _exit_on_sigint() -> None:
    """``--watch`` ends on Ctrl-C even while a refresh waits in the kernel (a ``/proc``
    read of a frozen process, an unanswered ``squeue``), where no KeyboardInterrupt can
    reach it: SIGINT is blocked in every thread and one thread waits for it and ends the
    process.  What the refresh had not printed yet is not printed."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def wait() -> None:
        signal.sigwait({signal.SIGINT})
        os._exit(0)

    threading.Thread(target=wait, name="SIGINT", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.count is not None and args.count < 1:
        raise AdminError(f"--count {args.count}: expected at least 1 refresh")
    if not args.directory.is_dir():
        raise AdminError(f"--directory {args.directory} is not a folder")
    cfg, prefix = load(args.configfile, args.config)
    target_datasets(cfg, args.target)  # a wrong target stops here, before any refresh
    hw = budget.Hardware(args.gpu)
    clear = bool(args.watch) and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    if args.watch:
        _exit_on_sigint()
    try:
        for refresh in itertools.count(1):
            text = render(snapshot(cfg, prefix, args.target, args.directory, hw), hw)
            print((CLEAR if clear else "") + text, flush=True)
            if not args.watch or (args.count is not None and refresh >= args.count):
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:  # the way out of --watch
        return 0
    return 0


if __name__ == "__main__":
    run_cli(main)
