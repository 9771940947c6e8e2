"""IWSLT'14 De-En, step for step as fairseq ``examples/translation/prepare-iwslt14.sh``.

Train (per language): drop lines containing ``<url>``, ``<talkid>`` or ``<keywords>``;
delete the ``<title>``/``<description>`` tags (their text stays); ``tokenizer.perl -l L``.
Then ``clean-corpus-n.perl -ratio 1.5 ... 1 175``, ``lowercase.perl``, and every 23rd line
(``NR%23==0``) becomes valid, the rest train.  Other tag lines (``<speaker>``,
``<reviewer>``, ``<translator>``...) are *not* removed by the script and stay in train.

Dev/test (per set and language): ``grep '<seg id'`` + sed (see :mod:`admin.data.sgm`),
``tokenizer.perl -l L``, ``lowercase.perl`` -> ``tmp/IWSLT14.<set>.de-en.<L>``; test is
dev2010 + TEDX.dev2012 + tst2010 + tst2011 + tst2012 in that order.

Output folder: ``{train,valid,test}.{de,en}`` (tokenized, lowercased, no BPE), the
script's intermediates under ``tmp/``, and ``test.raw.en``: the English references of
the same segments in the same order as published (XML entities unescaped, cased,
untokenized; :func:`admin.data.sgm.read_references`), for sacreBLEU.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from admin.data.archive import extract_members
from admin.data.corpus import (
    clean_corpus,
    concat_files,
    pipe_files,
    split_every,
    write_raw_reference,
    write_stream,
)
from admin.data.pipeline import LinePipeline
from admin.data.sgm import read_references, read_segments
from admin.data.textio import map_lines_iter

SRC, TGT = "de", "en"
PAIR = "de-en"
ARCHIVE = "de-en.tgz"
TEST_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
VALID_EVERY = 23
CLEAN = (1.5, 1, 175)  # ratio, min, max

_DROP = ("<url>", "<talkid>", "<keywords>")
_STRIP = ("<title>", "</title>", "<description>", "</description>")


def strip_train_tags(lines: Iterable[str]) -> Iterator[str]:
    """The grep -v / sed part of the train pipeline."""
    for line in lines:
        if any(tag in line for tag in _DROP):
            continue
        for tag in _STRIP:
            line = line.replace(tag, "")
        yield line


def members() -> list[str]:
    names = [f"{PAIR}/train.tags.{PAIR}.{lang}" for lang in (SRC, TGT)]
    for name in TEST_SETS:
        names += [f"{PAIR}/IWSLT14.{name}.{PAIR}.{lang}.xml" for lang in (SRC, TGT)]
    return names


def prepare(archive_dir: Path, out: Path, workers: int = 1) -> None:
    """Write the prepared corpus into the (temporary) folder ``out``."""
    tmp = out / "tmp"
    work = out / ".work"
    tmp.mkdir(parents=True, exist_ok=True)
    files = extract_members(archive_dir / ARCHIVE, members(), work)

    for lang in (SRC, TGT):
        tok = LinePipeline(lang, ("tokenize",))
        pipe_files(
            [files[f"{PAIR}/train.tags.{PAIR}.{lang}"]],
            tmp / f"train.tags.{PAIR}.tok.{lang}",
            tok,
            workers,
            line_filter=strip_train_tags,
        )
    ratio, lo, hi = CLEAN
    clean_corpus(
        *(tmp / f"train.tags.{PAIR}.tok.{lang}" for lang in (SRC, TGT)),
        *(tmp / f"train.tags.{PAIR}.clean.{lang}" for lang in (SRC, TGT)),
        lo,
        hi,
        ratio,
    )
    lower = LinePipeline(SRC, ("lowercase",))
    for lang in (SRC, TGT):
        pipe_files(
            [tmp / f"train.tags.{PAIR}.clean.{lang}"], tmp / f"train.tags.{PAIR}.{lang}", lower
        )
        split_every(
            tmp / f"train.tags.{PAIR}.{lang}",
            VALID_EVERY,
            tmp / f"valid.{lang}",
            tmp / f"train.{lang}",
        )

    for lang in (SRC, TGT):
        tok_lc = LinePipeline(lang, ("tokenize", "lowercase"))
        for name in TEST_SETS:
            segments = read_segments(files[f"{PAIR}/IWSLT14.{name}.{PAIR}.{lang}.xml"])
            write_stream(
                tmp / f"IWSLT14.{name}.{PAIR}.{lang}", map_lines_iter(tok_lc, segments, workers)
            )
        concat_files(
            [tmp / f"IWSLT14.{name}.{PAIR}.{lang}" for name in TEST_SETS], tmp / f"test.{lang}"
        )
        for split in ("train", "valid", "test"):
            shutil.copyfile(tmp / f"{split}.{lang}", out / f"{split}.{lang}")
    references = [
        ref
        for name in TEST_SETS
        for ref in read_references(files[f"{PAIR}/IWSLT14.{name}.{PAIR}.{TGT}.xml"])
    ]
    write_raw_reference(out, TGT, references)
    shutil.rmtree(work)
