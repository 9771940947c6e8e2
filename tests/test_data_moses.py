"""The Moses ports where they differ from sacremoses, and the Perl line semantics."""

from __future__ import annotations

from pathlib import Path

from sacremoses import MosesTokenizer

from admin.data.moses import PairCleaner, Tokenizer, lowercase, normalize_punctuation
from admin.data.pipeline import LinePipeline
from admin.data.textio import map_lines, read_lines


def test_last_word_period_is_always_split_unlike_sacremoses() -> None:
    # Moses 9fc964da (2018): the last word's period is split even after a prefix
    line = "He works in the U.S."
    assert Tokenizer("en").tokenize_line(line) == "He works in the U.S ."
    assert MosesTokenizer("en").tokenize(line, return_str=True) == "He works in the U.S."
    assert Tokenizer("en").tokenize_line("Dr. Smith came.") == "Dr. Smith came ."
    assert Tokenizer("de").tokenize_line("Er kam am 3. Mai.") == "Er kam am 3. Mai ."


def test_empty_words_count_when_looking_at_the_next_word() -> None:
    # "(" is padded to " ( ", leaving an empty field after "etc." in Perl's split(/\s/):
    # the next *field* is empty, not lower case, so the period is split off.
    assert Tokenizer("en").tokenize_line("etc. (see below)") == "etc . ( see below )"


def test_whitespace_only_lines_pass_unchanged() -> None:
    assert Tokenizer("en").tokenize_line("  \u00a0 ") == "  \u00a0 "
    assert Tokenizer("en").tokenize_line("a\u00a0b\u2028c") == "a b c"


def test_escaping_and_aggressive_hyphens() -> None:
    tok = Tokenizer("en", aggressive=True)
    assert tok.tokenize_line('R&D "x" [y] a|b <z>') == (
        "R &amp; D &quot; x &quot; &#91; y &#93; a &#124; b &lt; z &gt;"
    )
    assert tok.tokenize_line("state-of-the-art") == "state @-@ of @-@ the @-@ art"
    assert Tokenizer("fr").tokenize_line("l'homme") == "l&apos; homme"
    assert Tokenizer("en").tokenize_line("don't") == "don &apos;t"


def test_unknown_language_uses_english_prefixes_and_generic_apostrophes() -> None:
    tok = Tokenizer("xx")
    assert tok.tokenize_line("Mr. Smith isn't here.") == "Mr. Smith isn &apos; t here ."


def test_normalize_punctuation_works_on_bytes_with_the_newline() -> None:
    de = "Er sagte „Hallo“ – und ging.\n".encode()
    assert normalize_punctuation(de, "de") == b'Er sagte "Hallo" - und ging.\n'
    # the "don't fix period at end of sentence" rule does move it when \n follows
    assert normalize_punctuation(b'Er sagte "Hallo."\n', "de") == b'Er sagte "Hallo".\n'
    assert normalize_punctuation(b'He said "hi".\n', "en") == b'He said "hi."\n'
    # pseudo-spaces: a no-break space before % goes, the one inside the number stays
    assert normalize_punctuation("1\u00a0000\u00a0%\n".encode(), "en") == "1\u00a0000%\n".encode()
    assert normalize_punctuation(b"5 000 and 3 4\n", "de") == b"5,000 and 3,4\n"


def test_lowercase_has_no_final_sigma() -> None:
    assert lowercase("ΟΔΟΣ İ") == "οδοσ i\u0307"


def test_clean_corpus_n_semantics() -> None:
    clean = PairCleaner(1, 5, 1.5)
    assert clean("a  b\u00a0c ", "x y z") == ("a b c", "x y z")
    assert clean("a", "x y") is None  # ratio 2 > 1.5
    assert clean("a b c d e f", "a b c d e f") is None  # 6 > 5
    assert clean(" ", "x") is None
    assert clean("a|b", "x") == ("ab", "x")  # not factored: pipes removed


def test_parallel_output_is_identical(shared_data: Path) -> None:
    xml = shared_data / "iwslt14_de_en_raw" / "IWSLT14.TED.dev2010.de-en.en.xml"
    lines = read_lines(xml)
    pipeline = LinePipeline("en", ("normalize", "nonprint", "tokenize", "lowercase"), True)
    one = map_lines(pipeline, lines, workers=1)
    two = map_lines(pipeline, lines, workers=2, chunk_size=50)
    assert one == two and len(one) == 948
