"""WMT'14 En-De and En-Fr, step for step as Transformer-Clinic ``pre-process/wmt14en-*.sh``.

Train (per language, corpora concatenated in the script's order):
``normalize-punctuation.perl L | remove-non-printing-char.perl | tokenizer.perl -a -l L``.
Test: newstest2014 from ``test-full.tgz`` (the full 3003-segment set), ``grep '<seg id'``
+ sed (:mod:`admin.data.sgm`) ``| tokenizer.perl -a -l L`` (the script does not normalize
the test set).

* En-De: train = ``clean-corpus-n.perl train.tok en de train 1 80`` (default ratio 9);
  valid = ``dev/newstest2013`` through the train pipeline; joint BPE 32764.
* En-Fr: valid = every 1333rd line of the tokenized train (``NR%1333==0``), train = the
  rest; joint BPE 40000; then ``clean-corpus-n.perl -ratio 1.5 ... 1 250`` on the BPE'd
  train and valid (done by ``admin.data.bpe``, see ``Dataset.post_bpe_clean``).

Output: ``{train,valid,test}.{en,de|fr}`` (tokenized, cased, no BPE) + ``tmp/``, and
``test.raw.{de|fr}``: the newstest2014 references of the reference SGM as published (all
3003, in its order; :func:`admin.data.sgm.read_references`), for sacreBLEU.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from admin.data.archive import extract_members, gunzip
from admin.data.corpus import (
    clean_corpus,
    pipe_files,
    split_every,
    write_raw_reference,
    write_stream,
)
from admin.data.pipeline import LinePipeline
from admin.data.sgm import read_references, read_segments
from admin.data.textio import map_lines_iter

TEST_SEGMENTS = 3003
TRAIN_STEPS = ("normalize", "nonprint", "tokenize")

# (archive, member prefix; the member is prefix + "." + lang), in the scripts' order
EN_DE_TRAIN = (
    ("training-parallel-europarl-v7.tgz", "training/europarl-v7.de-en"),
    ("training-parallel-commoncrawl.tgz", "commoncrawl.de-en"),
    ("training-parallel-nc-v12.tgz", "training/news-commentary-v12.de-en"),
)
EN_FR_TRAIN = (
    ("training-parallel-europarl-v7.tgz", "training/europarl-v7.fr-en"),
    ("training-parallel-commoncrawl.tgz", "commoncrawl.fr-en"),
    ("training-parallel-un.tgz", "un/undoc.2000.fr-en"),
    ("training-parallel-nc-v9.tgz", "training/news-commentary-v9.fr-en"),
    ("training-giga-fren.tar", "giga-fren.release2.fixed"),  # members are .gz
)
EN_FR_VALID_EVERY = 1333
EN_DE_CLEAN = (9.0, 1, 80)


def _extract_train(
    archive_dir: Path, corpora: tuple[tuple[str, str], ...], langs: tuple[str, str], work: Path
) -> dict[str, list[Path]]:
    """Per language, the extracted train files in corpus order."""
    files: dict[str, list[Path]] = {lang: [] for lang in langs}
    for archive, prefix in corpora:
        gz = archive.endswith(".tar") and "giga" in archive
        names = [f"{prefix}.{lang}" + (".gz" if gz else "") for lang in langs]
        got = extract_members(archive_dir / archive, names, work)
        for lang, name in zip(langs, names, strict=True):
            path = got[name]
            if gz:
                path = gunzip(path, path.with_suffix(""))
            files[lang].append(path)
    return files


def _test(
    archive_dir: Path, pair: str, src: str, tgt: str, tmp: Path, work: Path, workers: int
) -> list[str]:
    """Tokenize newstest2014 into ``tmp/test.*``; return the raw target references."""
    names = {
        src: f"test-full/newstest2014-{pair}-src.{src}.sgm",
        tgt: f"test-full/newstest2014-{pair}-ref.{tgt}.sgm",
    }
    got = extract_members(archive_dir / "test-full.tgz", list(names.values()), work)
    for lang, name in names.items():
        segments = read_segments(got[name], expected=TEST_SEGMENTS)
        tok = LinePipeline(lang, ("tokenize",), aggressive=True)
        write_stream(tmp / f"test.{lang}", map_lines_iter(tok, segments, workers))
    return read_references(got[names[tgt]], expected=TEST_SEGMENTS)


def prepare_en_de(archive_dir: Path, out: Path, workers: int = 1) -> None:
    src, tgt = "en", "de"
    tmp, work = out / "tmp", out / ".work"
    tmp.mkdir(parents=True, exist_ok=True)
    train = _extract_train(archive_dir, EN_DE_TRAIN, (src, tgt), work)
    dev = extract_members(
        archive_dir / "dev.tgz", [f"dev/newstest2013.{lang}" for lang in (src, tgt)], work
    )
    for lang in (src, tgt):
        pipeline = LinePipeline(lang, TRAIN_STEPS, aggressive=True)
        pipe_files(train[lang], tmp / f"train.tags.en-de.tok.{lang}", pipeline, workers)
        pipe_files([dev[f"dev/newstest2013.{lang}"]], tmp / f"valid.{lang}", pipeline, workers)
    references = _test(archive_dir, "deen", src, tgt, tmp, work, workers)
    ratio, lo, hi = EN_DE_CLEAN
    clean_corpus(
        tmp / f"train.tags.en-de.tok.{src}",
        tmp / f"train.tags.en-de.tok.{tgt}",
        tmp / f"train.{src}",
        tmp / f"train.{tgt}",
        lo,
        hi,
        ratio,
    )
    _publish(out, tmp, (src, tgt))
    write_raw_reference(out, tgt, references)
    shutil.rmtree(work)


def prepare_en_fr(archive_dir: Path, out: Path, workers: int = 1) -> None:
    src, tgt = "en", "fr"
    tmp, work = out / "tmp", out / ".work"
    tmp.mkdir(parents=True, exist_ok=True)
    train = _extract_train(archive_dir, EN_FR_TRAIN, (src, tgt), work)
    for lang in (src, tgt):
        pipeline = LinePipeline(lang, TRAIN_STEPS, aggressive=True)
        tok = tmp / f"train.tags.en-fr.tok.{lang}"
        pipe_files(train[lang], tok, pipeline, workers)
        split_every(tok, EN_FR_VALID_EVERY, tmp / f"valid.{lang}", tmp / f"train.{lang}")
    references = _test(archive_dir, "fren", src, tgt, tmp, work, workers)
    _publish(out, tmp, (src, tgt))
    write_raw_reference(out, tgt, references)
    shutil.rmtree(work)


def _publish(out: Path, tmp: Path, langs: tuple[str, str]) -> None:
    for lang in langs:
        for split in ("train", "valid", "test"):
            shutil.copyfile(tmp / f"{split}.{lang}", out / f"{split}.{lang}")
