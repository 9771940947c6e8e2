"""The source-blind baseline of :mod:`admin.divergence`: a bigram model of the target side.

A translation model whose validation loss ends no better than a bigram language model of
the target, which never sees the source sentence, has not learned to translate: it is
stuck (docs/divergence.md, rule 4).  The bigram is Witten-Bell interpolated with the
add-one unigram of the unigram baseline, counted on the binarized training target and
evaluated on the valid target with EOS, in bits per token (fairseq's ``nll_loss``).  The
first token of a sentence is predicted from EOS, as fairseq's decoder starts from it.

Counting is bounded: up to ``SAMPLE_TOKENS`` training tokens, in ``WINDOWS`` evenly
spaced stretches per shard when the target is larger (WMT); the unigram it backs off to
counts every token.  Fewer counts only make the bigram weaker, so the baseline errs
towards calling a run healthy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from admin.common.errors import AdminError
from admin.divergence import (
    add_one_unigram,
    read_binarized,
    target_files,
    train_target_counts,
)

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
