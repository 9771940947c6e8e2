"""Local GPU leasing: outside SLURM, each step takes its own devices of the machine.

Snakemake gives local jobs no device ids (snakemake#281), so without this every job
would compute on ``cuda:0``.  A step that needs G devices (profile and evaluate 1, train
its processes per node) takes G free devices of the pool, each under a lock of its own
(``fcntl.flock`` on ``<lock dir>/gpu-<id>.lock``), and its processes see only those
(``CUDA_VISIBLE_DEVICES``).  The step process holds the locks for its whole life: the
kernel frees them when it ends, however it ends (SIGKILL included), and its children,
the fairseq ranks, get SIGTERM when it dies (``fairseq_command.run_logged``).  A step
takes all of its devices at once or none, so two waiting steps never hold half each.

The pool, the first of:

``ADMIN_GPU_POOL=0,1,2,3``   the ids to lease from.  Tests and rehearsals on the CPU set
                             it to simulate a GPU server: every profile, train and
                             evaluate step then leases (a CPU step as many ids as it
                             starts processes) while it computes on the CPU.  On a
                             machine with GPUs the ids must be real: they become the
                             step's ``CUDA_VISIBLE_DEVICES``.
``CUDA_VISIBLE_DEVICES``     the user's list (indices or ``GPU-``/``MIG-`` UUIDs).
the machine                  ``0 .. torch.cuda.device_count() - 1``.

A step on the CPU without ``ADMIN_GPU_POOL`` leases nothing.  Inside a SLURM job
(``SLURM_JOB_ID`` set) nothing is leased: SLURM's assignment stands.

Other settings: ``ADMIN_GPU_LOCK_DIR`` (default ``/tmp/admin-gpu-leases-<uid>``: every
local job of the user must see the same folder, on the machine's own disk),
``ADMIN_GPU_POLL_SECONDS`` (default 5: how often a waiting step tries again) and
``ADMIN_GPU_WAIT_SECONDS`` (default: wait as long as it takes).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from admin.common.errors import AdminError

POOL_ENV = "ADMIN_GPU_POOL"
LOCK_DIR_ENV = "ADMIN_GPU_LOCK_DIR"
POLL_ENV = "ADMIN_GPU_POLL_SECONDS"
WAIT_ENV = "ADMIN_GPU_WAIT_SECONDS"
VISIBLE = "CUDA_VISIBLE_DEVICES"
DEFAULT_POLL = 5.0
# A waiting step repeats its message when the holders change, and at least this often.
REPORT_EVERY = 60.0
# An index, or a UUID as nvidia-smi -L prints it (MIG's older form has slashes).
_ID = re.compile(r"^(\d+|(?:GPU|MIG)-[A-Za-z0-9/-]+)$")

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the pool


def parse_visible(text: str) -> tuple[str, ...]:
    """``CUDA_VISIBLE_DEVICES`` as CUDA reads it: the ids up to the first invalid one
    (so ``""`` and ``"-1"`` hide every device, ``"0,-1,1"`` shows only 0)."""
    ids: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if not _ID.match(item) or item in ids:
            break
        ids.append(item)
    return tuple(ids)


def parse_pool(text: str, name: str = POOL_ENV) -> tuple[str, ...]:
    """A pool the user wrote (``0,1,2``): every id valid and listed once, else an error."""
    ids = [item.strip() for item in text.split(",")]
    bad = [item for item in ids if not _ID.match(item)]
    if bad:
        raise AdminError(
            f"{name}={text!r}: {bad[0]!r} is not a device id (an index such as 0, or a "
            "GPU-/MIG- UUID as nvidia-smi -L prints it)"
        )
    twice = sorted({item for item in ids if ids.count(item) > 1})
    if twice:
        raise AdminError(f"{name}={text!r} lists {', '.join(twice)} more than once")
    return tuple(ids)


@dataclass(frozen=True)
class Pool:
    devices: tuple[str, ...]
    source: str  # where it came from: ADMIN_GPU_POOL, CUDA_VISIBLE_DEVICES or torch

    def __str__(self) -> str:
        return f"{','.join(self.devices) or 'none'} ({self.source})"


def _torch_device_count() -> int:
    import torch

    return torch.cuda.device_count()


def find_pool(
    env: Mapping[str, str], device_count: Callable[[], int] = _torch_device_count
) -> Pool:
    """The devices this machine's steps lease from (module docstring)."""
    simulated = env.get(POOL_ENV, "").strip()
    if simulated:
        return Pool(parse_pool(simulated), POOL_ENV)
    if VISIBLE in env:
        return Pool(parse_visible(env[VISIBLE]), VISIBLE)
    return Pool(tuple(str(i) for i in range(device_count())), "torch.cuda.device_count()")


# --------------------------------------------------------------------------- the need


@dataclass(frozen=True)
class Need:
    """What one step takes: ``count`` devices of ``pool``, or (count 0) nothing because
    it runs on the CPU or inside a SLURM job (``why``)."""

    count: int
    pool: Pool | None
    why: str = ""
    assigned: tuple[str, ...] = ()  # SLURM's devices (recorded, not leased)


