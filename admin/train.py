"""Train one run folder with ``fairseq-train``: resume it, keep its disk bounded, judge it.

    python -m admin.train --data-bin DIR --run-dir RUN --recipe RUN/recipe.json \\
        [--profile RUN/profile.json] [--stop '{"max_epoch": 50}'] [--runtime '{...}'] \\
        [--average-last 10] [--average-upper-bound 90] [--divergence '{...}'] \\
        [--device cuda|cpu|auto] [--nproc-per-node N] [--nnodes M] [--cpus-per-node C] \\
        [--launcher auto|single|torchrun|srun] [--log RUN/train.log] [--status RUN/status.json]

The recipe (:mod:`admin.recipe`) says what is trained; ``--stop`` when it stops
(``max_epoch``, ``max_update``, ...); ``--runtime`` how it is run (logging, workers,
``save_interval_updates``).  One trainer per run: the folder's lock is held throughout.

Resuming.  ``RUN/checkpoints/run.json`` records the recipe its checkpoints were trained
under.  The same recipe resumes from ``checkpoint_last.pt`` (a raised ``max_epoch`` or
``max_update`` continues the run); checkpoints of another recipe, of a run that trained
past the new stop conditions, or without a record (from before recipes existed) are moved
aside to ``RUN/checkpoints.superseded-<id>`` and training starts afresh, saying so.

Disk.  After every save only what is still needed stays: the epoch checkpoints the
averaging window (``--average-last``/``--average-upper-bound``) will read,
``checkpoint_last.pt`` and the latest mid-epoch checkpoint (fairseq keeps one with
``keep_interval_updates 1``); ``checkpoint_best.pt`` is never needed.

History.  Every attempt is appended to ``RUN/checkpoints/train.log`` (which survives a
failed job, like the checkpoints) and ``--log`` is that whole history.

Divergence.  :mod:`admin.divergence` judges the run while fairseq trains (non-finite
loss, an fp16 overflow storm, a run that stays on the unigram plateau: docs/divergence.md)
and at its end (stuck), from the settings in ``--divergence``; with ``stop_early`` (the
default) fairseq is stopped at the first verdict instead of burning the rest of its
budget.  The status records the verdict, its rule and its evidence.  A verdict is a
label: the checkpoints stay (the pruner keeps ``checkpoint_last.pt`` and the averaging
window), and a run stopped under one criterion continues from ``checkpoint_last.pt``
when the criterion changes (or ``stop_early`` is switched off).

Exit 0 with ``status.json`` = ``completed`` or ``diverged``; any other failure exits
non-zero and writes no status.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from admin import divergence
from admin.common import gpu_lease
from admin.common import run_folder as rf
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.common.fairseq_command import parse_json_object, run_logged, train_argv
from admin.common.fairseq_log import ATTEMPT_MARKER, TrainLog, parse
from admin.common.launch import (
    MODES,
    Launch,
    command,
    device_flags,
    resolve_device,
    without_gpu_options,
)
from admin.common.variants import fairseq_flags, needs_profile
from admin.recipe import RUNTIME_OPTIONS, STOP_CONDITIONS, in_run_folder, update_freq

ATTEMPT = ATTEMPT_MARKER
SAVED = "Saved checkpoint "


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin.train", description=__doc__.split("\n")[0])
    p.add_argument("--data-bin", required=True, type=Path, help="fairseq data-bin folder")
    p.add_argument("--run-dir", required=True, type=Path, help="the run folder")
    p.add_argument("--recipe", required=True, type=Path, help="the run's recipe.json")
    p.add_argument("--profile", type=Path, help="Admin profile (variant admin only)")
    p.add_argument("--stop", default="{}", help="JSON: stop conditions (max_epoch, ...)")
    p.add_argument("--runtime", default="{}", help="JSON: runtime options (log_interval, ...)")
    p.add_argument("--average-last", type=int, default=1,
                   help="epoch checkpoints the averaging reads (kept while training)")  # fmt: skip
    p.add_argument("--average-upper-bound", type=int, help="newest epoch the averaging reads")
    p.add_argument("--divergence", default="{}", help="JSON: divergence settings")
    p.add_argument("--device", choices=("cuda", "cpu", "auto"), default="cuda",
                   help="auto (rehearsals): the GPU if torch sees one, else the CPU")  # fmt: skip
    p.add_argument("--nproc-per-node", type=int, default=1, help="processes (GPUs) per node")
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--cpus-per-node", type=int,
                   help="the job's CPUs on each node, shared by its processes")  # fmt: skip
    p.add_argument("--launcher", choices=MODES, default="auto")
    p.add_argument("--log", type=Path, help="default: RUN/train.log")
    p.add_argument("--status", type=Path, help="default: RUN/status.json")
    return p


# --------------------------------------------------------------------------- resuming


def restore_flags(save_dir: Path) -> list[str]:
    """Where to resume from, so that no run restarts while it has a checkpoint.

    fairseq resumes from ``checkpoint_last.pt`` by itself.  fairseq writes that file
    last, by a plain copy, so a kill can leave it missing or truncated; then the newest
    epoch or mid-epoch checkpoint is restored instead.
    """
    last = save_dir / "checkpoint_last.pt"
    if last.is_file():
        if _readable(last):
            return []
        last.replace(last.with_name("checkpoint_last.pt.truncated"))
    # An epoch's mid-epoch checkpoints precede its end: order by (epoch, end?, updates).
    candidates = [((e, 1, 0), p) for e, p in rf.epoch_checkpoints(save_dir).items()]
    candidates += [((e, 0, u), p) for (e, u), p in rf.update_checkpoints(save_dir).items()]
    readable = [c for c in candidates if _readable(c[1])]
    if not readable:
        return []
    return ["--restore-file", str(max(readable)[1])]


def _readable(path: Path) -> bool:
    """A torch checkpoint is a zip archive: a truncated one has no central directory."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        return False


