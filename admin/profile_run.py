"""Admin's profiling job: one ``fairseq-train`` process that writes the profile and exits.

    python -m admin.profile_run --data-bin DIR --recipe RUN/recipe.json \\
        [--runtime '{"log_interval": 100}'] --out RUN/profile.json --log RUN/profile.log \\
        [--device cuda|cpu|auto]

The plugin (``--init-type adaptive-profiling``) computes the omegas on the first
batch of the recipe's training run (its options, with the recipe's profiling options
on top) and exits 0 without a checkpoint.  It runs in one process on one device
(world size 1), in a throwaway save folder; ``--out`` appears only once the
run succeeded and the profile reads back and fits the model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from admin.common import gpu_lease, profiling
from admin.common.atomic import atomic_path
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.common.fairseq_command import parse_json_object, run_logged, train_argv
from admin.common.launch import Launch, command, device_flags, resolve_device, without_gpu_options
from admin.common.run_folder import Recipe, read_recipe
from admin.common.variants import fairseq_flags, needs_profile
from admin.recipe import RUNTIME_OPTIONS, in_run_folder


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m admin.profile_run", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data-bin", required=True, help="fairseq data-bin folder")
    p.add_argument("--recipe", required=True, type=Path, help="the run's recipe.json")
    p.add_argument("--runtime", default="{}", help="JSON: runtime options (log_interval, ...)")
    p.add_argument("--out", required=True, type=Path, help="profile JSON to write")
    p.add_argument("--log", required=True, type=Path, help="fairseq's output goes here")
    p.add_argument("--device", choices=("cuda", "cpu", "auto"), default="cuda",
                   help="auto (rehearsals): the GPU if torch sees one, else the CPU")  # fmt: skip
    return p


def profiling_options(recipe: Recipe, runtime: dict[str, Any]) -> dict[str, Any]:
    """The recipe's training options with its profiling options and the runtime ones."""
    unknown = sorted(set(runtime) - RUNTIME_OPTIONS)
    if unknown:
        raise AdminError(f"--runtime sets {', '.join(unknown)}, which it does not hold")
    identity = recipe.identity
    return {**identity["hparams"], **(identity.get("profile_hparams") or {}), **runtime}


def profile(
    data_bin: str, recipe_path: Path, runtime: dict[str, Any], out: Path, log: Path, device: str
) -> profiling.Profile:
    recipe = read_recipe(recipe_path)
    if not needs_profile(recipe.key.variant):
        raise AdminError(f"{recipe_path}: variant {recipe.key.variant!r} has no profiling run")
    identity = recipe.identity
    layers = (int(identity["encoder_layers"]), int(identity["decoder_layers"]))
    seed = int(identity["seed"])
    # fairseq's logging hooks write beside the profile (recipe.in_run_folder)
    hparams = profiling_options(recipe, in_run_folder(runtime, out.parent))
    device, note = resolve_device(device)
    if note:
        print(f"admin.profile_run: {note}")
        hparams = without_gpu_options(hparams)
    launch = Launch(mode="single", device=device)
    # One device of the machine (gpu_lease); more than the pool has stops here.
    gpus = gpu_lease.need(device, 1)
    with gpu_lease.hold(gpus, f"admin.profile_run {out}", say=_say) as lease:
        if lease.devices:  # leased here, or SLURM's
            _say(lease.note)
        return _profile(data_bin, hparams, layers, seed, launch, lease, out, log)


def _say(message: str) -> None:
    print(f"admin.profile_run: {message}", file=sys.stderr, flush=True)


def _profile(
    data_bin: str,
    hparams: dict[str, Any],
    layers: tuple[int, int],
    seed: int,
    launch: Launch,
    lease: gpu_lease.Lease,
    out: Path,
    log: Path,
) -> profiling.Profile:
    log.parent.mkdir(parents=True, exist_ok=True)
    # this job's log only (a rerun starts afresh), opened by the devices it ran on
    head = f"admin.profile_run: {lease.note}\n" if lease.devices else ""
    log.write_text(head, encoding="utf-8")
    with atomic_path(out) as tmp_profile:
        # fairseq must start from initialisation: a fresh, empty save folder.
        save_dir = Path(tempfile.mkdtemp(prefix=".profile-save.", dir=out.parent))
        try:
            argv = train_argv(
                data_bin, hparams, layers, seed,
                fairseq_flags("admin", tmp_profile, profiling=True), save_dir,
            )  # fmt: skip
            cmd = command(launch, argv + device_flags(launch), lease.environ())
            code = run_logged(cmd.argv, [log], env=cmd.env)
        finally:
            shutil.rmtree(save_dir, ignore_errors=True)
        if code != 0:
            raise AdminError(f"the profiling run failed (exit code {code}); see {log}")
        result = profiling.read_profile(tmp_profile)
        profiling.check_fits(
            out, result,
            encoder_layers=layers[0], decoder_layers=layers[1],
            encoder_embed_dim=result.encoder.embed_dim, decoder_embed_dim=result.decoder.embed_dim,
        )  # fmt: skip
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runtime = parse_json_object(args.runtime, "--runtime")
    result = profile(args.data_bin, args.recipe, runtime, args.out, args.log, args.device)
    print(
        f"wrote {os.fspath(args.out)}: {len(result.encoder.omegas)} encoder and "
        f"{len(result.decoder.omegas)} decoder omegas"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