def need(
    device: str,
    count: int,
    env: Mapping[str, str] | None = None,
    device_count: Callable[[], int] = _torch_device_count,
) -> Need:
    """The devices of a step on ``device`` (cuda or cpu, resolved) that starts ``count``
    processes on this machine.  More than the pool holds is an error here, before any work."""
    env = os.environ if env is None else env
    if count < 1:
        raise AdminError(f"a step needs at least one device, not {count}")
    job = env.get("SLURM_JOB_ID")
    if job:
        assigned = parse_visible(env.get(VISIBLE, "")) if device == "cuda" else ()
        return Need(0, None, f"assigned by SLURM job {job}", assigned)
    if device != "cuda" and not env.get(POOL_ENV, "").strip():
        return Need(0, None, "on the CPU")
    pool = find_pool(env, device_count)
    if count > len(pool.devices):
        raise AdminError(
            f"this step needs {count} GPU{'s' if count > 1 else ''} but the pool has "
            f"{len(pool.devices)}: {pool}; lower the rule's resources "
            "(resources.<rule>.gpus) or run it on a machine with more GPUs"
        )
    return Need(count, pool)


# --------------------------------------------------------------------------- the lease


@dataclass(frozen=True)
class Lease:
    devices: tuple[str, ...]  # what the step's processes see; () on the CPU
    leased: bool
    note: str  # one line for the step's log

    def variables(self) -> dict[str, str]:
        """The environment variables the step's processes get (none unless leased)."""
        return {VISIBLE: ",".join(self.devices)} if self.leased else {}

    def environ(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**(os.environ if env is None else env), **self.variables()}


def lock_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder of the lock files, made if missing.  The default one must be the
    user's own: a folder someone else made could hold locks that are never freed."""
    env = os.environ if env is None else env
    given = env.get(LOCK_DIR_ENV, "").strip()
    path = Path(given or f"/tmp/admin-gpu-leases-{os.getuid()}")
    try:
        path.mkdir(mode=0o777 if given else 0o700, parents=bool(given), exist_ok=True)
        owner = path.stat().st_uid
    except OSError as err:
        raise AdminError(f"cannot use {path} for the GPU locks ({LOCK_DIR_ENV}): {err}") from None
    if not given and owner != os.getuid():
        raise AdminError(f"{path} belongs to another user; set {LOCK_DIR_ENV} to a folder of yours")
    return path


def lock_path(folder: Path, device: str) -> Path:
    return folder / f"gpu-{quote(device, safe='')}.lock"


def _seconds(
    env: Mapping[str, str], name: str, default: float | None, least: float
) -> float | None:
    """A duration setting, in seconds and at least ``least``; else an error naming it."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= least or value == float("inf"):  # NaN fails the comparison
        raise AdminError(f"{name}={text!r} is not a number of seconds >= {least:g}")
    return value


def _try_lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise AdminError(f"cannot open the GPU lock {path}: {err}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _holder(path: Path) -> str:
    """Who holds a device, from what the holder wrote into its lock file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} ({info['step']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def try_take(folder: Path, pool: Pool, count: int, label: str) -> dict[str, int] | str:
    """``count`` free devices of ``pool`` locked (device -> locked fd), in pool order;
    else nothing is kept and the answer says who holds the others."""
    taken: dict[str, int] = {}
    busy: list[str] = []
    for device in pool.devices:
        if len(taken) == count:
            break
        fd = _try_lock(lock_path(folder, device))
        if fd is None:
            busy.append(device)
        else:
            taken[device] = fd
    if len(taken) < count:
        for fd in taken.values():
            os.close(fd)
        held = "; ".join(f"{d} held by {_holder(lock_path(folder, d))}" for d in busy)
        return f"{len(taken)} free, {held}"
    info = {"pid": os.getpid(), "host": socket.gethostname(), "step": label, "since": _now()}
    data = (json.dumps(info) + "\n").encode()
    for fd in taken.values():
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    return taken


@contextmanager
def hold(
    want: Need,
    label: str,
    say: Say = _stderr,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Lease]:
    """Take ``want``'s devices (waiting for them, saying so) and hold them until the
    block ends or the process dies.  ``label`` names the step to whoever waits."""
    env = os.environ if env is None else env
    if want.count == 0 or want.pool is None:
        devices = ", ".join(want.assigned) or "none"
        yield Lease(want.assigned, False, f"devices {devices} ({want.why}); nothing leased")
        return
    folder = lock_dir(env)
    poll = _seconds(env, POLL_ENV, DEFAULT_POLL, least=0.01) or DEFAULT_POLL
    limit = _seconds(env, WAIT_ENV, None, least=0)
    start = clock()
    reported, last_report = "", start
    while True:
        got = try_take(folder, want.pool, want.count, label)
        if isinstance(got, dict):
            break
        now = clock()
        waited = now - start
        message = f"waiting for {want.count} of pool {want.pool}: {got}"
        if limit is not None and waited >= limit:
            raise AdminError(f"gave up after {waited:.1f} s ({WAIT_ENV}={limit:g}) {message}")
        if got != reported or now - last_report >= REPORT_EVERY:
            say(f"{message} (waited {waited:.0f} s)")
            reported, last_report = got, now
        time.sleep(poll)
    devices = tuple(got)
    note = (
        f"devices {','.join(devices)} leased from pool {want.pool} at {_now()} after "
        f"{clock() - start:.1f} s; {VISIBLE}={','.join(devices)}"
    )
    try:
        yield Lease(devices, True, note)
    finally:
        # said before the locks go: no other step can have these devices before this time
        say(f"devices {','.join(devices)} released at {_now()}")
        for fd in got.values():
            os.close(fd)  # closing the last descriptor of a lock frees it
