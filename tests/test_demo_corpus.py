"""The embedded demo corpus: determinism, sizes, and that it has real translation structure."""

from __future__ import annotations

import hashlib
import itertools
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sacrebleu

from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.data import demo_corpus as dc

SMALL = {"train": 2000, "valid": 200, "test": 200}
# sha256 prefix of seed 1's 50/5/5 files: the demo's data never changes by accident
PINNED_DIGEST = "488ce865a1dd440c"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[dc.Pair]]:
    return dc.generate(seed=3, sizes=SMALL, align=True)


@pytest.fixture(scope="module")
def timed_full() -> tuple[dict[str, list[dc.Pair]], float]:
    """The default 20k/1k/1k corpus and the CPU seconds it took (other jobs do not count)."""
    start = time.process_time()
    corpus = dc.generate(seed=1, align=True)
    return corpus, time.process_time() - start


@pytest.fixture(scope="module")
def big(timed_full: tuple[dict[str, list[dc.Pair]], float]) -> list[dc.Pair]:
    return timed_full[0]["train"]


@pytest.fixture(scope="module")
def sample() -> list[dc.Pair]:
    return list(itertools.islice(dc.iter_pairs(11, "test", align=True), 1500))


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_cli_writes_six_files_byte_identically_for_the_same_seed(tmp_path: Path) -> None:
    sizes = ["--train", "300", "--valid", "40", "--test", "50"]
    with pytest.raises(SystemExit) as done:
        run_cli(dc.main, ["--out", str(tmp_path / "a"), "--seed", "5", *sizes])
    assert done.value.code == 0
    dc.main(["--out", str(tmp_path / "b"), "--seed", "5", *sizes])
    dc.main(["--out", str(tmp_path / "c"), "--seed", "6", *sizes])
    first = _digest(tmp_path / "a")
    assert sorted(first) == sorted(f"{s}.{lang}" for s in dc.SPLITS for lang in ("xs", "xt"))
    assert first == _digest(tmp_path / "b")
    assert first != _digest(tmp_path / "c")
    for split, count in (("train", 300), ("valid", 40), ("test", 50)):
        for lang in ("xs", "xt"):
            text = (tmp_path / "a" / f"{split}.{lang}").read_text(encoding="utf-8")
            assert text.endswith("\n") and "\n\n" not in text
            assert len(text.splitlines()) == count
    # no temporary files are left beside the outputs
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


def test_output_is_pinned_across_runs_and_machines(tmp_path: Path) -> None:
    # the language and the sampler only use seeded ``random.Random`` draws; this pin catches
    # any change that would silently change the demo's data (update it deliberately)
    dc.write_corpus(tmp_path, seed=1, sizes={"train": 50, "valid": 5, "test": 5})
    joined = b"".join((tmp_path / name).read_bytes() for name in sorted(_digest(tmp_path)))
    assert hashlib.sha256(joined).hexdigest()[:16] == PINNED_DIGEST


def test_default_sizes_are_20k_1k_1k() -> None:
    assert dc.DEFAULT_SIZES == {"train": 20000, "valid": 1000, "test": 1000}


