"""newstest2014 SGM files: 3003 segments per file despite the bare '&' (not well-formed XML);
their raw references for sacreBLEU."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

from admin.common.errors import AdminError
from admin.data.corpus import write_raw_reference
from admin.data.pipeline import LinePipeline
from admin.data.sgm import read_references, read_segments, reference_lines
from admin.evaluate import detokenize

FILES = ["src.en", "ref.de", "src.de", "ref.en"]


@pytest.mark.parametrize("name", FILES)
def test_3003_segments_with_bare_ampersands(shared_data: Path, name: str) -> None:
    path = shared_data / "wmt14_newstest2014_de_en" / f"newstest2014-deen-{name}.sgm"
    with pytest.raises(ET.ParseError):
        ET.parse(path)  # why a line filter is needed
    segments = read_segments(path, expected=3003)
    assert len(segments) == 3003
    bare = [s for s in segments if "& " in s]
    assert len(bare) == 2
    assert any("Standard & Poor" in s for s in bare)
    assert any("Kensington & Chelsea" in s for s in bare)
    assert all(s == s.strip() and "<seg" not in s and "</seg>" not in s for s in segments)


def test_src_en_and_ref_en_have_the_same_segments(shared_data: Path) -> None:
    folder = shared_data / "wmt14_newstest2014_de_en"
    assert read_segments(folder / "newstest2014-deen-src.en.sgm") == read_segments(
        folder / "newstest2014-deen-ref.en.sgm"
    )


def test_test_set_tokenization_escapes_the_bare_ampersand(shared_data: Path) -> None:
    path = shared_data / "wmt14_newstest2014_de_en" / "newstest2014-deen-src.en.sgm"
    segments = read_segments(path)
    tok = LinePipeline("en", ("tokenize",), aggressive=True)
    line = tok(next(s for s in segments if "Standard & Poor" in s))
    assert "Standard &amp; Poor &apos;s" in line
    assert tok("A well-known test.") == "A well @-@ known test ."


def test_wrong_segment_count_is_an_error(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "wmt14_newstest2014_de_en" / "newstest2014-deen-src.en.sgm"
    cut = tmp_path / "newstest2014-deen-src.en.sgm"
    cut.write_bytes(b"\n".join(src.read_bytes().split(b"\n")[:1000]) + b"\n")
    with pytest.raises(AdminError, match=r"newstest2014-deen-src.en.sgm: expected 3003 segments"):
        read_segments(cut, expected=3003)


# Raw references for sacreBLEU (admin.data.sgm.read_references), on the real SGM files.


@pytest.mark.parametrize("lang", ["de", "en"])
def test_raw_references_are_the_published_text(shared_data: Path, lang: str) -> None:
    path = shared_data / "wmt14_newstest2014_de_en" / f"newstest2014-deen-ref.{lang}.sgm"
    refs = read_references(path, expected=3003)
    assert len(refs) == 3003
    # The same segments, in the same order, as the tokenized test set's source lines:
    # these files have no entities, so only the scripts' quote replacement differs.
    assert [r.replace("\u2019", "'") for r in refs] == read_segments(path)
    assert all(r == r.strip() and r and "<seg" not in r for r in refs)
    assert sum("& " in r for r in refs) == 2  # the bare '&' stays as published
    if lang == "de":
        assert sum("\u201e" in r for r in refs) > 100  # German quotes kept, not normalized
    # The raw reference scored against itself.
    assert BLEU().corpus_score(refs, [refs]).score == pytest.approx(100.0)


@pytest.mark.parametrize("lang", ["de", "en"])
def test_raw_references_differ_from_moses_round_trip(shared_data: Path, lang: str) -> None:
    """What sacreBLEU scored before: the Moses-tokenized (as the recipe tokenizes the test
    set) then detokenized references.  The round trip changes some lines ("Sulzbachweg /
    Kirchstraße", 'workers, "he added'), so the same hypotheses score differently."""
    path = shared_data / "wmt14_newstest2014_de_en" / f"newstest2014-deen-ref.{lang}.sgm"
    raw = read_references(path, expected=3003)
    tokenized = LinePipeline(lang, ("tokenize",), aggressive=True).run(raw)
    round_trip = detokenize(tokenized, lang)
    changed = {i for i, (a, b) in enumerate(zip(raw, round_trip, strict=True)) if a != b}
    assert 0 < len(changed) < 3003
    # A hypothesis file: the references with every 4th word dropped.
    hyps = [" ".join(w for k, w in enumerate(r.split()) if k % 4 != 3) for r in raw]
    bleu = BLEU()
    against_raw = bleu.corpus_score(hyps, [raw]).score
    against_round_trip = bleu.corpus_score(hyps, [round_trip]).score
    assert against_raw != pytest.approx(against_round_trip, abs=1e-6)
    # ... and only through the changed lines: without them both scores agree.
    keep = [i for i in range(3003) if i not in changed]
    hyps_same, raw_same, round_trip_same = ([x[i] for i in keep] for x in (hyps, raw, round_trip))
    assert bleu.corpus_score(hyps_same, [raw_same]).score == pytest.approx(
        bleu.corpus_score(hyps_same, [round_trip_same]).score
    )
    # A perfect system's detokenized output is 100 only against the raw references.
    assert bleu.corpus_score(raw, [raw]).score == pytest.approx(100.0)
    assert bleu.corpus_score(raw, [round_trip]).score < 100.0


def test_raw_references_unescape_entities_only() -> None:
    lines = [
        "<doc>",
        '<seg id="1"> R&amp;D &lt;b&gt; &quot;x&quot; &apos;y&apos; &#233;&#x263A; </seg>',
        '<seg id="2">Standard & Poor\u2019s</seg>',
    ]
    assert reference_lines(lines, "x.sgm") == [
        "R&D <b> \"x\" 'y' \u00e9\u263a",
        "Standard & Poor\u2019s",
    ]


def test_malformed_seg_line_is_an_error() -> None:
    with pytest.raises(AdminError, match=r"x\.sgm, line 2: not one <seg id"):
        reference_lines(["<doc>", '<seg id="1">no end'], "x.sgm")


def test_raw_reference_count_must_match_the_test_set(tmp_path: Path) -> None:
    (tmp_path / "test.de").write_text("a b\nc d\n", encoding="utf-8")
    with pytest.raises(AdminError, match=r"3 raw test references for .*test\.de, which has 2"):
        write_raw_reference(tmp_path, "de", ["A B", "C D", "E"])
    assert not (tmp_path / "test.raw.de").exists()
    with pytest.raises(AdminError, match="line break"):
        write_raw_reference(tmp_path, "de", ["A B", "C\nD"])
    assert not (tmp_path / "test.raw.de").exists()
    written = write_raw_reference(tmp_path, "de", ["A B", "C & D"])
    assert written.read_text(encoding="utf-8") == "A B\nC & D\n"
