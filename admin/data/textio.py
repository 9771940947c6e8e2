"""Line-oriented text I/O with Perl's line semantics and clear errors.

Lines are split on ``\\n`` only (like Perl's ``<STDIN>`` and unlike ``str.splitlines``,
which also splits on U+2028, U+0085, \\x1c ... that do occur in web-crawled corpora).
Invalid UTF-8 is an :class:`AdminError` naming the file and line.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from admin.common.atomic import atomic_path
from admin.common.errors import AdminError

T = TypeVar("T")
R = TypeVar("R")


def split_lines(data: bytes) -> list[bytes]:
    """Split on ``\\n``; a final line without a newline still counts as a line."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def decode_lines(lines: Sequence[bytes], source: str) -> list[str]:
    """Decode each line as strict UTF-8; the error names ``source`` and the 1-based line."""
    try:
        return [line.decode("utf-8") for line in lines]
    except UnicodeDecodeError:
        pass
    for number, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise AdminError(
                f"{source}, line {number}: invalid UTF-8 ({err.reason}, byte {err.start + 1} "
                f"of the line: {line[max(0, err.start - 20) : err.start + 20]!r})"
            ) from None
    raise AssertionError("unreachable")


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """All lines of a UTF-8 text file, without their ``\\n``."""
    return list(iter_lines(path))


def iter_lines(path: str | os.PathLike[str]) -> Iterator[str]:
    """Stream the lines of a UTF-8 text file (binary reads split on ``\\n`` only)."""
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise AdminError(f"{path}: file not found") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                context = raw[max(0, err.start - 20) : err.start + 20]
                raise AdminError(
                    f"{path}, line {number}: invalid UTF-8 ({err.reason}, byte "
                    f"{err.start + 1} of the line: {context!r})"
                ) from None


def write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> None:
    """Write lines (each gets a ``\\n``) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            for line in lines:
                handle.write(line)
                handle.write("\n")


def count_lines(path: str | os.PathLike[str]) -> int:
    """Lines as :func:`split_lines` counts them, read in blocks: a WMT side of gigabytes
    is never held in memory."""
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")  # a last line without a newline


def check_parallel(src: Sequence[object], tgt: Sequence[object], src_name: str, tgt_name: str):
    """A parallel corpus must have as many lines on each side."""
    check_counts(len(src), len(tgt), src_name, tgt_name)


def check_counts(src_lines: int, tgt_lines: int, src_name: str, tgt_name: str) -> None:
    if src_lines != tgt_lines:
        raise AdminError(
            f"parallel corpus sides differ in line count: {src_name} has {src_lines} lines, "
            f"{tgt_name} has {tgt_lines} lines"
        )


# --- order-preserving parallel map ----------------------------------------------------

_WORKER_FUNC: Callable[[str], str] | None = None


def _init_worker(func: Callable[[str], str]) -> None:
    global _WORKER_FUNC
    _WORKER_FUNC = func


def _run_chunk(chunk: list[str]) -> list[str]:
    assert _WORKER_FUNC is not None
    return [_WORKER_FUNC(line) for line in chunk]


def map_lines_iter(
    func: Callable[[str], str], lines: Iterable[str], workers: int = 1, chunk_size: int = 2000
) -> Iterator[str]:
    """Streaming :func:`map_lines`: results come out in input order, chunk by chunk."""
    if workers <= 1:
        for line in lines:
            yield func(line)
        return
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    # Chunks are read here, in the caller's thread (so a read error surfaces here), and at
    # most 2 * workers of them are in flight; results are yielded in submission order.
    with ctx.Pool(workers, initializer=_init_worker, initargs=(func,)) as pool:
        pending: collections.deque = collections.deque()
        for chunk in _iter_chunks(lines, chunk_size):
            pending.append(pool.apply_async(_run_chunk, (chunk,)))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def _iter_chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def map_lines(
    func: Callable[[str], str], lines: Iterable[str], workers: int = 1, chunk_size: int = 2000
) -> list[str]:
    """``[func(line) for line in lines]``, spread over ``workers`` processes.

    Chunks come back in input order, so the output is identical to the single-process
    one whatever ``workers`` is (``func`` must be a pure function of its line).
    """
    return list(map_lines_iter(func, lines, workers=workers, chunk_size=chunk_size))
