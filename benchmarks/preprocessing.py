"""Preprocessing: tokenize + BPE sentences/s on real data, three ways side by side.

* ours, one process: :class:`admin.data.pipeline.LinePipeline` then
  :class:`admin.data.bpe.ApplyBPE`, as the workflow's tokenize and bpe steps run them;
* ours on every usable core (:func:`admin.data.textio.map_lines`);
* the plain reference loop: sacremoses + subword-nmt, one process.

Input, read from ``../shared/data`` (never copied into the repository): the
Multi30k train captions (lowercase, normalize, tokenize, as our Multi30k recipe)
and the IWSLT'14 dev/test segments (tokenize, lowercase, as prepare-iwslt14.sh).
BPE uses the reference IWSLT'14 codes.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.core import SHARED_DATA, Context, Figure, Result, interleave, ratios, timed

NAME = "preprocessing"
CODES = SHARED_DATA / "iwslt14_de_en_fairseq_prepared" / "code"
IWSLT_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")


@dataclass
class Side:
    lang: str
    steps: tuple[str, ...]
    lines: list[str]


class TokBPE:
    """Our tokenize pipeline followed by BPE: one picklable per-line function."""

    def __init__(self, lang: str, steps: tuple[str, ...], codes: Path = CODES) -> None:
        from admin.data.bpe import ApplyBPE
        from admin.data.pipeline import LinePipeline

        self.pipeline = LinePipeline(lang, steps)
        self.bpe = ApplyBPE(codes)

    def __call__(self, line: str) -> str:
        return self.bpe(self.pipeline(line))


def corpora(limit: int, shared: Path = SHARED_DATA) -> dict[str, list[Side]]:
    from admin.data.sgm import read_segments

    m30k = []
    for lang in ("de", "en"):
        raw = shared / "multi30k_task1_de_en" / "raw" / f"train.{lang}.gz"
        lines = gzip.decompress(raw.read_bytes()).decode("utf-8").split("\n")[:-1][:limit]
        m30k.append(Side(lang, ("lowercase", "normalize", "tokenize"), lines))
    iwslt = []
    for lang in ("de", "en"):
        lines = []
        for name in IWSLT_SETS:
            xml = shared / "iwslt14_de_en_raw" / f"IWSLT14.{name}.de-en.{lang}.xml"
            lines += read_segments(xml)
        iwslt.append(Side(lang, ("tokenize", "lowercase"), lines[:limit]))
    return {"Multi30k train": m30k, "IWSLT'14 dev+test": iwslt}


def plain_loop(side: Side, codes: Path = CODES) -> None:
    """The reference: sacremoses and subword-nmt called directly, line by line."""
    from sacremoses import MosesPunctNormalizer, MosesTokenizer
    from subword_nmt.apply_bpe import BPE

    tok = MosesTokenizer(side.lang)
    norm = MosesPunctNormalizer(side.lang)
    with open(codes, encoding="utf-8") as handle:
        bpe = BPE(handle)
    for line in side.lines:
        bpe.process_line(tok.tokenize(norm.normalize(line.lower()), return_str=True).lower())


def ours(sides: list[Side], workers: int) -> None:
    from admin.data.textio import map_lines

    for side in sides:
        map_lines(TokBPE(side.lang, side.steps), side.lines, workers=workers)


def rate(n: int, func: Callable[[], None]) -> Callable[[], float]:
    return lambda: n / timed(func)


def _warm() -> None:
    """Imports and first-call costs out of the first timed run."""
    TokBPE("de", ("lowercase", "normalize", "tokenize"))("Ein kleiner Test.")
    plain_loop(Side("de", (), ["Ein kleiner Test."]))


def run(ctx: Context) -> Result:
    # map_lines hands out chunks of 2000 lines: a side needs a chunk per core before
    # the all-cores figure means anything (the quick run's sides have one chunk).
    limit = 300 if ctx.quick else 4000
    _warm()
    rounds = ctx.repeats(2)
    figures: list[Figure] = []
    sizes = []
    for corpus, sides in corpora(limit).items():
        n = sum(len(side.lines) for side in sides)
        sizes.append(f"{corpus} {n}")
        samples = interleave(
            {
                "one": rate(n, lambda sides=sides: ours(sides, 1)),
                "all": rate(n, lambda sides=sides: ours(sides, ctx.cores)),
                "plain": rate(n, lambda sides=sides: [plain_loop(s) for s in sides]),
            },
            rounds,
        )
        one, many, plain = samples["one"], samples["all"], samples["plain"]
        figures += [
            Figure(NAME, f"{corpus}: ours, 1 process", one, "sent/s"),
            Figure(NAME, f"{corpus}: ours, {ctx.cores} processes", many, "sent/s"),
            Figure(NAME, f"{corpus}: sacremoses + subword-nmt loop", plain, "sent/s"),
            Figure(NAME, f"{corpus}: ours 1 process / plain loop", ratios(one, plain)),
            Figure(NAME, f"{corpus}: {ctx.cores} processes / 1 process", ratios(many, one)),
        ]
    notes = [
        f"sentences per run (de + en): {', '.join(sizes)}; the three ways interleaved; "
        "times include building the tokenizer and loading the BPE codes once per language"
    ]
    if ctx.quick:
        notes.append("quick run: too few lines per side (one 2000-line chunk) to use many cores")
    return Result(figures, notes)