def _history(folder: rf.RunFolder) -> TrainLog:
    if not folder.history.is_file():
        return TrainLog()
    with open(folder.history, encoding="utf-8", errors="replace") as handle:
        return parse(handle)


def past_stop(progress: TrainLog, stop: Mapping[str, Any]) -> str | None:
    """Why a run's progress is already beyond the stop conditions (None if it is not):
    such checkpoints are not an earlier state of the requested run."""
    if stop.get("max_epoch") and progress.epochs > int(stop["max_epoch"]):
        return f"it trained {progress.epochs} epochs, more than max_epoch {stop['max_epoch']}"
    if stop.get("max_update") and progress.num_updates > int(stop["max_update"]):
        return (
            f"it trained {progress.num_updates} updates, more than max_update {stop['max_update']}"
        )
    return None


@dataclass
class Plan:
    """What the trainer does with the folder it found."""

    fresh: bool  # start from scratch (after moving old state aside, if any)
    judge_only: bool = False  # finished already under the same stop: no fairseq run
    messages: list[str] = field(default_factory=list)


def finished_alike(finished: Mapping[str, Any] | None, end: Mapping[str, Any]) -> bool:
    """Whether a run that finished under ``finished`` needs no more training for ``end``
    (its stop conditions, averaging window and divergence settings): it reached the same
    stop conditions with the same window, and it was not cut short by a verdict that
    other divergence settings might not give.  Its history is then only judged again."""
    if finished is None:
        return False
    prior = finished.get("end") or {}
    if prior.get("stop") != end["stop"] or prior.get("window") != end["window"]:
        return False
    return not finished.get("stopped_early") or prior.get("divergence") == end["divergence"]


