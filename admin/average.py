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
``checkpoint_avg.pt`` beside ``--out``, holds the model's weights only, with the
newest checkpoint's config and small bookkeeping fields (what fairseq-generate needs
to load it), never the optimizer state.

``average.json``: ``{"status", "recipe_id", "checkpoint": "checkpoint_avg.pt" | null,
"averaged": [file names], "epochs": [...]}``.  A run flagged ``diverged`` is averaged
too, over the epochs of its window it reached (``note`` says when they are fewer, or why
there is no checkpoint: none saved, or weights no longer finite).  The checkpoint
folder's record notes what was averaged, so that a run whose checkpoints were pruned
after scoring (``checkpoints.keep: none``) reuses its ``checkpoint_avg.pt`` when it is
averaged again with the same window, instead of failing.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from admin.common import run_folder as rf
from admin.common.atomic import atomic_path, atomic_write_text
from admin.common.checkpoints import load_checkpoint
from admin.common.cli import run_cli
from admin.common.errors import AdminError

OUTPUT_NAME = "checkpoint_avg.pt"
# What the averaged checkpoint keeps besides the weights: fairseq-generate's loader needs
# the config and reads the bookkeeping fields; the optimizer state is most of the file.
KEPT_FIELDS = ("args", "cfg", "optimizer_history", "extra_state")


def epoch_checkpoints(folder: Path, last: int, upper_bound: int | None) -> list[tuple[int, Path]]:
    """The ``last`` newest ``checkpoint<E>.pt`` with ``E <= upper_bound``, oldest first."""
    if last < 1:
        raise AdminError(f"--last must be >= 1, got {last}")
    if not folder.is_dir():
        raise AdminError(f"checkpoint folder {folder} does not exist")
    present = rf.epoch_checkpoints(folder)
    found = [(e, present[e]) for e in rf.averaging_window(present, last, upper_bound)]
    if len(found) < last:
        bound = "" if upper_bound is None else f" with epoch <= {upper_bound}"
        raise AdminError(
            f"averaging needs {last} epoch checkpoints{bound} in {folder}, found {len(found)}: "
            f"{', '.join(p.name for _, p in found) or 'none'}"
        )
    return found


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


# Tensors at least this big are compared for equality before saving (the embeddings).
TIE_MIN_ELEMENTS = 1 << 16


def tie_equal(model: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """Store equal large tensors once: fairseq writes a GPU run's tied embeddings (encoder,
    decoder, output projection) as separate copies (``utils.move_to_cpu``), so their
    averages are separate but equal.  Equal values make this lossless whatever tied them.
    Returns the (alias, kept) pairs."""
    kept: dict[tuple, list[str]] = {}
    tied = []
    for key, value in model.items():
        if not value.is_floating_point() or value.numel() < TIE_MIN_ELEMENTS:
            continue
        group = kept.setdefault((tuple(value.shape), value.dtype), [])
        same = next((k for k in group if model[k] is value or torch.equal(model[k], value)), None)
        if same is None:
            group.append(key)
        elif model[same] is not value:
            model[key] = model[same]
            tied.append((key, same))
    return tied


def average(paths: Sequence[Path], output: Path, require_finite: bool = False) -> list[str]:
    """Write the average of ``paths`` (oldest first) to ``output``, streaming; returns the
    parameters whose average is not finite (with ``require_finite``, nothing is written
    then)."""
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
    tie_equal(newest)
    nonfinite = [k for k in aliases if not bool(torch.isfinite(newest[k]).all())]
    if nonfinite and require_finite:
        return nonfinite
    weights_only = {"model": newest, **{k: state[k] for k in KEPT_FIELDS if k in state}}
    with atomic_path(output) as tmp:
        torch.save(weights_only, tmp)
    return nonfinite


def run(
    checkpoints: Path, status_file: Path, last: int, upper_bound: int | None, out: Path
) -> dict:
    status = rf.read_status(status_file)
    folder = rf.RunFolder(checkpoints.parent)
    window = [last, upper_bound]
    if status.diverged:
        result = _average_flagged(folder, status, last, upper_bound, out.parent / OUTPUT_NAME)
    else:
        output = out.parent / OUTPUT_NAME
        done = _earlier_average(folder, status, window, output)
        if done is not None:
            epochs = done["epochs"]
        else:
            chosen = epoch_checkpoints(checkpoints, last, upper_bound)
            average([p for _, p in chosen], output)
            epochs = [e for e, _ in chosen]
            rf.update_record(folder, averaged={"recipe_id": status.recipe_id, "window": window,
                                               "epochs": epochs})  # fmt: skip
        result = {
            "status": rf.COMPLETED,
            "recipe_id": status.recipe_id,
            "checkpoint": OUTPUT_NAME,
            "averaged": [f"checkpoint{e}.pt" for e in epochs],
            "epochs": epochs,
        }
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result


def _average_flagged(
    folder: rf.RunFolder, status: rf.Status, last: int, upper_bound: int | None, output: Path
) -> dict:
    """A run flagged ``diverged`` is averaged like any other, over the epochs of its window
    that it reached (a run stopped early may have fewer than ``last``).  With no epoch
    checkpoint, or weights that are no longer finite, there is nothing to score: the
    result says why, and nothing is deleted."""
    result: dict[str, Any] = {"status": rf.DIVERGED, "recipe_id": status.recipe_id,
                              "checkpoint": None, "averaged": [], "epochs": []}  # fmt: skip
    present = rf.epoch_checkpoints(folder.checkpoints) if folder.checkpoints.is_dir() else {}
    epochs = rf.averaging_window(present, last, upper_bound)
    if not epochs:
        result["note"] = "no epoch checkpoint: the run was stopped before its first epoch ended"
        return result
    nonfinite = average([present[e] for e in epochs], output, require_finite=True)
    if nonfinite:
        output.unlink(missing_ok=True)  # an older average would read as this one
        result["note"] = (f"the average of epochs {epochs} is not finite ({len(nonfinite)} "
                          f"parameters, e.g. {nonfinite[0]}): nothing to score")  # fmt: skip
        return result
    if len(epochs) < last:
        result["note"] = f"the run reached {len(epochs)} of the window's {last} epochs"
    return {**result, "checkpoint": OUTPUT_NAME,
            "averaged": [f"checkpoint{e}.pt" for e in epochs], "epochs": epochs}  # fmt: skip


def _earlier_average(
    folder: rf.RunFolder, status: rf.Status, window: list, output: Path
) -> dict | None:
    """The record of an earlier average of the same run, window and epochs whose epoch
    checkpoints were pruned since (so it cannot be recomputed), or None.  A run trained
    on since has other epochs in its window: it is averaged again."""
    record = rf.read_record(folder) or {}
    done = record.get("averaged") or {}
    if not record.get("pruned") or not output.is_file():
        return None
    if done.get("recipe_id") != status.recipe_id or done.get("window") != window:
        return None
    wanted = rf.averaging_window(range(1, status.epochs + 1), *window)
    return done if done.get("epochs") == wanted else None


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
    flagged = " (a run flagged diverged)" if result["status"] == rf.DIVERGED else ""
    if result["checkpoint"]:
        where = args.out.parent / result["checkpoint"]
        print(f"averaged epochs {result['epochs']} into {where}{flagged}")
    else:
        print(f"nothing to average{flagged}: {result.get('note', '')}")
    return 0


if __name__ == "__main__":
    run_cli(main)
