"""The source-blind baselines (admin.baselines): the Witten-Bell bigram of the target
side, checked against a plain-Python bigram over fairseq's own reading of a real data-bin,
by hand on a small case, and its bounded counting on a sample."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

import admin.baselines as tb
from admin.baselines import unigram_baseline
from admin.common.errors import AdminError


def _sentences(databin: Path, split: str) -> list[list[int]]:
    """Token ids per sentence (EOS last) as fairseq itself reads them."""
    from fairseq.data import data_utils

    dataset = data_utils.load_indexed_dataset(str(databin / f"{split}.de-en.en"), None)
    return [dataset[i].tolist() for i in range(len(dataset))]


def _reference_bits(train: list[list[int]], valid: list[list[int]], vocab: int) -> float:
    """Witten-Bell bigram, one sentence at a time from EOS, with the add-one unigram."""
    unigram = Counter(t for s in train for t in s)
    n = sum(unigram.values())
    follows: dict[int, Counter[int]] = defaultdict(Counter)
    for s in train:
        for h, w in zip([tb.EOS, *s[:-1]], s, strict=True):
            follows[h][w] += 1
    total = 0.0
    pairs = 0
    for s in valid:
        for h, w in zip([tb.EOS, *s[:-1]], s, strict=True):
            p1 = (unigram[w] + 1) / (n + vocab)
            seen, types = sum(follows[h].values()), len(follows[h])
            p = (follows[h][w] + types * p1) / (seen + types) if seen else p1
            total -= math.log2(p)
            pairs += 1
    return total / pairs


def test_bigram_baseline_matches_a_plain_bigram_of_fairseqs_reading(tiny_databin):
    baseline = tb.bigram_baseline(tiny_databin)
    from fairseq.data import Dictionary

    vocab = len(Dictionary.load(str(tiny_databin / "dict.en.txt")))
    train, valid = _sentences(tiny_databin, "train"), _sentences(tiny_databin, "valid")
    assert baseline.vocab == vocab
    assert baseline.train_tokens == baseline.train_total == sum(map(len, train))
    assert baseline.valid_tokens == sum(map(len, valid))
    assert baseline.bits == pytest.approx(_reference_bits(train, valid, vocab), rel=1e-9)
    # A bigram knows more than token frequencies: below the unigram baseline.
    assert baseline.bits < unigram_baseline(tiny_databin).bits
    assert baseline.target == "train.de-en.en -> valid.de-en.en"
    assert baseline.to_json()["bits"] == round(baseline.bits, 4)


def test_witten_bell_by_hand():
    # vocab 5; training pairs (2,4) x2 and (2,3): T(2) = 2, c(2) = 3.
    log2_p1 = np.log2(np.array([0.1, 0.1, 0.2, 0.3, 0.3]))
    train = np.array([2 * 5 + 4, 2 * 5 + 4, 2 * 5 + 3])
    # (2, 4): (2 + 2 * 0.3) / (3 + 2); (4, 3): history 4 never seen -> P1(3) = 0.3.
    valid = np.array([2 * 5 + 4, 4 * 5 + 3])
    bits = tb.witten_bell_bits(train, valid, log2_p1)
    assert bits == pytest.approx(-(math.log2(2.6 / 5) + math.log2(0.3)) / 2)
    # No training pairs at all: the unigram.
    assert tb.witten_bell_bits(np.zeros(0, dtype=np.int64), valid, log2_p1) == pytest.approx(
        -(math.log2(0.3) + math.log2(0.3)) / 2
    )


def test_pair_keys_start_from_the_token_before():
    keys = tb.pair_keys(np.array([7, 8, 2], dtype=np.uint16), tb.EOS, 10)
    assert keys.tolist() == [2 * 10 + 7, 7 * 10 + 8, 8 * 10 + 2]
    assert tb.pair_keys(np.zeros(0, dtype=np.int32), 5, 10).size == 0


def test_a_large_target_is_counted_on_evenly_spaced_stretches(tiny_databin, monkeypatch):
    full = tb.bigram_baseline(tiny_databin)
    monkeypatch.setattr(tb, "SAMPLE_TOKENS", 2000)
    monkeypatch.setattr(tb, "WINDOWS", 8)
    sampled = tb.bigram_baseline(tiny_databin)
    assert sampled.train_total == full.train_total > 2000
    assert sampled.train_tokens == 8 * (2000 // 8)  # 8 stretches of 250 tokens
    # Fewer counts make a weaker bigram: the baseline errs towards "trains".
    assert full.bits < sampled.bits < unigram_baseline(tiny_databin).bits
    stretches = list(tb._stretches(10_000, 2000))
    assert stretches[0] == (0, 250) and stretches[-1] == (9750, 10_000)
    assert all(b - a == 250 for a, b in stretches)


def test_a_missing_target_names_the_file(tmp_path):
    with pytest.raises(AdminError, match="is not a folder"):
        tb.bigram_baseline(tmp_path / "nowhere")


def test_the_criterions_baselines_read_the_training_target_once(tiny_databin, monkeypatch):
    import admin.divergence as divergence

    expected = (unigram_baseline(tiny_databin), tb.bigram_baseline(tiny_databin))
    read = []
    counts = tb.train_target_counts
    monkeypatch.setattr(tb, "train_target_counts", lambda f: read.append(f) or counts(f))
    assert divergence.baselines(divergence.Criterion(), tiny_databin) == expected
    assert len(read) == 1
    off = divergence.Criterion(unigram_margin=None, bigram_margin=None)
    assert divergence.baselines(off, tiny_databin) == (None, None) and len(read) == 1
