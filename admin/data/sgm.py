"""Segment extraction from WIT3 XML / WMT SGM files, as the reference scripts do it.

The scripts run ``grep '<seg id' | sed -e 's/<seg id="[0-9]*">\\s*//g'
-e 's/\\s*<\\/seg>\\s*//g' -e "s/’/'/g"``: a line filter, not an XML parser.  That is
what makes it tolerate the newstest2014 SGM files, which are not well-formed XML (a bare
``&`` in "Standard & Poor's"), and it keeps entities such as ``&amp;`` as they are (the
tokenizer then escapes them again: "r &amp; amp ; d").  sed's ``\\s`` is ASCII
whitespace here (C-locale semantics); the tokenizer collapses any other whitespace anyway.

:func:`read_references` gives the same segments as published, for sacreBLEU: XML
entities unescaped (``R&amp;D`` -> ``R&D``; a bare ``&`` stays), surrounding whitespace
stripped, nothing else changed (no quote replacement, no tokenization, no lowercasing).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from admin.common.errors import AdminError
from admin.data.textio import decode_lines, split_lines

_OPEN = re.compile(r'<seg id="[0-9]*">[ \t\n\r\f\v]*')
_CLOSE = re.compile(r"[ \t\n\r\f\v]*</seg>[ \t\n\r\f\v]*")
_SEG = re.compile(r'\s*<seg id="[0-9]*">(.*)</seg>\s*')
# XML's predefined entities and character references; a bare '&' is left alone.
_ENTITY = re.compile(r"&(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def seg_lines(lines: list[str]) -> list[str]:
    """The text of every ``<seg id`` line, tags and surrounding whitespace removed."""
    out = []
    for line in lines:
        if "<seg id" in line:
            line = _OPEN.sub("", line)
            line = _CLOSE.sub("", line)
            out.append(line.replace("\u2019", "'"))
    return out


def unescape_xml(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        name = m[1]
        if name[0] != "#":
            return _NAMED[name]
        code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
        return chr(code) if code <= 0x10FFFF else m[0]  # not a character: left as it is

    return _ENTITY.sub(one, text)


def reference_lines(lines: list[str], source: str) -> list[str]:
    """The published text of every ``<seg id`` line (the lines :func:`seg_lines` takes)."""
    out = []
    for number, line in enumerate(lines, start=1):
        if "<seg id" not in line:
            continue
        m = _SEG.fullmatch(line)
        if m is None:
            raise AdminError(f"{source}, line {number}: not one <seg id=...>...</seg>: {line!r}")
        text = unescape_xml(m[1]).strip()
        if "\n" in text or "\r" in text:
            raise AdminError(f"{source}, line {number}: a character reference breaks the line")
        out.append(text)
    return out


def read_references(path: str | os.PathLike[str], expected: int | None = None) -> list[str]:
    """Segments of an SGM/XML file as published (see the module doc), in file order."""
    return _segments(path, expected, reference_lines)


def read_segments(path: str | os.PathLike[str], expected: int | None = None) -> list[str]:
    """Segments of an SGM/XML file; ``expected`` guards against a truncated file."""
    return _segments(path, expected, lambda lines, _source: seg_lines(lines))


def _segments(
    path: str | os.PathLike[str],
    expected: int | None,
    extract: Callable[[list[str], str], list[str]],
) -> list[str]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AdminError(f"{path}: file not found") from None
    segments = extract(decode_lines(split_lines(data), str(path)), str(path))
    if expected is not None and len(segments) != expected:
        raise AdminError(f"{path}: expected {expected} segments, found {len(segments)}")
    return segments