def plan_resume(folder: rf.RunFolder, recipe: rf.Recipe, end: Mapping[str, Any]) -> Plan:
    """Resume, start afresh or only judge (module docstring); moves stale state aside.

    A run that finished alike (:func:`finished_alike`) is only judged again (its
    checkpoints may have been pruned after scoring)."""
    if not rf.has_training_state(folder):
        return Plan(fresh=True)
    record = rf.read_record(folder)
    why = None
    if record is None:
        why = "its checkpoints carry no recipe record (trained before recipes were recorded)"
    elif record.get("recipe_id") != recipe.id:
        why = f"its checkpoints were trained under recipe {record.get('recipe_id')}"
    else:
        finished = record.get("finished")
        if finished_alike(finished, end):
            return Plan(fresh=False, judge_only=True)
        progress = _history(folder)
        why = past_stop(progress, end["stop"])
        if why is None and record.get("pruned") and not folder.model_files():
            why = (
                "its checkpoints were removed after scoring (checkpoints.keep), so it cannot "
                "continue; keep them with checkpoints.keep: last to extend finished runs"
            )
        if why is None and finished is not None:
            missing = _missing_window(folder, progress, end)
            if missing:
                why = f"the averaging window needs epochs {missing}, whose checkpoints are gone"
    if why is None:
        return Plan(fresh=False)
    tag = (record or {}).get("recipe_id") or "unrecorded"
    moved = rf.supersede(folder, tag)
    size = rf.folder_bytes(moved) / 2**20
    return Plan(
        fresh=True,
        messages=[
            f"starting afresh for recipe {recipe.id}: {why}; the old checkpoints and their "
            f"history ({size:.0f} MiB) were moved to {moved} (delete it if you do not need it)"
        ],
    )


def _missing_window(folder: rf.RunFolder, progress: TrainLog, end: Mapping[str, Any]) -> list[int]:
    """Epochs already trained that the averaging window at the run's new end needs but
    whose checkpoints are gone.  The end is ``max_epoch`` when the stop conditions set it
    (a longer run's window moves on to epochs still to come), else the epochs so far."""
    last, upper = end["window"]
    final = max(int(end["stop"].get("max_epoch") or 0), progress.epochs)
    wanted = rf.averaging_window(range(1, final + 1), last, upper)
    present = folder.epoch_checkpoints()
    return [e for e in wanted if e <= progress.epochs and e not in present]


# --------------------------------------------------------------------------- disk


class CheckpointPruner:
    """Deletes, after each save, the checkpoints the run no longer needs."""

    def __init__(self, folder: rf.RunFolder, last: int, upper_bound: int | None,
                 say: Callable[[str], None]):  # fmt: skip
        self.folder, self.last, self.upper_bound, self.say = folder, last, upper_bound, say

    def on_line(self, line: str) -> bool:
        if SAVED in line:
            self.prune()
        return False

    def prune(self) -> list[str]:
        epochs = self.folder.epoch_checkpoints()
        keep = set(rf.averaging_window(epochs, self.last, self.upper_bound))
        doomed = [p for e, p in epochs.items() if e not in keep]
        doomed.append(self.folder.checkpoints / "checkpoint_best.pt")
        removed = []
        for path in doomed:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                self.say(f"admin.train: could not remove {path}: {err}")
                continue
            removed.append(path.name)
        return removed


# --------------------------------------------------------------------------- training


def fairseq_options(
    recipe: rf.Recipe, stop: Mapping[str, Any], runtime: Mapping[str, Any], world_size: int
) -> dict[str, Any]:
    """The recipe's fairseq options with the stop conditions, the runtime options and the
    ``update_freq`` that gives this world size the recipe's batch."""
    for name, given, allowed in (("--stop", stop, STOP_CONDITIONS),
                                 ("--runtime", runtime, RUNTIME_OPTIONS)):  # fmt: skip
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise AdminError(f"{name} sets {', '.join(unknown)}, which it does not hold")
    identity = recipe.identity
    options = dict(identity["hparams"])
    options["update_freq"] = update_freq(int(identity["batches_per_update"]), world_size)
    options.update(stop)
    options.update(runtime)
    # fairseq keeps the latest mid-epoch checkpoint; the pruner handles the others.
    options["keep_interval_updates"] = 1
    return options


