"""What a run that never learned to translate scores: the baselines of :mod:`admin.divergence`.

Two source-blind models of a data-bin's binarized target side, in bits per valid target
token (EOS included), the unit of fairseq's ``nll_loss``:

* the unigram: the add-one-smoothed token frequencies of the training target.  A model on
  the unigram plateau learned the frequencies and nothing else (rule 3, "fails to train");
* the bigram: Witten-Bell interpolated with that unigram.  A model that ends no better than
  it never used the source sentence (rule 4, "stuck").

Both read fairseq's binarized files with plain numpy (no fairseq import): the training
target's counts once (:func:`read`), memory bounded on WMT-sized data.

The bigram's first token of a sentence is predicted from EOS, as fairseq's decoder starts
from it.  Its counting is bounded: up to ``SAMPLE_TOKENS`` training tokens, in ``WINDOWS``
evenly spaced stretches per shard when the target is larger (WMT); the unigram it backs off
to counts every token.  Fewer counts only make the bigram weaker, so the baseline errs
towards calling a run healthy.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from admin.common.errors import AdminError

# --- reading the binarized target -----------------------------------------------------------

_MMAP_MAGIC = b"MMIDIDX\x00\x00"
_SPECIALS = 4  # <s> <pad> </s> <unk>: fairseq's Dictionary adds them before dict.txt's symbols
_CHUNK = 1 << 24  # tokens per bincount: bounded memory on WMT-sized data


@dataclass(frozen=True)
class UnigramBaseline:
    """Cross-entropy (bits per valid target token, EOS included) of the training target's
    add-one-smoothed unigram distribution: what a model that learned only token frequencies gets."""

    bits: float
    valid_tokens: int
    valid_sentences: int
    train_tokens: int
    vocab: int
    target: str  # the binarized target files, relative to the data-bin

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "bits": round(self.bits, 4)}


def _dtype(code: int) -> Any:
    import numpy as np

    # fairseq.data.indexed_dataset._code_to_dtype (mmap format): token ids are integers.
    dtypes = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16,
              9: np.uint32, 10: np.uint64}  # fmt: skip
    return dtypes.get(code)


def read_binarized(prefix: Path) -> tuple[Any, int]:
    """Token ids (a read-only memmap) and sentence count of ``prefix.{idx,bin}``
    (fairseq's default ``mmap`` dataset format)."""
    import numpy as np

    idx, binary = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    for path in (idx, binary):
        if not path.is_file():
            raise AdminError(f"binarized data file {path} does not exist")
    with open(idx, "rb") as f:
        if f.read(9) != _MMAP_MAGIC:
            raise AdminError(f"{idx} is not a fairseq mmap index (binarize with the default "
                             "--dataset-impl mmap)")  # fmt: skip
        (version,) = struct.unpack("<Q", f.read(8))
        (code,) = struct.unpack("<B", f.read(1))
        (sentences,) = struct.unpack("<Q", f.read(8))
        sizes = np.fromfile(f, dtype=np.int32, count=sentences)
    dtype = _dtype(code)
    if version != 1 or dtype is None or len(sizes) != sentences:
        raise AdminError(f"{idx}: unsupported or truncated index (version {version}, dtype {code})")
    if binary.stat().st_size == 0:
        tokens = np.zeros(0, dtype=dtype)
    else:
        tokens = np.memmap(binary, dtype=dtype, mode="r")
    if tokens.size != int(sizes.sum(dtype=np.int64)):
        raise AdminError(f"{binary} holds {tokens.size} tokens, its index says {sizes.sum()}")
    return tokens, sentences


def _counts(tokens: Any, vocab: int, where: Path) -> Any:
    import numpy as np

    counts = np.zeros(vocab, dtype=np.int64)
    for start in range(0, tokens.size, _CHUNK):
        chunk = np.bincount(np.asarray(tokens[start : start + _CHUNK]), minlength=vocab)
        if chunk.size > vocab:
            raise AdminError(
                f"{where} has token id {chunk.size - 1}, beyond its dictionary of {vocab} "
                "symbols: data-bin and dictionary do not match"
            )
        counts += chunk
    return counts


def language_pair(data_bin: Path) -> tuple[str, str]:
    """(source, target) as fairseq infers them: from the ``train.S-T.*`` file names."""
    pairs = set()
    for name in os.listdir(data_bin):
        parts = name.split(".")
        if len(parts) >= 3 and parts[0] == "train" and parts[1].count("-") == 1:
            source, target = parts[1].split("-")
            pairs.add((source, target))
    if len(pairs) != 1:
        found = ", ".join(sorted(f"{s}-{t}" for s, t in pairs)) or "none"
        raise AdminError(f"{data_bin}: cannot tell the language pair from train.S-T.* files "
                         f"(found {found}); give the target language")  # fmt: skip
    return pairs.pop()


def _split_prefix(data_bin: Path, split: str, source: str, target: str) -> Path:
    for pair in (f"{source}-{target}", f"{target}-{source}"):  # fairseq tries both orders
        prefix = data_bin / f"{split}.{pair}.{target}"
        if Path(f"{prefix}.idx").is_file():
            return prefix
    raise AdminError(f"{data_bin}: no binarized {split} target ({split}.{source}-{target}."
                     f"{target}.idx)")  # fmt: skip


@dataclass(frozen=True)
class TargetFiles:
    """The binarized target side of a data-bin, as fairseq reads it."""

    vocab: int  # every symbol the model can predict (fairseq's specials included)
    train: tuple[Path, ...]  # train, train1, train2, ... prefixes
    valid: Path

    def describe(self) -> str:
        return " + ".join(p.name for p in self.train) + f" -> {self.valid.name}"


def target_files(
    data_bin: str | os.PathLike[str],
    target_lang: str | None = None,
    source_lang: str | None = None,
    valid_subset: str = "valid",
) -> TargetFiles:
    """The data-bin's binarized target files and the size of its target dictionary."""
    data_bin = Path(data_bin)
    if not data_bin.is_dir():
        raise AdminError(f"data-bin {data_bin} is not a folder")
    if source_lang is None or target_lang is None:
        inferred = language_pair(data_bin)
        if target_lang is None:
            source_lang, target_lang = inferred
        elif source_lang is None:
            source_lang = inferred[0] if inferred[1] == target_lang else inferred[1]
    assert source_lang is not None and target_lang is not None
    dictionary = data_bin / f"dict.{target_lang}.txt"
    if not dictionary.is_file():
        raise AdminError(f"target dictionary {dictionary} does not exist")
    with open(dictionary, encoding="utf-8") as f:
        vocab = _SPECIALS + sum(1 for line in f if line.strip())
    train = []
    for k in range(1000):  # fairseq reads train, train1, train2, ... while they exist
        split = "train" if k == 0 else f"train{k}"
        try:
            train.append(_split_prefix(data_bin, split, source_lang, target_lang))
        except AdminError:
            if k == 0:
                raise
            break
    valid = _split_prefix(data_bin, valid_subset, source_lang, target_lang)
    return TargetFiles(vocab, tuple(train), valid)


def train_target_counts(files: TargetFiles) -> Any:
    """Token counts of the whole binarized training target (EOS and UNK included)."""
    import numpy as np

    counts = np.zeros(files.vocab, dtype=np.int64)
    for prefix in files.train:
        tokens, _ = read_binarized(prefix)
        counts += _counts(tokens, files.vocab, Path(f"{prefix}.bin"))
    return counts


def add_one_unigram(counts: Any) -> Any:
    """log2 probabilities of the add-one-smoothed unigram over the whole dictionary."""
    import numpy as np

    return np.log2(counts + 1.0) - math.log2(int(counts.sum()) + counts.size)


def unigram_baseline(
    data_bin: str | os.PathLike[str],
    target_lang: str | None = None,
    source_lang: str | None = None,
    valid_subset: str = "valid",
    train_counts: Any = None,
) -> UnigramBaseline:
    """The target side's unigram cross-entropy on the valid set, from the data-bin
    (``train_counts``: the training target's counts, if already read).

    Counts are the binarized training target's (EOS and UNK included, as the
    model sees them), not ``dict.<tgt>.txt``'s: with a joined dictionary those
    mix in the source language.  Add-one smoothing over the whole dictionary
    (every symbol the model can predict), evaluated on the valid target tokens
    including EOS, in bits: the unit of fairseq's ``nll_loss``.
    """
    files = target_files(data_bin, target_lang, source_lang, valid_subset)
    if train_counts is None:
        train_counts = train_target_counts(files)
    valid_tokens, valid_sentences = read_binarized(files.valid)
    valid_counts = _counts(valid_tokens, files.vocab, Path(f"{files.valid}.bin"))
    n_train, n_valid = int(train_counts.sum()), int(valid_counts.sum())
    if n_train == 0 or n_valid == 0:
        raise AdminError(
            f"{data_bin}: empty training or valid target ({n_train}, {n_valid} tokens)"
        )
    bits = float(-(valid_counts * add_one_unigram(train_counts)).sum() / n_valid)
    return UnigramBaseline(
        bits, n_valid, int(valid_sentences), n_train, files.vocab, files.describe()
    )


def unigram_cross_entropy(train_counts: Sequence[int], valid_counts: Sequence[int]) -> float:
    """The same arithmetic on plain counts per symbol (bits per valid token)."""
    if len(train_counts) != len(valid_counts) or not train_counts:
        raise ValueError("train and valid counts must cover the same non-empty vocabulary")
    n_train, n_valid, vocab = sum(train_counts), sum(valid_counts), len(train_counts)
    total = sum(
        v * (math.log2(c + 1) - math.log2(n_train + vocab))
        for c, v in zip(train_counts, valid_counts, strict=True)
    )
    return -total / n_valid


# --- the bigram -----------------------------------------------------------------------

EOS = 2  # fairseq's Dictionary: <s> <pad> </s> <unk>
SAMPLE_TOKENS = 1 << 25  # ~33.5M training tokens: ~1 GB of counting memory, seconds
WINDOWS = 64  # stretches per shard when sampling, so a corpus's parts are all seen


@dataclass(frozen=True)
class BigramBaseline:
    """Cross-entropy (bits per valid target token, EOS included) of a bigram model of the
    training target: what a model that never sees the source can get."""

    bits: float
    valid_tokens: int
    train_tokens: int  # training target tokens the bigram was counted on
    train_total: int  # all of them (the unigram's)
    vocab: int
    target: str  # the binarized target files, relative to the data-bin

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "bits": round(self.bits, 4)}


