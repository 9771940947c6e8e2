"""Joint BPE with subword-nmt: learn (or take supplied) codes, apply on N cores.

    python -m admin.data.bpe --src S --tgt T --in DIR --out DIR
        (--merges N | --codes FILE | --dataset NAME) [--post-clean RATIO MIN MAX]
        [--splits train valid test] [--workers N]

Reads ``DIR/{split}.{S,T}`` (tokenized text) and writes ``OUT/code`` and
``OUT/{split}.{S,T}``.  Codes are learned as the reference scripts do:
``learn_bpe.py -s N < cat(train.S, train.T)`` (source first; the order matters for ties);
``--codes`` copies a supplied code file instead.  Applying is
``apply_bpe.py -c code`` per line; the lines are spread over ``--workers`` processes and
put back in order, so the output is byte-identical to one process.  ``--dataset`` takes the
merge count (and, for WMT'14 En-Fr, the post-BPE ``clean-corpus-n -ratio 1.5 1 250`` of
train and valid) from the registry.  The folder appears at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from subword_nmt.apply_bpe import BPE
from subword_nmt.learn_bpe import learn_bpe

from admin.common.atomic import atomic_path
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.data.corpus import clean_corpus, concat_files, require_files, write_stream
from admin.data.registry import get_dataset
from admin.data.textio import iter_lines, map_lines_iter


class ApplyBPE:
    """``apply_bpe.py -c CODE`` on one line (a picklable per-line function)."""

    def __init__(self, codes: Path) -> None:
        with open(codes, encoding="utf-8") as handle:
            self.bpe = BPE(handle)

    def __call__(self, line: str) -> str:
        return self.bpe.process_line(line + "\n")[:-1]


def learn_codes(train_files: Sequence[Path], merges: int, out: Path, workers: int = 1) -> None:
    """``cat train_files | learn_bpe.py -s merges > out``."""
    joined = out.parent / f".{out.name}.train"  # scratch file, always removed
    try:
        concat_files(train_files, joined)
        with (
            open(joined, encoding="utf-8") as infile,
            atomic_path(out) as tmp,
            open(tmp, "w", encoding="utf-8") as outfile,
        ):
            # subword-nmt's parallel vocabulary count merges chunks in file order, so the
            # codes equal the single-process ones (tests check this).
            learn_bpe(infile, outfile, merges, num_workers=max(1, workers))
    finally:
        joined.unlink(missing_ok=True)


def check_codes(codes: Path) -> None:
    if not codes.is_file():
        raise AdminError(f"BPE code file {codes} not found")
    with open(codes, encoding="utf-8") as handle:
        first = handle.readline()
        second = handle.readline()
    if not first.startswith("#version:") and len(first.rstrip("\n").split(" ")) != 2:
        raise AdminError(f"{codes}, line 1: not a subword-nmt code file (got {first[:60]!r})")
    if second and len(second.rstrip("\r\n").split(" ")) != 2:
        raise AdminError(f"{codes}, line 2: expected a merge 'a b', got {second.rstrip()[:60]!r}")


def run_bpe(
    in_dir: Path,
    out: Path,
    src: str,
    tgt: str,
    *,
    merges: int | None = None,
    codes: Path | None = None,
    post_clean: tuple[float, int, int] | None = None,
    splits: Sequence[str] = ("train", "valid", "test"),
    workers: int = 1,
) -> None:
    if (merges is None) == (codes is None):
        raise AdminError("give exactly one of --merges N and --codes FILE")
    require_files(in_dir, [f"{s}.{lang}" for s in splits for lang in (src, tgt)])
    with atomic_path(out, directory=True) as tmp:
        code_path = tmp / "code"
        if codes is not None:
            check_codes(codes)
            shutil.copyfile(codes, code_path)
        else:
            if "train" not in splits:
                raise AdminError("learning BPE codes needs the train split")
            assert merges is not None
            learn_codes(
                [in_dir / f"train.{lang}" for lang in (src, tgt)], merges, code_path, workers
            )
        apply = ApplyBPE(code_path)
        for split in splits:
            for lang in (src, tgt):
                target = tmp / (
                    f".bpe.{split}.{lang}" if post_clean and split != "test" else f"{split}.{lang}"
                )
                lines = iter_lines(in_dir / f"{split}.{lang}")
                write_stream(target, map_lines_iter(apply, lines, workers=workers))
            if post_clean and split != "test":
                ratio, lo, hi = post_clean
                clean_corpus(
                    tmp / f".bpe.{split}.{src}",
                    tmp / f".bpe.{split}.{tgt}",
                    tmp / f"{split}.{src}",
                    tmp / f"{split}.{tgt}",
                    lo,
                    hi,
                    ratio,
                )
                for lang in (src, tgt):
                    (tmp / f".bpe.{split}.{lang}").unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admin.data.bpe", description=__doc__)
    parser.add_argument("--src", required=True)
    parser.add_argument("--tgt", required=True)
    parser.add_argument("--in", dest="in_dir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--merges", type=int)
    parser.add_argument("--codes", type=Path, help="use these codes instead of learning")
    parser.add_argument("--dataset", help="take merges / post-clean from the registry")
    parser.add_argument("--post-clean", nargs=3, metavar=("RATIO", "MIN", "MAX"))
    parser.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    merges, post_clean = args.merges, None
    if args.dataset:
        dataset = get_dataset(args.dataset)
        if merges is None and args.codes is None:
            merges = dataset.bpe_merges
        post_clean = dataset.post_bpe_clean
    if args.post_clean:
        post_clean = (float(args.post_clean[0]), int(args.post_clean[1]), int(args.post_clean[2]))
    run_bpe(
        args.in_dir,
        args.out,
        args.src,
        args.tgt,
        merges=merges,
        codes=args.codes,
        post_clean=post_clean,
        splits=args.splits,
        workers=args.workers,
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