def divergence_monitor(
    recipe: rf.Recipe, runtime: Mapping[str, Any], settings: Mapping[str, Any], data_bin: Path
) -> tuple[divergence.Monitor, bool]:
    """The live judge of this run (:mod:`admin.divergence`) and whether to stop it at
    its first verdict (``stop_early``, default true)."""
    settings = dict(settings)
    stop_early = bool(settings.pop("stop_early", True))
    hparams = {**recipe.identity["hparams"], **runtime}
    criterion = divergence.Criterion.for_recipe(hparams, settings)
    unigram, bigram = divergence.baselines(criterion, data_bin)
    return divergence.Monitor(criterion, unigram, bigram), stop_early


@dataclass
class Request:
    data_bin: Path
    folder: rf.RunFolder
    recipe: rf.Recipe
    profile: Path | None
    stop: dict[str, Any]
    runtime: dict[str, Any]
    window: tuple[int, int | None]
    divergence: dict[str, Any]
    launch: Launch
    log: Path
    status: Path
    device_note: str | None = None  # a rehearsal running on the CPU: why

    @property
    def end(self) -> dict[str, Any]:
        """What decides where the run ends (compared as JSON with the record's)."""
        return json.loads(json.dumps(
            {"stop": self.stop, "window": list(self.window), "divergence": self.divergence}
        ))  # fmt: skip


def train(req: Request) -> dict[str, Any]:
    """Bring the run to its stop conditions and write its status (see the module doc)."""
    folder, recipe = req.folder, req.recipe
    variant = recipe.key.variant
    if needs_profile(variant):
        if req.profile is None:
            raise AdminError(f"variant {variant!r} needs --profile (run admin.profile_run)")
        if not req.profile.is_file():
            raise AdminError(f"Admin profile {req.profile} does not exist")
    elif req.profile is not None:
        raise AdminError(f"variant {variant!r} takes no --profile")
    # fairseq's logging hooks write into the run folder (recipe.in_run_folder)
    runtime = in_run_folder(req.runtime, folder.path)
    options = fairseq_options(recipe, req.stop, runtime, req.launch.world_size)
    if req.device_note:
        options = without_gpu_options(options)
    identity = recipe.identity
    depth = (int(identity["encoder_layers"]), int(identity["decoder_layers"]))
    argv = train_argv(
        req.data_bin, options, depth, int(identity["seed"]),
        fairseq_flags(variant, req.profile), folder.checkpoints,
    )  # fmt: skip

    # Launcher errors (e.g. --nnodes without SLURM) stop here, before the folder is touched,
    # and so does asking for more GPUs than this machine's pool has (gpu_lease).
    base_cmd = command(req.launch, argv + device_flags(req.launch))
    gpus = gpu_lease.need(req.launch.device, req.launch.nproc_per_node)
    monitor, stop_early = divergence_monitor(recipe, req.runtime, req.divergence, req.data_bin)
    folder.path.mkdir(parents=True, exist_ok=True)
    notes: list[str] = [req.device_note] if req.device_note else []
    # The devices are held until the status is written (a waiting step says so on stderr).
    lease_label = f"admin.train {folder.path}"
    with (
        gpu_lease.hold(gpus, lease_label, say=_say) as lease,
        rf.TrainerLock(folder, say=notes.append),
    ):
        plan = plan_resume(folder, recipe, req.end)
        notes += plan.messages
        if lease.devices:  # leased here, or SLURM's
            notes.append(lease.note)
        folder.checkpoints.mkdir(parents=True, exist_ok=True)
        if plan.fresh or rf.read_record(folder) is None:
            rf.write_record(folder, {"recipe_id": recipe.id, "recipe": recipe.as_dict(),
                                     "created": _now()})  # fmt: skip
        stamp = _now()
        with open(folder.history, "a", encoding="utf-8") as handle:
            for note in notes:
                handle.write(f"admin.train: {note}\n")
        for note in notes:
            print(f"admin.train: {note}", file=sys.stderr)
        # The history so far (a resumed run) is judged first: a run already found
        # diverged and stopped is not started again.
        with open(folder.history, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                monitor.feed(line)
        stopped = stop_early and monitor.first is not None
        if plan.judge_only or stopped:
            why = "already at its stop conditions" if plan.judge_only else "diverged before"
            with open(folder.history, "a", encoding="utf-8") as handle:
                handle.write(f"{ATTEMPT} {stamp}: {why}; judged only\n")
            req.log.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder.history, req.log)
            code, attempt = 0, ""
        else:
            cmd = base_cmd.argv + restore_flags(folder.checkpoints)
            offset = folder.history.stat().st_size
            with open(folder.history, "a", encoding="utf-8") as handle:
                handle.write(f"{ATTEMPT} {stamp}: {json.dumps(cmd)}\n")
            with open(folder.attempts, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"offset": offset, "started": stamp}) + "\n")
            req.log.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder.history, req.log)
            pruner = CheckpointPruner(folder, *req.window, say=print)

            def on_line(line: str) -> bool:
                pruner.on_line(line)
                verdict = monitor.feed(line)
                # a verdict stops fairseq (SIGTERM) when stopping early
                return verdict is not None and stop_early

            env = lease.environ(base_cmd.env)
            code = run_logged(cmd, [folder.history, req.log], env=env, on_line=on_line)
            pruner.prune()
            stopped = stop_early and monitor.first is not None
            with open(folder.history, encoding="utf-8", errors="replace") as handle:
                handle.seek(offset)
                attempt = handle.read()
            if stopped:
                with open(folder.history, "a", encoding="utf-8") as handle:
                    handle.write(f"admin.train: stopped: {monitor.first.reason}\n")

        verdict = monitor.first if stopped else monitor.finish()
        progress = _history(folder)
        if not verdict.diverged and code != 0:
            raise TrainingFailed(code, req.log)
        if not (verdict.diverged or plan.judge_only or "done training" in attempt):
            raise AdminError(f"fairseq-train exited 0 but did not finish training; see {req.log}")
        status = rf.DIVERGED if verdict.diverged else rf.COMPLETED
        fields = {
            "recipe_id": recipe.id,
            "num_updates": progress.num_updates,
            "epochs": progress.epochs,
            "reason": verdict.reason,
            "rule": verdict.rule,
            "stopped_early": stopped,
            "evidence": verdict.evidence,
            "stop": req.stop,
            "world_size": progress.world_size or req.launch.world_size,
            "devices": list(lease.devices),
        }
        rf.update_record(folder, finished={"end": req.end, "status": status,
                                           "stopped_early": stopped, "at": _now()})  # fmt: skip
        return rf.write_status(req.status, recipe.key, status, **fields)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _say(message: str) -> None:
    print(f"admin.train: {message}", file=sys.stderr, flush=True)


