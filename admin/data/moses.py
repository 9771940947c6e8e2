"""Python ports of the Moses scripts the reference recipes run, byte-identical to the Perl.

The reference preparation scripts (fairseq ``prepare-iwslt14.sh``, Transformer-Clinic
``pre-process/*.sh``) pipe text through these Moses scripts, cloned at HEAD:

* ``tokenizer/tokenizer.perl`` (``-l L``, optionally ``-a``)      -> :class:`Tokenizer`
* ``tokenizer/normalize-punctuation.perl L``                    -> :func:`normalize_punctuation`
* ``tokenizer/remove-non-printing-char.perl``                   -> :func:`remove_non_printing`
* ``tokenizer/lowercase.perl``                                   -> :func:`lowercase`
* ``training/clean-corpus-n.perl``                               -> :func:`clean_pair`

sacremoses is close but not identical: since Moses commit 9fc964da (Nov 2018)
tokenizer.perl splits the period off the *last* word unconditionally ("in the U.S." ->
"U.S ."), which sacremoses does not; sacremoses also drops empty words when checking
whether the next word is lower case, and its ``\\s`` differs from Perl's.  Here every rule
is a line-by-line transcription of the Perl, with Perl's character classes
(:mod:`admin.data.perl_unicode`), and lines are split on ``\\n`` only, like ``<STDIN>``.
"""

from __future__ import annotations

import re
from functools import cache

from sacremoses._data_nonbreaking_prefixes import NONBREAKING_PREFIXES as _PREFIX_FILES

from admin.data.perl_unicode import IS_ALNUM, IS_ALPHA, IS_LOWER, IS_N, LL, OTHER, SPACE

_WS = f"[{SPACE}]"

# --- tokenizer.perl -------------------------------------------------------------------


@cache
def nonbreaking_prefixes(lang: str) -> dict[str, int]:
    """Perl ``load_prefixes``: prefix -> 1 (always non-breaking) or 2 (only before digits).

    The prefix files are the Moses ones (sacremoses ships them byte for byte).  A language
    without a file falls back to English, as tokenizer.perl does.
    """
    text = _PREFIX_FILES.get(f"nonbreaking_prefix.{lang}")
    if text is None:
        text = _PREFIX_FILES["nonbreaking_prefix.en"]
    prefixes: dict[str, int] = {}
    numeric = re.compile(rf"(.*){_WS}+(#NUMERIC_ONLY#)")
    for item in text.split("\n"):
        if item and not item.startswith("#"):
            m = numeric.search(item)
            if m:
                prefixes[m.group(1)] = 2
            else:
                prefixes[item] = 1
    return prefixes


def has_prefix_file(lang: str) -> bool:
    return f"nonbreaking_prefix.{lang}" in _PREFIX_FILES


_SPACE_RUN = re.compile(f"{_WS}+")
_ASCII_JUNK = re.compile("[\000-\037]")
_BLANK_LINE = re.compile(f"^{_WS}*$")
_AGGRESSIVE = re.compile(f"([{IS_ALNUM}])\\-(?=[{IS_ALNUM}])")
_DOT_MULTI_1 = re.compile(r"\.([\.]+)")
_DOT_MULTI_2 = re.compile(r"DOTMULTI\.([^\.])")
_DOT_MULTI_3 = re.compile(r"DOTMULTI\.")
_COMMA_1 = re.compile(f"([^{IS_N}])[,]")
_COMMA_2 = re.compile(f"[,]([^{IS_N}])")
_COMMA_3 = re.compile(f"([{IS_N}])[,]$")
_FINAL_DOT = re.compile(r"^(\S+)\.$")
_TRAILING_DOT_QUOTE = re.compile(r"\.\' ?$")
_STARTS_LOWER = re.compile(f"^[{IS_LOWER}]")
_STARTS_DIGITS = re.compile("^[0-9]+")
_HAS_ALPHA = re.compile(f"[{IS_ALPHA}]")

