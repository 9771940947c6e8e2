"""Generic path (as the demo uses it): tokenize -> learn/apply BPE -> fairseq binarize."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from admin.common.errors import AdminError
from admin.data.bpe import learn_codes, run_bpe
from admin.data.corpus import concat_files
from admin.data.tokenize import tokenize_corpus

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    work = tmp_path_factory.mktemp("generic")
    raw = work / "raw"
    raw.mkdir()
    toy = shared_data / "opennmt_py_toy_en_de"
    src = (toy / "src-train.txt").read_text(encoding="utf-8").split("\n")
    tgt = (toy / "tgt-train.txt").read_text(encoding="utf-8").split("\n")
    for split, (lo, hi) in {
        "train": (0, 1500),
        "valid": (1500, 1600),
        "test": (1600, 1700),
    }.items():
        _write(raw / f"{split}.xx", src[lo:hi])
        _write(raw / f"{split}.yy", tgt[lo:hi])
    tokenize_corpus(raw, work / "tok", "xx", "yy", lowercase=True, workers=2)
    return work / "tok"


def test_tokenized_folder(tokenized: Path) -> None:
    names = sorted(p.name for p in tokenized.iterdir())
    assert names == sorted(
        f"{s}.{lang}" for s in ("train", "valid", "test") for lang in ("xx", "yy")
    )
    assert len((tokenized / "train.xx").read_text().split("\n")) == 1501


def test_bpe_parallel_equals_single_process(tokenized: Path, tmp_path: Path) -> None:
    run_bpe(tokenized, tmp_path / "one", "xx", "yy", merges=300, workers=1)
    run_bpe(tokenized, tmp_path / "two", "xx", "yy", merges=300, workers=2)
    for name in ["code"] + [
        f"{s}.{lang}" for s in ("train", "valid", "test") for lang in ("xx", "yy")
    ]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    code = (tmp_path / "one" / "code").read_text().split("\n")
    assert code[0] == "#version: 0.2" and len(code) == 302
    assert "@@ " in (tmp_path / "one" / "train.xx").read_text()
    # supplied codes give the same result as learned ones
    run_bpe(tokenized, tmp_path / "given", "xx", "yy", codes=tmp_path / "one" / "code")
    assert (tmp_path / "given" / "test.yy").read_bytes() == (
        tmp_path / "one" / "test.yy"
    ).read_bytes()
    with pytest.raises(AdminError, match="exactly one of --merges N and --codes FILE"):
        run_bpe(tokenized, tmp_path / "x", "xx", "yy")


def test_learned_codes_are_subword_nmts_on_the_joined_train_files(
    tokenized: Path, tmp_path: Path
) -> None:
    """``cat train.S train.T | subword-nmt learn-bpe -s N``, byte for byte; the join adds
    the line break a file lacks at its end, as reading it line by line would."""
    joined = tmp_path / "joined"
    joined.write_bytes(
        (tokenized / "train.xx").read_bytes() + (tokenized / "train.yy").read_bytes()
    )
    reference = tmp_path / "reference.code"
    subprocess.run(
        [str(Path(sys.executable).parent / "subword-nmt"), "learn-bpe", "-s", "300",
         "-i", str(joined), "-o", str(reference)],
        check=True, capture_output=True,
    )  # fmt: skip
    ours = tmp_path / "code"
    learn_codes([tokenized / "train.xx", tokenized / "train.yy"], 300, ours, workers=2)
    assert ours.read_bytes() == reference.read_bytes()
    assert not list(tmp_path.glob(".code.train*"))  # the scratch join is gone

    (tmp_path / "a").write_bytes(b"eins zwei\ndrei")  # no final line break
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "b").write_bytes(b"vier\n")
    concat_files([tmp_path / "a", tmp_path / "empty", tmp_path / "b"], tmp_path / "ab")
    assert (tmp_path / "ab").read_bytes() == b"eins zwei\ndrei\nvier\n"


def test_post_bpe_clean_and_binarize_cli(tokenized: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True
        )

    bpe = cli("admin.data.bpe", "--src", "xx", "--tgt", "yy", "--in", str(tokenized),
              "--out", str(tmp_path / "bpe"), "--merges", "200", "--post-clean", "1.5", "1", "40",
              "--workers", "2")  # fmt: skip
    assert bpe.returncode == 0, bpe.stderr
    train = (tmp_path / "bpe" / "train.xx").read_text().split("\n")[:-1]
    assert 0 < len(train) < 1500 and all(1 <= len(t.split()) <= 40 for t in train)
    assert len((tmp_path / "bpe" / "test.xx").read_text().split("\n")[:-1]) == 100
    out = tmp_path / "data-bin"
    binz = cli("admin.data.binarize", "--src", "xx", "--tgt", "yy", "--in",
               str(tmp_path / "bpe"), "--out", str(out), "--workers", "2")  # fmt: skip
    assert binz.returncode == 0, binz.stderr
    assert (out / "dict.xx.txt").read_bytes() == (out / "dict.yy.txt").read_bytes()
    for split in ("train", "valid", "test"):
        for lang in ("xx", "yy"):
            for ext in ("bin", "idx"):
                assert (out / f"{split}.xx-yy.{lang}.{ext}").stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_binarize_refuses_unequal_sides_naming_both_counts(tmp_path: Path) -> None:
    from admin.data.binarize import binarize

    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.xx").write_text("a b\nc\n")
        (tmp_path / f"{split}.yy").write_text("d e\nf\n")
    (tmp_path / "valid.yy").write_text("d e\nf\ng")  # a third line, without its newline
    with pytest.raises(AdminError) as err:
        binarize(tmp_path, tmp_path / "data-bin", "xx", "yy")
    assert str(err.value) == (
        f"parallel corpus sides differ in line count: {tmp_path / 'valid.xx'} has 2 lines, "
        f"{tmp_path / 'valid.yy'} has 3 lines"
    )
    assert not (tmp_path / "data-bin").exists()


def test_count_lines_streams_and_counts_as_split_lines(tmp_path: Path) -> None:
    from admin.data.textio import count_lines, split_lines

    cases = [b"", b"\n", b"a", b"a\n", b"a\nb", b"a\n\nb\n", b"x" * (3 << 20) + b"\ny"]
    for i, data in enumerate(cases):
        path = tmp_path / f"{i}.txt"
        path.write_bytes(data)
        assert count_lines(path) == len(split_lines(data)), data[:10]
