"""Prepare a registered dataset: raw archives -> tokenized/cleaned train/valid/test text.

    python -m admin.data.prepare --dataset NAME --archives DIR --out DIR [--workers N]

Reads the archives that ``admin.data.download`` put in ``--archives`` and writes, all at
once (a temporary folder renamed on success), ``--out/{train,valid,test}.{src,tgt}`` plus
the reference scripts' intermediates under ``--out/tmp/``.  No BPE yet: that is
``admin.data.bpe``.  The recipes are in :mod:`admin.data.iwslt14`,
:mod:`admin.data.wmt14` and :mod:`admin.data.multi30k`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from admin.common.atomic import atomic_path
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.data import iwslt14, multi30k, wmt14
from admin.data.registry import get_dataset

RECIPES: dict[str, Callable[[Path, Path, int], None]] = {
    "iwslt14_de_en": iwslt14.prepare,
    "wmt14_en_de": wmt14.prepare_en_de,
    "wmt14_en_fr": wmt14.prepare_en_fr,
    "multi30k_de_en": multi30k.prepare,
}


def prepare(dataset: str, archives: Path, out: Path, workers: int = 1) -> None:
    get_dataset(dataset)  # a clear error for an unknown name
    if not archives.is_dir():
        raise AdminError(f"archive folder {archives} does not exist (run admin.data.download)")
    with atomic_path(out, directory=True) as tmp:
        RECIPES[dataset](archives, tmp, workers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admin.data.prepare", description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--archives", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    prepare(args.dataset, args.archives, args.out, args.workers)
    return 0


if __name__ == "__main__":
    run_cli(main)
