"""Per-line text pipelines (the Moses ``| perl ... | perl ...`` chains), run on N cores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from admin.data.moses import Tokenizer, lowercase, normalize_punctuation, remove_non_printing
from admin.data.textio import map_lines

STEPS = ("lowercase", "normalize", "nonprint", "tokenize")


@dataclass
class LinePipeline:
    """Apply ``steps`` in order to one line.

    ``normalize`` = normalize-punctuation.perl LANG, ``nonprint`` =
    remove-non-printing-char.perl, ``tokenize`` = tokenizer.perl -l LANG [-a],
    ``lowercase`` = lowercase.perl.
    """

    lang: str
    steps: tuple[str, ...]
    aggressive: bool = False
    _tokenizer: Tokenizer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"unknown pipeline steps {unknown}; known: {STEPS}")
        if "tokenize" in self.steps:
            self._tokenizer = Tokenizer(self.lang, aggressive=self.aggressive)

    def __call__(self, line: str) -> str:
        for step in self.steps:
            if step == "tokenize":
                assert self._tokenizer is not None
                line = self._tokenizer.tokenize_line(line)
            elif step == "lowercase":
                line = lowercase(line)
            elif step == "nonprint":
                line = remove_non_printing(line)
            else:
                # the Perl sees the line with its newline, and keeps it at the end
                raw = normalize_punctuation(line.encode("utf-8") + b"\n", self.lang)
                line = raw.decode("utf-8").removesuffix("\n")
        return line

    def run(self, lines: Sequence[str], workers: int = 1) -> list[str]:
        return map_lines(self, lines, workers=workers)
