"""Binarize BPE'd text with ``fairseq-preprocess --joined-dictionary``.

    python -m admin.data.binarize --src S --tgt T --in DIR --out DATA_BIN [--workers N]
        [--srcdict DICT]

Reads ``DIR/{train,valid,test}.{S,T}``; writes the fairseq data-bin folder (``dict.S.txt``,
``dict.T.txt`` (identical: one joined dictionary), ``{split}.S-T.{S,T}.{bin,idx}``,
``preprocess.log``) as one atomic rename.  ``--srcdict`` reuses an existing dictionary.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from admin.common.atomic import atomic_path
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.common.fairseq_import import FAIRSEQ_MAIN
from admin.data.corpus import require_files
from admin.data.textio import check_counts, count_lines


def binarize(
    in_dir: Path,
    out: Path,
    src: str,
    tgt: str,
    *,
    workers: int = 1,
    srcdict: Path | None = None,
    splits: Sequence[str] = ("train", "valid", "test"),
) -> None:
    require_files(in_dir, [f"{s}.{lang}" for s in splits for lang in (src, tgt)])
    for split in splits:
        # fairseq would silently misalign unequal sides; fail with both counts (counted
        # in blocks, not decoded line by line: fairseq-preprocess reads them next)
        sides = (in_dir / f"{split}.{src}", in_dir / f"{split}.{tgt}")
        check_counts(*(count_lines(path) for path in sides), *map(str, sides))
    with atomic_path(out, directory=True) as tmp:
        cmd = [
            sys.executable,
            "-m",
            FAIRSEQ_MAIN,
            "fairseq_cli.preprocess",
            "--source-lang",
            src,
            "--target-lang",
            tgt,
            "--destdir",
            str(tmp),
            "--joined-dictionary",
            "--workers",
            str(max(1, workers)),
        ]
        for split, flag in (
            ("train", "--trainpref"),
            ("valid", "--validpref"),
            ("test", "--testpref"),
        ):
            if split in splits:
                cmd += [flag, str(in_dir / split)]
        if srcdict is not None:
            if not srcdict.is_file():
                raise AdminError(f"dictionary {srcdict} not found")
            cmd += ["--srcdict", str(srcdict)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
            raise AdminError(
                f"fairseq-preprocess failed (exit {result.returncode}) on {in_dir}:\n{tail}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admin.data.binarize", description=__doc__)
    parser.add_argument("--src", required=True)
    parser.add_argument("--tgt", required=True)
    parser.add_argument("--in", dest="in_dir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--srcdict", type=Path)
    parser.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    binarize(
        args.in_dir,
        args.out,
        args.src,
        args.tgt,
        workers=args.workers,
        srcdict=args.srcdict,
        splits=args.splits,
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
