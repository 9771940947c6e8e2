"""newstest2014 SGM files: 3003 segments per file despite the bare '&' (not well-formed XML)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from admin.data.pipeline import LinePipeline
from admin.data.sgm import read_segments
from admin.errors import AdminError

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