def pair_keys(tokens: Any, before: int, vocab: int) -> Any:
    """``previous * vocab + token`` for each token; ``before`` precedes the first."""
    import numpy as np

    cur = np.asarray(tokens, dtype=np.int64)
    prev = np.empty_like(cur)
    if cur.size:
        prev[0] = before
        prev[1:] = cur[:-1]
    return prev * vocab + cur


def _stretches(size: int, share: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` stretches covering ``share`` of ``size`` tokens, evenly spaced."""
    if share >= size:
        yield 0, size
        return
    windows = min(WINDOWS, share) or 1
    length = share // windows
    for w in range(windows):
        start = (size - length) * w // max(windows - 1, 1)
        yield start, start + length


def _sampled_keys(files: Any, total: int) -> tuple[Any, int]:
    import numpy as np

    parts = []
    for prefix in files.train:
        tokens, _ = read_binarized(prefix)
        share = tokens.size if total <= SAMPLE_TOKENS else SAMPLE_TOKENS * tokens.size // total
        for start, end in _stretches(int(tokens.size), share):
            before = EOS if start == 0 else int(tokens[start - 1])  # shards start a sentence
            parts.append(pair_keys(tokens[start:end], before, files.vocab))
    keys = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return keys, int(keys.size)


def witten_bell_bits(train_keys: Any, valid_keys: Any, log2_unigram: Any) -> float:
    """Bits per valid pair of the Witten-Bell bigram counted on ``train_keys``:
    P(w | h) = (c(h, w) + T(h) P1(w)) / (c(h) + T(h)), T(h) = distinct successors of h,
    P1 the unigram; a history never seen in training falls back to P1."""
    import numpy as np

    vocab = log2_unigram.size
    pairs, counts = np.unique(train_keys, return_counts=True)
    history = pairs // vocab
    seen = np.bincount(history, weights=counts, minlength=vocab)  # c(h)
    types = np.bincount(history, minlength=vocab).astype(np.float64)  # T(h)
    pair_count = np.zeros(valid_keys.size, dtype=np.int64)  # c(h, w)
    if pairs.size:
        at = np.clip(np.searchsorted(pairs, valid_keys), 0, pairs.size - 1)
        pair_count = np.where(pairs[at] == valid_keys, counts[at], 0)
    h, w = valid_keys // vocab, valid_keys % vocab
    p1 = np.exp2(log2_unigram[w])
    denom = seen[h] + types[h]
    p = np.where(denom > 0, (pair_count + types[h] * p1) / np.maximum(denom, 1), p1)
    return float(-np.log2(p).mean())


def bigram_baseline(
    data_bin: str | Path,
    target_lang: str | None = None,
    source_lang: str | None = None,
    valid_subset: str = "valid",
    train_counts: Any = None,
) -> BigramBaseline:
    """The target side's bigram cross-entropy on the valid set, from the data-bin
    (``train_counts``: the training target's counts, if already read)."""
    files = target_files(data_bin, target_lang, source_lang, valid_subset)
    counts = train_target_counts(files) if train_counts is None else train_counts
    total = int(counts.sum())
    valid_tokens, _ = read_binarized(files.valid)
    if total == 0 or valid_tokens.size == 0:
        raise AdminError(
            f"{data_bin}: empty training or valid target ({total}, {valid_tokens.size} tokens)"
        )
    train_keys, counted = _sampled_keys(files, total)
    valid_keys = pair_keys(valid_tokens, EOS, files.vocab)
    bits = witten_bell_bits(train_keys, valid_keys, add_one_unigram(counts))
    if not math.isfinite(bits):
        raise AdminError(f"{data_bin}: the target bigram's cross-entropy is {bits}")
    return BigramBaseline(
        bits, int(valid_tokens.size), counted, total, files.vocab, files.describe()
    )


def read(
    data_bin: str | os.PathLike[str],
    target_lang: str | None = None,
    unigram: bool = True,
    bigram: bool = True,
) -> tuple[UnigramBaseline | None, BigramBaseline | None]:
    """The baselines asked for, reading the whole training target's counts once (WMT: ~140M
    tokens)."""
    if not (unigram or bigram):
        return None, None
    counts = train_target_counts(target_files(data_bin, target_lang))
    return (
        unigram_baseline(data_bin, target_lang, train_counts=counts) if unigram else None,
        bigram_baseline(data_bin, target_lang, train_counts=counts) if bigram else None,
    )
