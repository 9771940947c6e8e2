"""Multi30k task 1 De-En: our recipe (the paper does not use Multi30k; we document ours).

Splits: train (29000) / val (1014) -> valid / test_2016_flickr (1000) -> test.  Every line
is kept (the corpus is curated and aligned: no length cleaning, so line k of each split
stays line k of the official release).

Per line, per language:

1. Stray HTML entities are undone: the raw files contain ``&amp;`` (16 lines of train.en,
   1 of train.de) and one broken ``&amp,`` ("H&amp, R Block"); both become ``&``.  Left in,
   the tokenizer would escape them again into "stone &amp; amp ; tile" (as the official
   ``tok/`` files have it).  Bare ``&`` is left alone (the tokenizer escapes it once), and
   so is train.de line 12918 "Jeans & amp und", where the translator typed "& amp".
2. Then the dataset's own ``scripts/task1-tokenize.sh`` pipeline, with the current Moses
   scripts: ``lowercase.perl | normalize-punctuation.perl -l L | tokenizer.perl -l L``.
   No-break spaces (U+00A0, 44 lines of train.de), the TAB and trailing whitespace are
   whitespace to the tokenizer: they become single spaces / disappear.

So the output equals the official ``tok/*.lc.norm.tok.*`` files except on the entity
lines and where Moses changed since the Dec 2017 snapshot they used (the last word's
period is now always split off: "... st ." where they had "... st.").

``test.raw.en``: the test split's raw English, lines stripped of surrounding whitespace
(and stray entities undone as in step 1; test_2016_flickr has none), for sacreBLEU.

BPE: joint, 8000 merges (a 29k-pair corpus has ~20k word types per side; 8k merges keep
frequent words whole and give a joint vocabulary of ~9k).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from admin.data.archive import gunzip
from admin.data.corpus import pipe_files, write_raw_reference, zip_parallel
from admin.data.pipeline import LinePipeline
from admin.data.textio import iter_lines

SRC, TGT = "de", "en"
SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
STEPS = ("lowercase", "normalize", "tokenize")


def undo_entities(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        yield line.replace("&amp;", "&").replace("&amp", "&")


def prepare(archive_dir: Path, out: Path, workers: int = 1) -> None:
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    for split, name in SPLITS.items():
        raw = {
            lang: gunzip(archive_dir / f"{name}.{lang}.gz", work / f"{name}.{lang}")
            for lang in (SRC, TGT)
        }
        for _ in zip_parallel(raw[SRC], raw[TGT]):
            pass  # fails with both counts if the sides differ
        for lang in (SRC, TGT):
            pipeline = LinePipeline(lang, STEPS)
            pipe_files([raw[lang]], out / f"{split}.{lang}", pipeline, workers, undo_entities)
        if split == "test":
            references = (line.strip() for line in undo_entities(iter_lines(raw[TGT])))
            write_raw_reference(out, TGT, references)
    shutil.rmtree(work)
