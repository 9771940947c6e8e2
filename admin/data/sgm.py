"""Segment extraction from WIT3 XML / WMT SGM files, as the reference scripts do it.

The scripts run ``grep '<seg id' | sed -e 's/<seg id="[0-9]*">\\s*//g'
-e 's/\\s*<\\/seg>\\s*//g' -e "s/’/'/g"``: a line filter, not an XML parser.  That is
what makes it tolerate the newstest2014 SGM files, which are not well-formed XML (a bare
``&`` in "Standard & Poor's"), and it keeps entities such as ``&amp;`` as they are (the
tokenizer then escapes them again: "r &amp; amp ; d").  sed's ``\\s`` is ASCII
whitespace here (C-locale semantics); the tokenizer collapses any other whitespace anyway.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from admin.data.textio import decode_lines, split_lines
from admin.errors import AdminError

_OPEN = re.compile(r'<seg id="[0-9]*">[ \t\n\r\f\v]*')
_CLOSE = re.compile(r"[ \t\n\r\f\v]*</seg>[ \t\n\r\f\v]*")


def seg_lines(lines: list[str]) -> list[str]:
    """The text of every ``<seg id`` line, tags and surrounding whitespace removed."""
    out = []
    for line in lines:
        if "<seg id" in line:
            line = _OPEN.sub("", line)
            line = _CLOSE.sub("", line)
            out.append(line.replace("\u2019", "'"))
    return out


def read_segments(path: str | os.PathLike[str], expected: int | None = None) -> list[str]:
    """Segments of an SGM/XML file; ``expected`` guards against a truncated file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AdminError(f"{path}: file not found") from None
    segments = seg_lines(decode_lines(split_lines(data), str(path)))
    if expected is not None and len(segments) != expected:
        raise AdminError(f"{path}: expected {expected} segments, found {len(segments)}")
    return segments