def test_module_cli_reports_bad_arguments_without_traceback(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "admin.data.demo_corpus", "--out", str(tmp_path), "--seed", "1"]
    done = subprocess.run([*cmd, "--valid", "0"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == "error: --valid must be a positive number of pairs, got 0\n"
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_raise_admin_error(tmp_path: Path) -> None:
    with pytest.raises(AdminError, match="--train must be a positive"):
        dc.main(["--out", str(tmp_path), "--seed", "1", "--train", "0"])
    with pytest.raises(AdminError, match="--seed must be >= 0"):
        dc.main(["--out", str(tmp_path), "--seed", "-1"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(AdminError, match="not a folder"):
        dc.main(["--out", str(tmp_path / "file"), "--seed", "1"])
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_splits_do_not_overlap_and_have_no_duplicates(corpus: dict[str, list[dc.Pair]]) -> None:
    assert {k: len(v) for k, v in corpus.items()} == SMALL
    for side in ("src", "tgt"):
        sentences = [getattr(p, side) for pairs in corpus.values() for p in pairs]
        assert len(set(sentences)) == len(sentences) == sum(SMALL.values())


def test_source_vocabulary_has_a_few_hundred_words(big: list[dc.Pair]) -> None:
    lex = dc.lexicon()
    lemmas = {n.en for n in lex.nouns} | {a.en for a in lex.adjs} | {v.en for v in lex.verbs}
    assert 200 <= len(lemmas) <= 300, len(lemmas)  # content words, plus ~70 function words
    pairs = big
    types = Counter(w.lower() for p in pairs for w in re.findall(r"[\w']+", p.src))
    assert 450 <= len(types) <= 700, len(types)
    # every source content word is used, and the text is capitalised and punctuated
    assert lemmas <= set(types)
    assert all(p.src[0].isupper() and p.src[-1] in ".?" for p in pairs)


def test_target_vocabulary_is_open_because_of_compounds_and_inflection(big: list[dc.Pair]) -> None:
    pairs = big
    types = Counter(w for p in pairs for w in re.findall(r"\w+", p.tgt))
    src_types = Counter(w for p in pairs for w in re.findall(r"\w+", p.src))
    assert len(types) > 4 * len(src_types), (len(types), len(src_types))
    singletons = sum(1 for c in types.values() if c == 1)
    assert singletons > 0.3 * len(types)  # BPE is needed to cover unseen compounds


def _crosses(alignment: tuple[tuple[int, int], ...]) -> bool:
    return any(i1 < i2 and j1 > j2 for i1, j1 in alignment for i2, j2 in alignment)


def _monotone(pair: dc.Pair) -> str:
    """The reference's own words, put in source order (the best any monotone system can do)."""
    first: dict[int, int] = {}
    for i, j in pair.alignment:
        first[j] = min(first.get(j, i), i)
    keys, last = [], -1
    for j in range(len(pair.tgt_tokens)):
        last = first.get(j, last)  # unaligned words (commas) stay after their left neighbour
        keys.append((last, j))
    return " ".join(pair.tgt_tokens[j] for _, j in sorted(keys))


def test_target_reorders(sample: list[dc.Pair]) -> None:
    crossing = sum(_crosses(p.alignment) for p in sample) / len(sample)
    assert crossing > 0.7, crossing
    refs = [" ".join(p.tgt_tokens) for p in sample]
    oracle = sacrebleu.corpus_bleu([_monotone(p) for p in sample], [refs], force=True)
    assert oracle.score < 50, oracle.score  # right words, source order: far from solved
    copy = sacrebleu.corpus_bleu([p.src for p in sample], [[p.tgt for p in sample]])
    assert copy.score < 2, copy.score


def test_alignment_links_every_source_word(sample: list[dc.Pair]) -> None:
    # only "of" and "to" become case endings; "the X of Y" loses its article to the genitive
    for pair in sample:
        linked = {i for i, _ in pair.alignment}
        for i, word in enumerate(pair.src_tokens):
            assert i in linked or word in (",", ".", "?", "of", "to", "the", "The"), (word, pair)


def _gender_of(word: str) -> int | None:
    lex = dc.lexicon()
    for noun in lex.nouns:
        if word == noun.tgt.capitalize():
            return noun.gender
    return None


def test_agreement_determiner_and_adjective_follow_noun_gender(sample: list[dc.Pair]) -> None:
    endings = {0: "a", 1: "o", 2: "e"}
    adjs = {a.tgt for a in dc.lexicon().adjs}
    checked = Counter()
    for pair in sample:
        toks = pair.tgt_tokens
        for j in range(1, len(toks) - 1):
            gender = _gender_of(toks[j])
            if gender is None or toks[j - 1] not in ("da", "do", "de"):
                continue
            assert toks[j - 1] == "d" + endings[gender], toks  # nominative singular article
            if toks[j + 1][:-1] in adjs:
                assert toks[j + 1][-1] == endings[gender], toks
                checked["adj"] += 1
            checked[gender] += 1
    assert min(checked[g] for g in range(3)) > 30 and checked["adj"] > 30, checked


def test_verbs_agree_with_subject_person_and_number(big: list[dc.Pair]) -> None:
    # "They slept ..." -> pronoun, then stem + tense + person ending (past infix "ev")
    forms = {}
    for verb in dc.lexicon().verbs:
        forms[verb.en] = (verb.tgt, "")
        forms[verb.past] = (verb.tgt, dc._PAST_INFIX)
    person = {"I": 0, "You": 1, "We": 3, "They": 4}
    checked = Counter()
    for pair in big:
        subj, verb = pair.src_tokens[:2]
        if subj in person and verb in forms and pair.src_tokens[2] not in ("that",):
            stem, infix = forms[verb]
            assert pair.tgt_tokens[1] == stem + infix + dc._PERSON_END[person[subj]], pair
            checked[subj] += 1
    assert min(checked.values()) > 100 and len(checked) == 4, checked


def test_compounds_are_one_target_word_with_a_gender_linker(big: list[dc.Pair]) -> None:
    nouns = {n.en: n for n in dc.lexicon().nouns}
    plural = {n.en_pl: n for n in dc.lexicon().nouns}
    found = set()
    for pair in big:
        words = pair.src_tokens
        for first, second in zip(words, words[1:], strict=False):
            mod, head = nouns.get(first), nouns.get(second) or plural.get(second)
            if mod is None or head is None or mod.animate:
                continue  # "gives the dog books" is a double object, not a compound
            stem = mod.tgt + dc._LINKER[mod.gender] + head.tgt
            word = stem + (dc._PLURAL[head.gender] if second != head.en else "")
            assert word.capitalize() in pair.tgt_tokens, (pair.src, pair.tgt, word)
            found.add((mod.gender, word))
    assert len(found) > 300 and {g for g, _ in found} == {0, 1, 2}, len(found)


def _is_finite_verb(word: str) -> bool:
    copula = {form for forms in dc._COPULA.values() for form in forms}
    return word in copula or word.endswith(dc._PERSON_END) and word[0].islower()


def test_subordinate_clauses_are_verb_final_and_fronting_inverts(sample: list[dc.Pair]) -> None:
    conj = "|".join(c.tgt for c in dc._CONJS) + "|" + dc._COMP
    verb_final = inverted = 0
    for pair in sample:
        for clause in re.findall(rf"(?:^|, )(?:{conj}) ([^,]+)", pair.tgt, flags=re.I):
            assert _is_finite_verb(clause.rstrip(".?").split()[-1]), (clause, pair.tgt)
            verb_final += 1
        if pair.src_tokens[0] in ("Yesterday", "Tomorrow", "Today", "Now", "Soon", "Recently"):
            # verb-second: the finite verb directly follows the fronted adverb
            assert _is_finite_verb(pair.tgt_tokens[1]), pair
            inverted += 1
    assert verb_final > 100 and inverted > 30, (verb_final, inverted)


def test_default_corpus_is_generated_well_under_10_s(
    timed_full: tuple[dict[str, list[dc.Pair]], float],
) -> None:
    corpus, seconds = timed_full
    assert {split: len(pairs) for split, pairs in corpus.items()} == dc.DEFAULT_SIZES
    assert seconds < 10  # with alignments, which the CLI does not even compute
