"""Sentences per second for tokenize + BPE (printed, not asserted).

    python benchmarks/bench_preprocess.py [--workers N] [--limit N]

Input: the Multi30k train captions (de+en, lowercase+normalize+tokenize as our recipe)
and the IWSLT'14 dev/test segments (tokenize+lowercase as prepare-iwslt14.sh), from
../shared/data.  BPE uses the reference IWSLT'14 codes.  Three rows per corpus:
our pipeline on one process, on all cores, and a plain sacremoses + subword-nmt loop.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sacremoses import MosesPunctNormalizer, MosesTokenizer  # noqa: E402
from subword_nmt.apply_bpe import BPE  # noqa: E402

from admin.data.bpe import ApplyBPE  # noqa: E402
from admin.data.pipeline import LinePipeline  # noqa: E402
from admin.data.sgm import read_segments  # noqa: E402
from admin.data.textio import map_lines  # noqa: E402

SHARED = Path(os.environ.get("ADMIN_SHARED_DATA", REPO.parent / "shared" / "data"))
CODES = SHARED / "iwslt14_de_en_fairseq_prepared" / "code"
SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")


class TokBPE:
    """Our tokenize pipeline followed by BPE, one picklable per-line function."""

    def __init__(self, lang: str, steps: tuple[str, ...]) -> None:
        self.pipeline = LinePipeline(lang, steps)
        self.bpe = ApplyBPE(CODES)

    def __call__(self, line: str) -> str:
        return self.bpe(self.pipeline(line))


def corpora(limit: int) -> dict[str, list[tuple[str, tuple[str, ...], list[str]]]]:
    m30k = []
    for lang in ("de", "en"):
        raw = SHARED / "multi30k_task1_de_en" / "raw" / f"train.{lang}.gz"
        lines = gzip.open(raw).read().decode("utf-8").split("\n")[:-1][:limit]
        m30k.append((lang, ("lowercase", "normalize", "tokenize"), lines))
    iwslt = []
    for lang in ("de", "en"):
        lines = []
        for name in SETS:
            xml = SHARED / "iwslt14_de_en_raw" / f"IWSLT14.{name}.de-en.{lang}.xml"
            lines += read_segments(xml)
        iwslt.append((lang, ("tokenize", "lowercase"), lines[:limit]))
    return {"Multi30k train": m30k, "IWSLT'14 dev+test": iwslt}


def plain_loop(lang: str, lines: list[str]) -> None:
    tok = MosesTokenizer(lang)
    norm = MosesPunctNormalizer(lang)
    with open(CODES, encoding="utf-8") as handle:
        bpe = BPE(handle)
    for line in lines:
        bpe.process_line(tok.tokenize(norm.normalize(line.lower()), return_str=True).lower())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=10000, help="lines per language")
    args = parser.parse_args()
    print(f"{'corpus':<20} {'method':<36} {'sentences':>9} {'sent/s':>9}")
    for corpus, sides in corpora(args.limit).items():
        n = sum(len(lines) for _, _, lines in sides)
        rows = [
            ("ours, 1 process", 1),
            (f"ours, {args.workers} processes", args.workers),
        ]
        for label, workers in rows:
            start = time.perf_counter()
            for lang, steps, lines in sides:
                map_lines(TokBPE(lang, steps), lines, workers=workers)
            rate = n / (time.perf_counter() - start)
            print(f"{corpus:<20} {label:<36} {n:>9} {rate:>9.0f}")
        start = time.perf_counter()
        for lang, _, lines in sides:
            plain_loop(lang, lines)
        rate = n / (time.perf_counter() - start)
        print(f"{corpus:<20} {'sacremoses + subword-nmt, 1 process':<36} {n:>9} {rate:>9.0f}")


if __name__ == "__main__":
    main()
