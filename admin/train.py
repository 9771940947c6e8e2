"""Train one run folder with ``fairseq-train``; resume it; call divergence a result.

    python -m admin.train --data-bin DIR --run-dir RUN --variant admin --depth 6-6 --seed 1 \\
        --hparams '{"arch": "admin_transformer_iwslt_de_en", "max_epoch": 50, ...}' \\
        [--profile RUN/profile.json] [--device cuda|cpu] \\
        [--nproc-per-node N] [--nnodes M] [--launcher auto|single|torchrun|srun] \\
        [--log RUN/train.log] [--status RUN/status.json]

Checkpoints go to ``RUN/checkpoints``.  If ``checkpoint_last.pt`` is there,
fairseq resumes from it; if only older checkpoints are, the newest is restored;
a run never starts over while a checkpoint exists.

Output history: every attempt is appended to ``RUN/checkpoints/train.log``
(which survives a failed job, like the checkpoints) and ``--log`` is that whole
history, rewritten at the start of each attempt and then followed live.

Exit 0 with ``status.json`` = ``completed`` (fairseq reached max_epoch or
max_update) or ``diverged`` (non-finite loss or gradients, or fp16's minimum
loss scale); any other failure exits non-zero and writes no status.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from admin.atomic import atomic_write_text
from admin.cli import run_cli
from admin.errors import AdminError
from admin.fairseq_command import parse_depth, parse_hparams, run_logged, train_argv
from admin.fairseq_log import divergence_reason, parse
from admin.launch import MODES, Launch, command, device_flags
from admin.variants import VARIANTS, fairseq_flags, needs_profile

HISTORY = "train.log"  # inside the checkpoint folder
_EPOCH_CHECKPOINT = re.compile(r"^checkpoint(\d+)(?:_(\d+))?\.pt$")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin.train", description=__doc__.split("\n")[0])
    p.add_argument("--data-bin", required=True, help="fairseq data-bin folder")
    p.add_argument("--run-dir", required=True, type=Path, help="the run folder")
    p.add_argument("--variant", required=True, choices=list(VARIANTS))
    p.add_argument("--depth", required=True, help="<encoder layers>-<decoder layers>, e.g. 6-6")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--hparams", required=True, help="JSON object of fairseq options (see docs)")
    p.add_argument("--profile", type=Path, help="Admin profile (variant admin only)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--nproc-per-node", type=int, default=1, help="processes (GPUs) per node")
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--launcher", choices=MODES, default="auto")
    p.add_argument("--log", type=Path, help="default: RUN/train.log")
    p.add_argument("--status", type=Path, help="default: RUN/status.json")
    return p


def restore_flags(save_dir: Path) -> list[str]:
    """Where to resume from, so that no run restarts while it has a checkpoint.

    fairseq resumes from ``checkpoint_last.pt`` by itself.  fairseq writes that
    file last, by a plain copy, so a kill can leave it missing or truncated;
    then the newest epoch/update checkpoint is restored instead.
    """
    last = save_dir / "checkpoint_last.pt"
    if last.is_file():
        if _readable(last):
            return []
        last.replace(last.with_name("checkpoint_last.pt.truncated"))
    candidates = []
    for path in save_dir.glob("checkpoint*.pt"):
        m = _EPOCH_CHECKPOINT.match(path.name)
        if m and _readable(path):
            candidates.append((int(m[1]), int(m[2] or 0), path))
    if not candidates:
        return []
    # An epoch's mid-epoch checkpoints (checkpoint<E>_<U>.pt) precede its end (checkpoint<E>.pt).
    newest = max(candidates, key=lambda c: (c[0], c[1] == 0, c[1]))
    return ["--restore-file", str(newest[2])]


def _readable(path: Path) -> bool:
    """A torch checkpoint is a zip archive: a truncated one has no central directory."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        return False


def train(args: argparse.Namespace) -> dict[str, Any]:
    depth = parse_depth(args.depth)
    hparams = parse_hparams(args.hparams)
    device = "cpu" if hparams.get("cpu") else args.device
    launch = Launch(args.launcher, args.nproc_per_node, args.nnodes, device)
    run_dir: Path = args.run_dir
    save_dir = run_dir / "checkpoints"
    log = args.log or run_dir / "train.log"
    status_path = args.status or run_dir / "status.json"
    if needs_profile(args.variant):
        if args.profile is None:
            raise AdminError(f"variant {args.variant!r} needs --profile (run admin.profile_run)")
        if not args.profile.is_file():
            raise AdminError(f"Admin profile {args.profile} does not exist")
    elif args.profile is not None:
        raise AdminError(f"variant {args.variant!r} takes no --profile")

    save_dir.mkdir(parents=True, exist_ok=True)
    history = save_dir / HISTORY
    argv = train_argv(
        args.data_bin, hparams, depth, args.seed,
        fairseq_flags(args.variant, args.profile), save_dir,
    )  # fmt: skip
    argv += device_flags(launch) + restore_flags(save_dir)
    cmd = command(launch, argv)

    offset = history.stat().st_size if history.exists() else 0
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with open(history, "a", encoding="utf-8") as handle:
        handle.write(f"==== admin.train attempt {stamp}: {json.dumps(cmd)}\n")
    log.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(history, log)
    code = run_logged(cmd, [history, log])

    with open(history, encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        attempt = handle.read()
    progress = parse(attempt.splitlines())
    reason = divergence_reason(attempt, progress)
    if reason is None and code != 0:
        raise TrainingFailed(code, log)
    if reason is None and "done training" not in attempt:
        raise AdminError(f"fairseq-train exited 0 but did not finish training; see {log}")
    status = {
        "status": "completed" if reason is None else "diverged",
        "num_updates": progress.num_updates,
        "epochs": progress.epochs,
        "reason": reason or "reached max_epoch/max_update",
        "world_size": progress.world_size or launch.world_size,
    }
    atomic_write_text(status_path, json.dumps(status, indent=2) + "\n")
    return status


class TrainingFailed(Exception):
    """fairseq failed for a reason other than divergence (not an input error)."""

    def __init__(self, code: int, log: Path):
        super().__init__(f"fairseq-train failed with exit code {code}; see {log}")
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = train(args)
    except TrainingFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"{status['status']}: {status['num_updates']} updates, {status['epochs']} epochs"
        + ("" if status["status"] == "completed" else f" ({status['reason']})")
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
