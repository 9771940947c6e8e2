"""Admin's profiling job: one ``fairseq-train`` process that writes the profile and exits.

    python -m admin.profile_run --data-bin DIR --depth 6-6 --seed 1 \\
        --hparams '{"arch": "admin_transformer_iwslt_de_en", ...}' \\
        --out RUN/profile.json --log RUN/profile.log [--device cuda|cpu]

The plugin (``--init-type adaptive-profiling``) computes the omegas on the first
batch and exits 0 without a checkpoint.  It runs in one process on one device
(world size 1), in a throwaway save folder; ``--out`` appears only once the
run succeeded and the profile reads back and fits the model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from admin import profiling
from admin.atomic import atomic_path
from admin.cli import run_cli
from admin.errors import AdminError
from admin.fairseq_command import parse_depth, parse_hparams, run_logged, train_argv
from admin.launch import Launch, command, device_flags
from admin.variants import fairseq_flags


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m admin.profile_run", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data-bin", required=True, help="fairseq data-bin folder")
    p.add_argument("--depth", required=True, help="<encoder layers>-<decoder layers>, e.g. 6-6")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--hparams", required=True, help="JSON object of fairseq options (see docs)")
    p.add_argument("--out", required=True, type=Path, help="profile JSON to write")
    p.add_argument("--log", required=True, type=Path, help="fairseq's output goes here")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    return p


def profile(
    data_bin: str, depth: str, seed: int, hparams_json: str, out: Path, log: Path, device: str
) -> profiling.Profile:
    layers = parse_depth(depth)
    hparams = parse_hparams(hparams_json)
    launch = Launch(mode="single", device=device)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("", encoding="utf-8")  # this job's log only: a rerun starts afresh
    with atomic_path(out) as tmp_profile:
        # fairseq must start from initialisation: a fresh, empty save folder.
        save_dir = Path(tempfile.mkdtemp(prefix=".profile-save.", dir=out.parent))
        try:
            argv = train_argv(
                data_bin, hparams, layers, seed,
                fairseq_flags("admin", tmp_profile, profiling=True), save_dir,
            )  # fmt: skip
            code = run_logged(command(launch, argv + device_flags(launch)), [log])
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
    result = profile(
        args.data_bin, args.depth, args.seed, args.hparams, args.out, args.log, args.device
    )
    print(
        f"wrote {os.fspath(args.out)}: {len(result.encoder.omegas)} encoder and "
        f"{len(result.decoder.omegas)} decoder omegas"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
