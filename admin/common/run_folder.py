"""One training run's folder: its layout, recipe file, status file and trainer lock.

A run folder is ``<results>/<dataset>/<variant>/<enc>-<dec>/seed<seed>/``.  This module
is the one place that knows its layout and the words of its status; the workflow, the
steps, the table and the plots ask it instead of building or parsing paths themselves.

What lives in it:

* ``recipe.json``: the run's identity (:mod:`admin.recipe`), written by the recipe step;
* ``profile.json``: Admin's profile (variant admin only);
* ``checkpoints/``: fairseq's checkpoints, the training history (``train.log``, every
  attempt appended) and ``run.json``, the record of which recipe they were trained
  under.  Never a declared Snakemake output, so a killed job resumes from it;
* ``checkpoints.superseded-<recipe id>[-N]/``: a ``checkpoints/`` moved aside by
  :func:`supersede` when training had to start afresh (never deleted here);
* ``trainer.lock``: held while a trainer works on the folder (one trainer per run);
* ``train.log``, ``status.json``: the training step's outputs;
* ``average.json``, ``checkpoint_avg.pt``: the averaged model (weights only);
* ``generate.txt``, ``generate.log``, ``hyp.*``, ``ref.*``, ``scores.json``: the
  evaluation's outputs.

docs/step-contracts.md lists who writes each file and what pruning and superseding do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from admin.common.atomic import atomic_write_text
from admin.common.errors import AdminError
from admin.common.variants import VARIANTS

COMPLETED = "completed"
DIVERGED = "diverged"
STATUSES = (COMPLETED, DIVERGED)

RECIPE_FORMAT = "admin-recipe"
RECIPE_VERSION = 1

_DEPTH = re.compile(r"^([1-9]\d*)-([1-9]\d*)$")
_SEED = re.compile(r"^seed(\d+)$")
_EPOCH_CHECKPOINT = re.compile(r"^checkpoint(\d+)\.pt$")
# fairseq's mid-epoch checkpoints (--save-interval-updates): checkpoint_<epoch>_<updates>.pt
_UPDATE_CHECKPOINT = re.compile(r"^checkpoint_(\d+)_(\d+)\.pt$")


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True, order=True)
class RunKey:
    """Which cell of a table a run is: dataset, variant, depth and seed."""

    dataset: str
    variant: str
    depth: str
    seed: int

    def folder(self, results: str | os.PathLike[str]) -> Path:
        return Path(results, self.dataset, self.variant, self.depth, f"seed{self.seed}")

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "variant": self.variant, "depth": self.depth,
                "seed": self.seed}  # fmt: skip


def pattern(results: str) -> str:
    """The run folder as a Snakemake pattern with wildcards dataset, variant, depth, seed."""
    return f"{results}/{{dataset}}/{{variant}}/{{depth}}/seed{{seed}}"


def parse_depth(text: str) -> tuple[int, int]:
    """``"6-6"`` -> ``(6, 6)``: encoder and decoder layers."""
    m = _DEPTH.match(text)
    if not m:
        raise AdminError(f"depth {text!r} is not <encoder layers>-<decoder layers>, e.g. 6-6")
    return int(m[1]), int(m[2])


def key_of(folder: str | os.PathLike[str]) -> RunKey:
    """The run key of ``<...>/<dataset>/<variant>/<enc>-<dec>/seed<N>`` (a run folder)."""
    parts = Path(folder).parts
    if len(parts) < 4 or not _SEED.match(parts[-1]):
        raise AdminError(f"{folder} is not a run folder <dataset>/<variant>/<enc>-<dec>/seed<N>")
    dataset, variant, depth = parts[-4], parts[-3], parts[-2]
    if variant not in VARIANTS:
        raise AdminError(f"{folder}: unknown variant {variant!r}")
    parse_depth(depth)
    return RunKey(dataset, variant, depth, int(_SEED.match(parts[-1])[1]))


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def recipe(self) -> Path:
        return self.path / "recipe.json"

    @property
    def profile(self) -> Path:
        return self.path / "profile.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def history(self) -> Path:
        """Every training attempt's output, appended; survives failed jobs."""
        return self.checkpoints / "train.log"

    @property
    def attempts(self) -> Path:
        """One JSON line per fairseq attempt: where its output starts in the history
        (``offset``, bytes), so a reader finds each attempt's span without reading it all."""
        return self.checkpoints / "attempts.jsonl"

    @property
    def record(self) -> Path:
        """Which recipe the checkpoints were trained under (and what was pruned)."""
        return self.checkpoints / "run.json"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "checkpoint_last.pt"

    @property
    def lock(self) -> Path:
        return self.path / "trainer.lock"

    @property
    def status(self) -> Path:
        return self.path / "status.json"

    @property
    def train_log(self) -> Path:
        return self.path / "train.log"

    @property
    def average(self) -> Path:
        return self.path / "average.json"

    @property
    def averaged_checkpoint(self) -> Path:
        return self.path / "checkpoint_avg.pt"

    @property
    def scores(self) -> Path:
        return self.path / "scores.json"

    def epoch_checkpoints(self) -> dict[int, Path]:
        """``checkpoint<E>.pt`` by epoch."""
        return epoch_checkpoints(self.checkpoints)

    def update_checkpoints(self) -> dict[tuple[int, int], Path]:
        """fairseq's mid-epoch ``checkpoint_<E>_<U>.pt`` by (epoch, updates)."""
        return update_checkpoints(self.checkpoints)

    def model_files(self) -> list[Path]:
        """Every checkpoint file fairseq wrote in the checkpoint folder."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir() if p.name.endswith(".pt"))


def epoch_checkpoints(folder: Path) -> dict[int, Path]:
    """``checkpoint<E>.pt`` in ``folder``, by epoch."""
    if not folder.is_dir():
        return {}
    return {int(m[1]): p for p in folder.iterdir() if (m := _EPOCH_CHECKPOINT.match(p.name))}


def update_checkpoints(folder: Path) -> dict[tuple[int, int], Path]:
    """fairseq's mid-epoch ``checkpoint_<E>_<U>.pt`` in ``folder``, by (epoch, updates)."""
    if not folder.is_dir():
        return {}
    return {
        (int(m[1]), int(m[2])): p
        for p in folder.iterdir()
        if (m := _UPDATE_CHECKPOINT.match(p.name))
    }


