"""File-level building blocks of the recipes: pipe a file through a line pipeline, clean a
parallel pair, split every n-th line off, concatenate.  All stream, so WMT-size corpora
never sit in memory, and all write through :func:`admin.common.atomic.atomic_path`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from admin.common.atomic import atomic_path
from admin.common.errors import AdminError
from admin.data.textio import iter_lines, map_lines_iter

PathLike = str | os.PathLike[str]


def write_stream(path: PathLike, lines: Iterable[str]) -> int:
    """Write ``lines`` (``\\n`` added) atomically; return how many were written."""
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            for line in lines:
                handle.write(line)
                handle.write("\n")
                n += 1
    return n


def chain_files(paths: Sequence[PathLike]) -> Iterator[str]:
    for path in paths:
        yield from iter_lines(path)


def pipe_files(
    inputs: Sequence[PathLike],
    output: PathLike,
    func: Callable[[str], str],
    workers: int = 1,
    line_filter: Callable[[Iterable[str]], Iterable[str]] | None = None,
) -> int:
    """``cat inputs | filter | func > output`` (``func`` per line, on ``workers`` cores)."""
    lines: Iterable[str] = chain_files(inputs)
    if line_filter is not None:
        lines = line_filter(lines)
    return write_stream(output, map_lines_iter(func, lines, workers=workers))


def zip_parallel(src: PathLike, tgt: PathLike) -> Iterator[tuple[str, str]]:
    """Line pairs of a parallel corpus; unequal lengths are an error giving both counts."""
    src_it, tgt_it = iter_lines(src), iter_lines(tgt)
    n = 0
    for s in src_it:
        t = next(tgt_it, None)
        if t is None:
            rest = 1 + sum(1 for _ in src_it)
            raise AdminError(
                f"parallel corpus sides differ in line count: {src} has {n + rest} lines, "
                f"{tgt} has {n} lines"
            )
        n += 1
        yield s, t
    rest = sum(1 for _ in tgt_it)
    if rest:
        raise AdminError(
            f"parallel corpus sides differ in line count: {src} has {n} lines, "
            f"{tgt} has {n + rest} lines"
        )


def clean_corpus(
    src: PathLike,
    tgt: PathLike,
    src_out: PathLike,
    tgt_out: PathLike,
    min_len: int,
    max_len: int,
    ratio: float = 9.0,
) -> tuple[int, int]:
    """``clean-corpus-n.perl -ratio R`` over a file pair; returns (lines in, lines out)."""
    # imported here: admin.data.moses builds the tokenizer's tables (0.5 s), which the
    # steps that import this module for other helpers (BPE, binarize) never use
    from admin.data.moses import PairCleaner

    cleaner = PairCleaner(min_len, max_len, ratio)
    n_in = n_out = 0
    with atomic_path(src_out) as tmp_s, atomic_path(tgt_out) as tmp_t:
        with (
            open(tmp_s, "w", encoding="utf-8", newline="\n") as fs,
            open(tmp_t, "w", encoding="utf-8", newline="\n") as ft,
        ):
            for s, t in zip_parallel(src, tgt):
                n_in += 1
                kept = cleaner(s, t)
                if kept is not None:
                    fs.write(kept[0] + "\n")
                    ft.write(kept[1] + "\n")
                    n_out += 1
    return n_in, n_out


def split_every(source: PathLike, every: int, picked: PathLike, rest: PathLike) -> tuple[int, int]:
    """awk ``NR % every == 0`` -> ``picked``, the other lines -> ``rest``."""
    n_picked = n_rest = 0
    with atomic_path(picked) as tmp_p, atomic_path(rest) as tmp_r:
        with (
            open(tmp_p, "w", encoding="utf-8", newline="\n") as fp,
            open(tmp_r, "w", encoding="utf-8", newline="\n") as fr,
        ):
            for number, line in enumerate(iter_lines(source), start=1):
                if number % every == 0:
                    fp.write(line + "\n")
                    n_picked += 1
                else:
                    fr.write(line + "\n")
                    n_rest += 1
    return n_picked, n_rest


def concat_files(inputs: Sequence[PathLike], output: PathLike) -> None:
    """``cat inputs > output`` in blocks, a line break added after a file that lacks one
    (the text is not decoded: the readers check it)."""
    with atomic_path(output) as tmp, open(tmp, "wb") as out:
        for path in inputs:
            with open(path, "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 20)
                size = handle.tell()
                if size:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":
                        out.write(b"\n")


def write_raw_reference(out: Path, lang: str, references: Iterable[str]) -> Path:
    """Write the test references as published (for sacreBLEU) into ``out/test.raw.<lang>``,
    one per line of ``out/test.<lang>``: a count that differs, or a line break inside a
    reference, is an error and nothing is written."""
    refs = list(references)
    tokenized = out / f"test.{lang}"
    expected = sum(1 for _ in iter_lines(tokenized))
    if len(refs) != expected:
        raise AdminError(
            f"{len(refs)} raw test references for {tokenized}, which has {expected} lines"
        )
    for number, ref in enumerate(refs, start=1):
        if "\n" in ref or "\r" in ref:
            raise AdminError(f"raw test reference {number} has a line break: {ref!r}")
    path = out / f"test.raw.{lang}"
    write_stream(path, refs)
    return path


def require_files(folder: Path, names: Iterable[str]) -> None:
    missing = [str(folder / n) for n in names if not (folder / n).is_file()]
    if missing:
        raise AdminError(f"missing input file(s): {', '.join(missing)}")
