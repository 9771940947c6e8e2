"""Tokenize any raw parallel corpus folder with the Moses pipeline (used by the demo).

    python -m admin.data.tokenize --src xx --tgt yy --in RAW_DIR --out DIR
        [--lowercase] [--normalize-punct] [--aggressive] [--clean-train MIN MAX RATIO]
        [--splits train valid test] [--workers N]

Reads ``RAW_DIR/{split}.{src,tgt}`` (UTF-8, one sentence per line, aligned) and writes
``DIR/{split}.{src,tgt}``: [lowercase.perl |] [normalize-punctuation.perl L |]
tokenizer.perl -l L [-a].  A language code without Moses non-breaking prefixes (``xx``)
falls back to the English list, as tokenizer.perl does; its language-specific apostrophe
rules apply only to the codes Moses knows (en, fr, it, ...).  With ``--clean-train`` the
train pair then goes through clean-corpus-n.perl.  The folder appears at once.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from admin.common.atomic import atomic_path
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.data.corpus import clean_corpus, pipe_files, zip_parallel
from admin.data.moses import has_prefix_file
from admin.data.pipeline import LinePipeline


def tokenize_corpus(
    raw: Path,
    out: Path,
    src: str,
    tgt: str,
    *,
    splits: Sequence[str] = ("train", "valid", "test"),
    lowercase: bool = False,
    normalize: bool = False,
    aggressive: bool = False,
    clean_train: tuple[int, int, float] | None = None,
    workers: int = 1,
) -> None:
    if src == tgt:
        raise AdminError(f"source and target language are both {src!r}")
    for split in splits:
        for lang in (src, tgt):
            if not (raw / f"{split}.{lang}").is_file():
                raise AdminError(f"missing input file {raw / f'{split}.{lang}'}")
    steps = (("lowercase",) if lowercase else ()) + (("normalize",) if normalize else ())
    steps += ("tokenize",)
    with atomic_path(out, directory=True) as tmp:
        for split in splits:
            for _ in zip_parallel(raw / f"{split}.{src}", raw / f"{split}.{tgt}"):
                pass  # unequal sides: error with both counts, before any work
            for lang in (src, tgt):
                pipeline = LinePipeline(lang, steps, aggressive=aggressive)
                target = tmp / f"{split}.{lang}"
                if split == "train" and clean_train is not None:
                    target = tmp / f".tok.{split}.{lang}"
                pipe_files([raw / f"{split}.{lang}"], target, pipeline, workers)
            if split == "train" and clean_train is not None:
                lo, hi, ratio = clean_train
                clean_corpus(
                    tmp / f".tok.train.{src}",
                    tmp / f".tok.train.{tgt}",
                    tmp / f"train.{src}",
                    tmp / f"train.{tgt}",
                    lo,
                    hi,
                    ratio,
                )
                for lang in (src, tgt):
                    (tmp / f".tok.train.{lang}").unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admin.data.tokenize", description=__doc__)
    parser.add_argument("--src", required=True)
    parser.add_argument("--tgt", required=True)
    parser.add_argument("--in", dest="raw", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    parser.add_argument("--lowercase", action="store_true")
    parser.add_argument("--normalize-punct", action="store_true")
    parser.add_argument("--aggressive", action="store_true", help="tokenizer.perl -a")
    parser.add_argument(
        "--clean-train", nargs=3, metavar=("MIN", "MAX", "RATIO"), help="clean-corpus-n on train"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    clean = None
    if args.clean_train:
        clean = (int(args.clean_train[0]), int(args.clean_train[1]), float(args.clean_train[2]))
    for lang in (args.src, args.tgt):
        if not has_prefix_file(lang):
            print(f"note: no Moses non-breaking prefixes for {lang!r}; using English's")
    tokenize_corpus(
        args.raw,
        args.out,
        args.src,
        args.tgt,
        splits=args.splits,
        lowercase=args.lowercase,
        normalize=args.normalize_punct,
        aggressive=args.aggressive,
        clean_train=clean,
        workers=args.workers,
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