# --------------------------------------------------------------------------- averaging window


def averaging_window(epochs: Iterable[int], last: int, upper_bound: int | None) -> list[int]:
    """The epochs checkpoint averaging reads: the ``last`` newest with epoch <= upper bound
    (fewer if fewer exist), oldest first.  The training step keeps exactly these."""
    if last < 1:
        raise AdminError(f"the averaging window must hold at least 1 epoch, got {last}")
    eligible = sorted(e for e in set(epochs) if upper_bound is None or e <= upper_bound)
    return eligible[-last:]


# --------------------------------------------------------------------------- JSON files


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise AdminError(f"cannot read the {what} {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise AdminError(f"the {what} {path} is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise AdminError(f"the {what} {path} is not a JSON object")
    return doc


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")


# --------------------------------------------------------------------------- recipe file


def recipe_id(identity: Mapping[str, Any]) -> str:
    """A short, stable hash of a recipe's identity (canonical JSON)."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Recipe:
    key: RunKey
    identity: dict[str, Any]

    @property
    def id(self) -> str:
        return recipe_id(self.identity)

    def as_dict(self) -> dict[str, Any]:
        return {"format": RECIPE_FORMAT, "version": RECIPE_VERSION, "id": self.id,
                **self.key.as_dict(), "identity": self.identity}  # fmt: skip


def write_recipe(path: Path, recipe: Recipe) -> None:
    write_json(path, recipe.as_dict())


def read_recipe(path: Path) -> Recipe:
    doc = read_json(path, "recipe")
    if doc.get("format") != RECIPE_FORMAT or doc.get("version") != RECIPE_VERSION:
        raise AdminError(
            f"{path} is not an {RECIPE_FORMAT} file of version {RECIPE_VERSION} "
            f"(format {doc.get('format')!r}, version {doc.get('version')!r})"
        )
    try:
        key = RunKey(doc["dataset"], doc["variant"], doc["depth"], int(doc["seed"]))
        identity = doc["identity"]
    except (KeyError, TypeError, ValueError) as err:
        raise AdminError(f"the recipe {path} lacks {err}") from None
    recipe = Recipe(key, identity)
    if doc.get("id") != recipe.id:
        raise AdminError(
            f"the recipe {path} was edited: its id {doc.get('id')!r} does not match its "
            f"contents ({recipe.id}); rerun the workflow to rewrite it"
        )
    return recipe


# --------------------------------------------------------------------------- checkpoint record


def read_record(folder: RunFolder) -> dict[str, Any] | None:
    """What the checkpoint folder holds (``checkpoints/run.json``), or None without one."""
    if not folder.record.is_file():
        return None
    return read_json(folder.record, "checkpoint record")


def write_record(folder: RunFolder, record: Mapping[str, Any]) -> None:
    write_json(folder.record, record)


def update_record(folder: RunFolder, **fields: Any) -> dict[str, Any]:
    record = read_record(folder) or {}
    record.update(fields)
    write_record(folder, record)
    return record


def has_training_state(folder: RunFolder) -> bool:
    """Anything a trainer left in the checkpoint folder (checkpoints or history)."""
    return folder.checkpoints.is_dir() and any(folder.checkpoints.iterdir())


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


KEEP_POLICIES = ("none", "last", "all")


def prune_after_scoring(folder: RunFolder, keep: str, say: Any = print) -> list[str]:
    """Once a run is averaged and scored: delete its training checkpoints, keeping
    ``checkpoint_last.pt`` with ``keep="last"`` (to extend the run later) and everything
    with ``keep="all"``.  ``checkpoint_avg.pt`` (weights only) and the history stay.
    Skipped, with a message, while a trainer holds the folder, and for a run flagged
    ``diverged``: a verdict is a label, and the run may be continued under another
    criterion (its checkpoints stay until the user deletes them)."""
    if keep not in KEEP_POLICIES:
        raise AdminError(f"checkpoints.keep {keep!r} is not one of {', '.join(KEEP_POLICIES)}")
    if keep == "all":
        return []
    if folder.status.is_file() and read_status(folder.status).diverged:
        say(f"checkpoints kept in {folder.checkpoints}: the run is flagged diverged "
            f"(checkpoints.keep {keep!r} applies to completed runs only)")  # fmt: skip
        return []
    try:
        lock = TrainerLock(folder, say=say)
        lock.acquire()
    except RunLocked as err:
        say(f"checkpoints not pruned: {err}")
        return []
    try:
        removed = []
        for path in folder.model_files():
            if keep == "last" and path.name == "checkpoint_last.pt":
                continue
            path.unlink(missing_ok=True)
            removed.append(path.name)
        update_record(folder, pruned=keep)
        return removed
    finally:
        lock.release()


def supersede(folder: RunFolder, tag: str) -> Path:
    """Move the checkpoint folder aside (``checkpoints.superseded-<tag>[-N]``), with the
    old run's averaged model, so that training starts afresh and nothing of the old run
    is lost (nor left where the new run's files go); returns its new place."""
    target = folder.path / f"checkpoints.superseded-{tag}"
    n = 1
    while target.exists():
        n += 1
        target = folder.path / f"checkpoints.superseded-{tag}-{n}"
    os.replace(folder.checkpoints, target)
    if folder.averaged_checkpoint.is_file():
        os.replace(folder.averaged_checkpoint, target / folder.averaged_checkpoint.name)
    return target


# --------------------------------------------------------------------------- status file


@dataclass(frozen=True)
class Status:
    key: RunKey
    status: str
    recipe_id: str
    num_updates: int
    epochs: int
    reason: str
    evidence: dict[str, Any]
    doc: dict[str, Any]

    @property
    def diverged(self) -> bool:
        return self.status == DIVERGED


def write_status(path: Path, key: RunKey, status: str, **fields: Any) -> dict[str, Any]:
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    doc = {"status": status, **key.as_dict(), **fields}
    write_json(path, doc)
    return doc


def read_status(path: Path) -> Status:
    doc = read_json(path, "training status")
    status = doc.get("status")
    if status not in STATUSES:
        raise AdminError(f"{path}: unknown status {status!r}; expected one of {STATUSES}")
    try:
        key = RunKey(doc["dataset"], doc["variant"], doc["depth"], int(doc["seed"]))
    except (KeyError, TypeError, ValueError) as err:
        raise AdminError(
            f"{path} lacks {err}: it was written before run folders recorded their "
            "identity; rerun the workflow to retrain it"
        ) from None
    if key.variant not in VARIANTS:
        raise AdminError(f"{path}: unknown variant {key.variant!r}")
    parse_depth(key.depth)
    return Status(
        key, status, str(doc.get("recipe_id", "")), int(doc.get("num_updates", 0)),
        int(doc.get("epochs", 0)), str(doc.get("reason", "")), dict(doc.get("evidence") or {}),
        doc,
    )  # fmt: skip


# --------------------------------------------------------------------------- trainer lock


def _pid_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _slurm_job_state(job_id: str) -> str | None:
    """The job's state as squeue tells it (RUNNING, PENDING, ...), or None if gone."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        out = subprocess.run(
            [squeue, "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    state = out.stdout.strip().splitlines()
    return state[0] if out.returncode == 0 and state else None


_LIVE_JOB_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                    "REQUEUED", "RESIZING", "STAGE_OUT", "SIGNALING"}  # fmt: skip


def _holder_alive(holder: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the trainer named in a lock still runs, and how we know."""
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        start = _pid_start(pid)
        if start is not None and start == holder.get("pid_start"):
            return True, f"process {pid} is running on this host"
        return False, f"process {pid} is gone from this host"
    job = holder.get("slurm_job_id")
    if job:
        state = _slurm_job_state(str(job))
        if state in _LIVE_JOB_STATES:
            return True, f"SLURM job {job} is {state}"
        return False, f"SLURM job {job} is {state or 'no longer known to squeue'}"
    return True, "it runs on another host without a SLURM job, so its state is unknown"


def describe_holder(holder: Mapping[str, Any]) -> str:
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return (
        f"process {holder.get('pid')} on host {holder.get('host')}{job}, "
        f"since {holder.get('started')}"
    )


class RunLocked(AdminError):
    """Another trainer holds the run folder."""


class TrainerLock:
    """One trainer per run folder: ``with TrainerLock(folder): ...``.

    The lock file is created exclusively and names its holder (host, pid, SLURM job id,
    start time).  A second trainer stops at once with an error naming the holder; a
    stale lock (its process gone from this host, or its SLURM job no longer running) is
    taken over with a message.  ``say`` receives the messages.
    """

    def __init__(self, folder: RunFolder, say: Any = print):
        self.path = folder.lock
        self.say = say
        self.held = False

    def __enter__(self) -> TrainerLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _me(self) -> dict[str, Any]:
        pid = os.getpid()
        return {
            "host": socket.gethostname(),
            "pid": pid,
            "pid_start": _pid_start(pid),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID") or None,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(self._me()) + "\n")
            self.held = True
            return
        raise RunLocked(f"could not take the lock {self.path}: it keeps reappearing")

    def _take_over_if_stale(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return  # released meanwhile
        try:
            holder = json.loads(text)
        except json.JSONDecodeError:
            holder = {}
        alive, why = _holder_alive(holder) if holder else (False, "the lock file is unreadable")
        if alive:
            raise RunLocked(
                f"another trainer is working on {self.path.parent}: "
                f"{describe_holder(holder)} ({why}). Wait for it to finish or stop it; "
                f"if you are sure none runs, delete {self.path}"
            )
        # Rename first: of two trainers taking over at once, only one rename succeeds.
        aside = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        if aside.read_text(encoding="utf-8") != text:
            # Someone took the stale lock over between our read and our rename: that
            # lock is live, put it back (without clobbering) and try again.
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        self.say(f"took over a stale lock of {describe_holder(holder)} ({why})")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