class TrainingFailed(Exception):
    """fairseq failed for a reason other than divergence (not an input error)."""

    def __init__(self, code: int, log: Path):
        super().__init__(f"fairseq-train failed with exit code {code}; see {log}")
        self.code = code


def request(args: argparse.Namespace) -> Request:
    recipe = rf.read_recipe(args.recipe)
    stop = parse_json_object(args.stop, "--stop")
    runtime = parse_json_object(args.runtime, "--runtime")
    device, note = resolve_device("cpu" if runtime.get("cpu") else args.device)
    folder = rf.RunFolder(args.run_dir)
    return Request(
        data_bin=args.data_bin, folder=folder, recipe=recipe, profile=args.profile,
        stop=stop, runtime=runtime, window=(args.average_last, args.average_upper_bound),
        divergence=parse_json_object(args.divergence, "--divergence"),
        launch=Launch(args.launcher, args.nproc_per_node, args.nnodes, device,
                      args.cpus_per_node),  # fmt: skip
        log=args.log or folder.train_log, status=args.status or folder.status,
        device_note=note,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = train(request(args))
    except TrainingFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"{status['status']}: {status['num_updates']} updates, {status['epochs']} epochs"
        + ("" if status["status"] == rf.COMPLETED else f" ({status['reason']})")
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
