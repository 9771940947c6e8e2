"""Average the last N epoch checkpoints, as Transformer-Clinic's ``eval_*.sh`` does.

    python -m admin.average --checkpoints RUN/checkpoints --status RUN/status.json \\
        --last 10 [--upper-bound 50] --out RUN/average.json

This is fairseq's ``scripts/average_checkpoints.py --num-epoch-checkpoints N
--checkpoint-upper-bound E`` (not in the wheel): the N newest ``checkpoint<E>.pt``
with ``E <= upper bound``, every floating-point tensor of the model averaged.
It streams: one checkpoint at a time is memory-mapped and its model tensors
added to a float64 running sum, so memory holds the sum plus one model, never
all N and never the optimizer states.  Tensors that share storage (shared
embeddings and output projection) are summed once and stay shared.  The output,
``checkpoint_avg.pt`` beside ``--out``, keeps the newest checkpoint's other
fields (config, optimizer state, training progress) so that fairseq-generate
and fairseq-train ``--restore-file`` both load it.

``average.json``: ``{"status", "checkpoint": "checkpoint_avg.pt" | null,
"averaged": [file names], "epochs": [...]}``; a diverged run gives
``status: diverged`` and no checkpoint.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from admin.atomic import atomic_path, atomic_write_text
from admin.checkpoints import load_checkpoint
from admin.cli import run_cli
from admin.errors import AdminError

OUTPUT_NAME = "checkpoint_avg.pt"
_EPOCH = re.compile(r"^checkpoint(\d+)\.pt$")


def epoch_checkpoints(folder: Path, last: int, upper_bound: int | None) -> list[tuple[int, Path]]:
    """The ``last`` newest ``checkpoint<E>.pt`` with ``E <= upper_bound``, oldest first."""
    if last < 1:
        raise AdminError(f"--last must be >= 1, got {last}")
    if not folder.is_dir():
        raise AdminError(f"checkpoint folder {folder} does not exist")
    found = sorted(
        (int(m[1]), path)
        for path in folder.iterdir()
        if (m := _EPOCH.match(path.name)) and (upper_bound is None or int(m[1]) <= upper_bound)
    )
    if len(found) < last:
        bound = "" if upper_bound is None else f" with epoch <= {upper_bound}"
        raise AdminError(
            f"averaging needs {last} epoch checkpoints{bound} in {folder}, found {len(found)}: "
            f"{', '.join(p.name for _, p in found) or 'none'}"
        )
    return found[-last:]


def _aliases(model: dict[str, torch.Tensor]) -> dict[str, str]:
    """Each floating-point key mapped to the first key that views the same data."""
    first: dict[tuple, str] = {}
    out = {}
    for key, value in model.items():
        if value.is_floating_point():
            view = (value.untyped_storage().data_ptr(), value.storage_offset(),
                    tuple(value.shape), value.stride())  # fmt: skip
            out[key] = first.setdefault(view, key)
    return out


def average(paths: Sequence[Path], output: Path) -> None:
    """Write the average of ``paths`` (oldest first) to ``output``, streaming."""
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    aliases: dict[str, str] = {}
    state: dict[str, Any] = {}
    for index, path in enumerate(paths):
        state = load_checkpoint(path, mmap=True)
        model = state["model"]
        if index == 0:
            dtypes = {k: v.dtype for k, v in model.items()}
            aliases = _aliases(model)
            total = {k: model[k].to(torch.float64, copy=True) for k in set(aliases.values())}
        else:
            if model.keys() != dtypes.keys():
                raise AdminError(
                    f"{path} does not hold the same parameters as {paths[0]}: "
                    "the checkpoints come from different models"
                )
            for key, value in total.items():
                value += model[key].to(torch.float64)
        if index < len(paths) - 1:
            del state, model  # keep only the running sum between checkpoints
    # The newest checkpoint (loaded last) supplies everything but the averaged
    # weights; its non-float tensors (e.g. version counters) are kept as they are.
    newest = state["model"]
    for key in list(total):
        mean = (total.pop(key) / len(paths)).to(dtypes[key])
        for alias, source in aliases.items():
            if source == key:
                newest[alias] = mean
    with atomic_path(output) as tmp:
        torch.save(state, tmp)


def run(
    checkpoints: Path, status_file: Path, last: int, upper_bound: int | None, out: Path
) -> dict:
    try:
        status = json.loads(status_file.read_text(encoding="utf-8"))["status"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise AdminError(f"cannot read the training status {status_file}: {err}") from None
    if status == "diverged":
        result = {"status": "diverged", "checkpoint": None, "averaged": [], "epochs": []}
    elif status == "completed":
        chosen = epoch_checkpoints(checkpoints, last, upper_bound)
        average([p for _, p in chosen], out.parent / OUTPUT_NAME)
        result = {
            "status": "completed",
            "checkpoint": OUTPUT_NAME,
            "averaged": [p.name for _, p in chosen],
            "epochs": [e for e, _ in chosen],
        }
    else:
        raise AdminError(f"{status_file}: unknown status {status!r}")
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin.average", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", required=True, type=Path, help="the run's checkpoint folder")
    p.add_argument("--status", required=True, type=Path, help="the run's status.json")
    p.add_argument("--last", required=True, type=int, help="how many epoch checkpoints (N)")
    p.add_argument("--upper-bound", type=int, help="newest epoch to consider (default: all)")
    p.add_argument("--out", required=True, type=Path, help="average.json to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args.checkpoints, args.status, args.last, args.upper_bound, args.out)
    if result["checkpoint"]:
        print(f"averaged epochs {result['epochs']} into {args.out.parent / result['checkpoint']}")
    else:
        print("training diverged: nothing to average")
    return 0


if __name__ == "__main__":
    run_cli(main)
