"""A small fairseq data-bin of real IWSLT'14 De-En sentences, made once per run.

The reference preparation in ``../shared/data`` has BPE'd valid and test sets;
the first lines of valid become our train split and the next ones our valid
split, binarized by the real ``fairseq-preprocess`` with a joined dictionary
(as the tests' ``tiny_databin``).  Nothing is copied into the repository.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from admin.budget import SPECIAL_SYMBOLS
from benchmarks.core import SHARED_DATA, VENV_BIN, Context

PREPARED = SHARED_DATA / "iwslt14_de_en_fairseq_prepared"
VALID_LINES = 200


def iwslt_databin(ctx: Context, train_lines: int) -> Path:
    """The data-bin's folder (cached in ``ctx`` for the rest of the run)."""
    key = f"iwslt_databin_{train_lines}"
    if key in ctx.cache:
        return ctx.cache[key]
    raw = ctx.workdir / f"iwslt-raw-{train_lines}"
    dest = ctx.workdir / f"iwslt-databin-{train_lines}"
    raw.mkdir(parents=True, exist_ok=True)
    spans = {"train": (0, train_lines), "valid": (train_lines, train_lines + VALID_LINES)}
    for lang in ("de", "en"):
        lines = (PREPARED / f"valid.{lang}").read_text(encoding="utf-8").splitlines(True)
        if len(lines) < train_lines + VALID_LINES:
            raise ValueError(f"{PREPARED}/valid.{lang} has only {len(lines)} lines")
        for split, (start, stop) in spans.items():
            (raw / f"{split}.{lang}").write_text("".join(lines[start:stop]), encoding="utf-8")
    subprocess.run(
        [
            str(VENV_BIN / "fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
            "--trainpref", str(raw / "train"), "--validpref", str(raw / "valid"),
            "--destdir", str(dest), "--joined-dictionary", "--workers", "1",
        ],
        check=True, capture_output=True, env=ctx.env(),
    )  # fmt: skip
    ctx.cache[key] = dest
    return dest


def padded_databin(ctx: Context, train_lines: int, vocab: int) -> Path:
    """The data-bin of :func:`iwslt_databin` binarized again with its joined dictionary
    padded to ``vocab`` symbols (fairseq's ``madeupword`` filler, as ``--padding-factor``
    adds it), so that a model built on it has a preset's embedding size."""
    key = f"padded_databin_{train_lines}_{vocab}"
    if key in ctx.cache:
        return ctx.cache[key]
    base = iwslt_databin(ctx, train_lines)
    words = (base / "dict.en.txt").read_text(encoding="utf-8").splitlines(True)
    missing = vocab - SPECIAL_SYMBOLS - len(words)
    if missing < 0:
        raise ValueError(f"the base dictionary has {len(words)} words, more than {vocab}")
    padded = ctx.workdir / f"dict-{vocab}.txt"
    filler = [f"madeupword{i:06d} 0\n" for i in range(missing)]
    padded.write_text("".join(words + filler), encoding="utf-8")
    raw = ctx.workdir / f"iwslt-raw-{train_lines}"
    dest = ctx.workdir / f"iwslt-databin-{train_lines}-vocab{vocab}"
    subprocess.run(
        [
            str(VENV_BIN / "fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
            "--trainpref", str(raw / "train"), "--validpref", str(raw / "valid"),
            "--destdir", str(dest), "--joined-dictionary", "--srcdict", str(padded),
            "--workers", "1",
        ],
        check=True, capture_output=True, env=ctx.env(),
    )  # fmt: skip
    ctx.cache[key] = dest
    return dest