# "other" special characters to pad, per language branch of tokenizer.perl
_PAD_DEFAULT = re.compile(f"([^{IS_ALNUM}{SPACE}\\.\\'\\`\\,\\-])")
_PAD_FI_SV = re.compile(f"([^{IS_ALNUM}{SPACE}\\.\\:\\'\\`\\,\\-])")
_COLON_FI_SV = re.compile(f"(:)(?=$|[^{LL}])")
_PAD_CA = re.compile(f"([^{IS_ALNUM}{SPACE}\\.\\·\\'\\`\\,\\-])")
_MIDDOT_CA = re.compile(f"(·)(?=$|[^{LL}])")
_APOS_TDT = re.compile(f"(\\')(?=$|[^{LL}])")

_A = IS_ALPHA
_EN_APOSTROPHE = [
    (re.compile(f"([^{_A}])[']([^{_A}])"), r"\1 ' \2"),
    (re.compile(f"([^{_A}{IS_N}])[']([{_A}])"), r"\1 ' \2"),
    (re.compile(f"([{_A}])[']([^{_A}])"), r"\1 ' \2"),
    (re.compile(f"([{_A}])[']([{_A}])"), r"\1 '\2"),
    (re.compile(f"([{IS_N}])[']([s])"), r"\1 '\2"),  # "1990's"
]
_FR_APOSTROPHE = [
    (re.compile(f"([^{_A}])[']([^{_A}])"), r"\1 ' \2"),
    (re.compile(f"([^{_A}])[']([{_A}])"), r"\1 ' \2"),
    (re.compile(f"([{_A}])[']([^{_A}])"), r"\1 ' \2"),
    (re.compile(f"([{_A}])[']([{_A}])"), r"\1' \2"),
]
_SO_APOSTROPHE = _FR_APOSTROPHE[:3]  # glottal stops are not split
_ESCAPES = [
    ("&", "&amp;"),
    ("|", "&#124;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ("'", "&apos;"),
    ('"', "&quot;"),
    ("[", "&#91;"),
    ("]", "&#93;"),
]


class Tokenizer:
    """``tokenizer.perl -l LANG [-a]`` (no ``-penn``, no ``-protected``, escaping on)."""

    def __init__(self, lang: str, aggressive: bool = False) -> None:
        self.lang = lang
        self.aggressive = aggressive
        self.prefixes = nonbreaking_prefixes(lang)

    def tokenize_line(self, line: str) -> str:
        """One input line (without its ``\\n``) -> the tokenized line (without ``\\n``)."""
        if _BLANK_LINE.match(line):
            return line  # the Perl prints whitespace-only lines unchanged
        text = f" {line} "
        text = _SPACE_RUN.sub(" ", text)
        text = _ASCII_JUNK.sub("", text)
        text = re.sub(" +", " ", text)
        text = text.removeprefix(" ")
        text = text[:-1] if text.endswith(" ") else text
        lang = self.lang
        if lang in ("fi", "sv"):
            text = _PAD_FI_SV.sub(r" \1 ", text)
            text = _COLON_FI_SV.sub(r" \1 ", text)
        elif lang == "tdt":
            text = re.sub(f"([^{IS_ALNUM}{SPACE}\\.\\'\\`\\,\\-])", r" \1 ", text)
            text = _APOS_TDT.sub(r" \1 ", text)
        elif lang == "ca":
            text = _PAD_CA.sub(r" \1 ", text)
            text = _MIDDOT_CA.sub(r" \1 ", text)
        else:
            text = _PAD_DEFAULT.sub(r" \1 ", text)
        if self.aggressive:
            text = _AGGRESSIVE.sub(r"\1 @-@ ", text)
        text = _DOT_MULTI_1.sub(r" DOTMULTI\1", text)
        while "DOTMULTI." in text:
            text = _DOT_MULTI_2.sub(r"DOTDOTMULTI \1", text)
            text = _DOT_MULTI_3.sub("DOTDOTMULTI", text)
        text = _COMMA_1.sub(r"\1 , ", text)
        text = _COMMA_2.sub(r" , \1", text)
        text = _COMMA_3.sub(r"\1 ,", text)
        if lang == "en":
            rules = _EN_APOSTROPHE
        elif lang in ("fr", "it", "ga", "ca"):
            rules = _FR_APOSTROPHE
        elif lang in ("so", "tdt"):
            rules = _SO_APOSTROPHE
        else:
            rules = None
        if rules is None:
            text = text.replace("'", " ' ")
        else:
            for pattern, repl in rules:
                text = pattern.sub(repl, text)
        text = self._split_final_dots(text)
        text = re.sub(" +", " ", text)
        text = text.removeprefix(" ")
        text = text[:-1] if text.endswith(" ") else text
        text = _TRAILING_DOT_QUOTE.sub(" . ' ", text, count=1)
        while "DOTDOTMULTI" in text:
            text = text.replace("DOTDOTMULTI", "DOTMULTI.")
        text = text.replace("DOTMULTI", ".")
        for char, entity in _ESCAPES:
            text = text.replace(char, entity)
        return text

    def _split_final_dots(self, text: str) -> str:
        # Perl split(/\s/): keeps empty fields between spaces, drops trailing empty ones.
        # Empty fields matter: the "next word is lower case" test looks at the next field.
        words = text.split(" ")
        while words and words[-1] == "":
            words.pop()
        last = len(words) - 1
        out = []
        for i, word in enumerate(words):
            m = _FINAL_DOT.match(word)
            if m:
                pre = m.group(1)
                kind = self.prefixes.get(pre)
                if i == last:
                    word = pre + " ."  # Moses 9fc964da: the last word always splits
                elif (
                    ("." in pre and _HAS_ALPHA.search(pre))
                    or kind == 1
                    or _STARTS_LOWER.match(words[i + 1])
                ):
                    pass
                elif kind == 2 and _STARTS_DIGITS.match(words[i + 1]):
                    pass
                else:
                    word = pre + " ."
            out.append(word)
        return " ".join(out) + " "


# --- lowercase.perl -------------------------------------------------------------------


def lowercase(line: str) -> str:
    """Perl ``lc``: full case mapping, but no context-dependent final sigma."""
    return line.replace("\u03a3", "\u03c3").lower()


# --- remove-non-printing-char.perl ----------------------------------------------------

_OTHER = re.compile(f"[{OTHER}]")


def remove_non_printing(line: str) -> str:
    """``s/\\p{C}/ /g`` on one line (without its newline)."""
    return _OTHER.sub(" ", line)


# --- normalize-punctuation.perl -------------------------------------------------------
# The Perl script sets no :utf8 layer: it rewrites UTF-8 *bytes*, and its $_ still holds
# the line's "\n" (which `(\s*[^<])` can match).  So this port works on bytes, newline
# included; [a-z] with /i, \d and \s are then ASCII-only, exactly as in Perl.


def _b(pattern: str, flags: int = 0) -> re.Pattern[bytes]:
    return re.compile(pattern.encode("utf-8"), flags)


def _u(text: str) -> bytes:
    return text.encode("utf-8")


_NP_COMMON_1 = [
    (_b(r"\r"), b""),
    (_b(r"\("), b" ("),
    (_b(r"\)"), b") "),
    (_b(" +"), b" "),
    (_b(r"\) ([\.\!\:\?\;\,])"), rb")\1"),
    (_b(r"\( "), b"("),
    (_b(r" \)"), b")"),
    (_b(r"(\d) \%"), rb"\1%"),
    (_b(" :"), b":"),
    (_b(" ;"), b";"),
]
_NP_NOT_PENN = [(_b(r"\`"), b"'"), (_b(r"\'\'"), b' " ')]
_NP_COMMON_2 = [
    (_b("„"), b'"'),
    (_b("“"), b'"'),
    (_b("”"), b'"'),
    (_b("–"), b"-"),
    (_b("—"), b" - "),
    (_b(" +"), b" "),
    (_b("´"), b"'"),
    (_b("([a-z])‘([a-z])", re.IGNORECASE), rb"\1'\2"),
    (_b("([a-z])’([a-z])", re.IGNORECASE), rb"\1'\2"),
    (_b("‘"), b"'"),
    (_b("‚"), b"'"),
    (_b("’"), b'"'),
    (_b("''"), b'"'),
    (_b("´´"), b'"'),
    (_b("…"), b"..."),
    # French quotes
    (_b(" « "), b' "'),
    (_b("« "), b'"'),
    (_b("«"), b'"'),
    (_b(" » "), b'" '),
    (_b(" »"), b'"'),
    (_b("»"), b'"'),
    # pseudo-spaces: the first character of each pattern is U+00A0 (no-break space)
    (_b("\u00a0\\%"), b"%"),
    (_b("nº\u00a0"), _u("nº ")),
    (_b("\u00a0:"), b":"),
    (_b("\u00a0ºC"), _u(" ºC")),
    (_b("\u00a0cm"), b" cm"),
    (_b("\u00a0\\?"), b"?"),
    (_b("\u00a0\\!"), b"!"),
    (_b("\u00a0;"), b";"),
    (_b(",\u00a0"), b", "),
    (_b(" +"), b" "),
]
_NP_EN = [(_b(r"\"([,\.]+)"), rb'\1"')]
_NP_OTHER = [(_b(r",\""), b'",'), (_b(r"(\.+)\"(\s*[^<])"), rb'"\1\2')]
_NP_DIGIT_COMMA = (_b(r"(\d) (\d)"), rb"\1,\2")
_NP_DIGIT_DOT = (_b(r"(\d) (\d)"), rb"\1.\2")


def normalize_punctuation(line: bytes, lang: str, penn: bool = False) -> bytes:
    """``normalize-punctuation.perl LANG`` on one line of UTF-8 bytes, ``\\n`` included."""
    rules = list(_NP_COMMON_1)
    if not penn:
        rules += _NP_NOT_PENN
    rules += _NP_COMMON_2
    if lang == "en":
        rules += _NP_EN
    elif lang not in ("cs", "cz"):
        rules += _NP_OTHER
    if lang in ("de", "es", "cz", "cs", "fr"):
        rules.append(_NP_DIGIT_COMMA)
    else:
        rules.append(_NP_DIGIT_DOT)
    for pattern, repl in rules:
        line = pattern.sub(repl, line)
    return line


# --- clean-corpus-n.perl --------------------------------------------------------------

_CLEAN_SPACE = re.compile(f"{_WS}+")


def _clean_side(text: str, factored: bool) -> str:
    if not factored:
        text = text.replace("|", "")
    text = _CLEAN_SPACE.sub(" ", text)
    text = text.removeprefix(" ")
    return text[:-1] if text.endswith(" ") else text


class PairCleaner:
    """``clean-corpus-n.perl [-ratio R] corpus L1 L2 out MIN MAX`` for one line pair at a time.

    Like the Perl it returns the *cleaned* lines (whitespace runs collapsed, ``|`` removed
    unless the first line pair is factored), or None when the pair is dropped.
    """

    def __init__(
        self, min_len: int, max_len: int, ratio: float = 9.0, max_word_length: int = 1000
    ) -> None:
        self.min_len = min_len
        self.max_len = max_len
        self.ratio = ratio
        self._long_word = re.compile(f"[^{SPACE}|]{{{max_word_length + 1}}}")
        self._factored: bool | None = None

    def __call__(self, f: str, e: str) -> tuple[str, str] | None:
        if self._factored is None:
            self._factored = "|" in e or "|" in f
        e = _clean_side(e, self._factored)
        f = _clean_side(f, self._factored)
        if f == "" or e == "":
            return None
        ec = len(e.split(" "))
        fc = len(f.split(" "))
        if ec > self.max_len or fc > self.max_len or ec < self.min_len or fc < self.min_len:
            return None
        if ec / fc > self.ratio or fc / ec > self.ratio:
            return None
        if self._long_word.search(e) or self._long_word.search(f):
            return None
        return f, e
