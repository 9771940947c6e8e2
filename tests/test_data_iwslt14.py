"""IWSLT'14 De-En through the real code path: archive -> local HTTP -> download -> prepare
-> BPE with the reference codes, compared byte for byte with fairseq's reference outputs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from admin.data.sgm import read_references, read_segments
from tests.data_server import serve

REPO = Path(__file__).resolve().parents[1]
SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")

# A train file in the TED tag format of train.tags.de-en.*: one talk header, then text.
# Lines are parallel (line k of .de <-> line k of .en), as in the real release.
TRAIN_DE = [
    "<url>http://www.ted.com/talks/lang/de/some_talk.html</url>",
    "<keywords>talks, science</keywords>",
    "<speaker>Jane Doe</speaker>",
    "<talkid>1</talkid>",
    "<title>Jane Doe: Ein Vortrag</title>",
    "<description>TED Talk Subtitles and Transcript: Ein Vortrag.</description>",
]
TRAIN_EN = [
    "<url>http://www.ted.com/talks/some_talk.html</url>",
    "<keywords>talks, science</keywords>",
    "<speaker>Jane Doe</speaker>",
    "<talkid>1</talkid>",
    "<title>Jane Doe: A talk</title>",
    "<description>TED Talk Subtitles and Transcript: A talk.</description>",
]
for i in range(1, 61):
    TRAIN_DE.append(f"Satz Nummer {i} ist hier, sagte Dr. Müller.")
    TRAIN_EN.append(f"Sentence number {i} is here, said Dr. Müller.")
# dropped by clean-corpus-n: ratio 5/1 > 1.5
TRAIN_DE.append("Ja.")
TRAIN_EN.append("Yes, yes, yes, yes.")
# dropped: 176 tokens > 175
TRAIN_DE.append(" ".join(["Wort"] * 176))
TRAIN_EN.append(" ".join(["word"] * 176))
# dropped: empty after the whitespace clean-up
TRAIN_DE.append("   ")
TRAIN_EN.append("Something.")
# kept: 175 tokens
TRAIN_DE.append(" ".join(["Wort"] * 175))
TRAIN_EN.append(" ".join(["word"] * 175))
TRAIN_DE.append("Er sagte: \u201eDas ist R&D\u201c \u2013 wirklich?")
TRAIN_EN.append("He said: \u201cThat's R&D\u201d \u2013 really?")


def build_archive(raw: Path) -> bytes:
    """de-en.tgz in the real release's layout (folder de-en/)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"de-en/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("README", (raw / "README").read_bytes())
        add("train.tags.de-en.de", ("\n".join(TRAIN_DE) + "\n").encode())
        add("train.tags.de-en.en", ("\n".join(TRAIN_EN) + "\n").encode())
        for name in SETS:
            for lang in ("de", "en"):
                fname = f"IWSLT14.{name}.de-en.{lang}.xml"
                add(fname, (raw / fname).read_bytes())
    return buf.getvalue()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, object]:
    work = tmp_path_factory.mktemp("iwslt")
    archive = build_archive(shared_data / "iwslt14_de_en_raw")
    lock = work / "checksums.lock.json"
    with serve({"/fairseq/iwslt14/de-en.tgz": archive}) as (base, state):
        dl = run_cli(
            "admin.data.download",
            "--dataset", "iwslt14_de_en",
            "--out", str(work / "archives"),
            "--lock", str(lock),
            "--mirror", f"{base}/fairseq/iwslt14", "--mirrors-only",
        )  # fmt: skip
        assert dl.returncode == 0, dl.stderr
        sent_first = state.bytes_sent
        # second run: the file is there and is verified against the lock, not re-fetched
        again = run_cli(
            "admin.data.download",
            "--dataset", "iwslt14_de_en",
            "--out", str(work / "archives"),
            "--lock", str(lock),
            "--mirror", f"{base}/fairseq/iwslt14", "--mirrors-only",
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        sent_second = state.bytes_sent - sent_first
    prep = run_cli(
        "admin.data.prepare",
        "--dataset", "iwslt14_de_en",
        "--archives", str(work / "archives"),
        "--out", str(work / "prepared"),
        "--workers", "2",
    )  # fmt: skip
    assert prep.returncode == 0, prep.stderr
    ref_code = shared_data / "iwslt14_de_en_fairseq_prepared" / "code"
    bpe = run_cli(
        "admin.data.bpe",
        "--src", "de", "--tgt", "en",
        "--in", str(work / "prepared"),
        "--out", str(work / "bpe"),
        "--codes", str(ref_code),
        "--splits", "valid", "test",
        "--workers", "2",
    )  # fmt: skip
    assert bpe.returncode == 0, bpe.stderr
    return {
        "work": work,
        "archive": archive,
        "lock": lock,
        "sent_first": sent_first,
        "sent_second": sent_second,
    }


def test_download_records_lock_and_verifies(prepared: dict[str, object]) -> None:
    archive = prepared["archive"]
    assert isinstance(archive, bytes)
    assert prepared["sent_first"] == len(archive)
    assert prepared["sent_second"] == 0
    lock = json.loads(Path(str(prepared["lock"])).read_text())
    entry = lock["archives"]["de-en.tgz"]
    assert entry["sha256"] == hashlib.sha256(archive).hexdigest()
    assert entry["size"] == len(archive)
    work = Path(str(prepared["work"]))
    assert (work / "archives" / "de-en.tgz").read_bytes() == archive
    assert sorted(p.name for p in (work / "archives").iterdir()) == ["de-en.tgz"]


@pytest.mark.parametrize("lang", ["de", "en"])
def test_test_set_is_byte_identical_to_fairseq(
    prepared: dict[str, object], shared_data: Path, lang: str
) -> None:
    ref = shared_data / "iwslt14_de_en_fairseq_prepared" / f"test.{lang}"
    ours = Path(str(prepared["work"])) / "bpe" / f"test.{lang}"
    assert ours.read_bytes().count(b"\n") == 6750
    assert ours.read_bytes() == ref.read_bytes()


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("lang", ["de", "en"])
def test_intermediates_are_byte_identical(
    prepared: dict[str, object], shared_data: Path, name: str, lang: str
) -> None:
    fname = f"IWSLT14.{name}.de-en.{lang}"
    ref = shared_data / "iwslt14_de_en_fairseq_prepared" / "tmp" / fname
    ours = Path(str(prepared["work"])) / "prepared" / "tmp" / fname
    assert ours.read_bytes() == ref.read_bytes()


def test_train_path_tags_clean_and_valid_split(prepared: dict[str, object]) -> None:
    out = Path(str(prepared["work"])) / "prepared"
    de = (out / "train.de").read_text().split("\n")[:-1]
    en = (out / "train.en").read_text().split("\n")[:-1]
    vde = (out / "valid.de").read_text().split("\n")[:-1]
    ven = (out / "valid.en").read_text().split("\n")[:-1]
    # 71 input lines; grep removes 3 tag lines per side (url, keywords, talkid) -> 68;
    # clean drops the 5:1 ratio pair, the 176-token pair and the blank pair -> 65 kept
    assert len(TRAIN_DE) == len(TRAIN_EN) == 71
    assert len(de) + len(vde) == 65
    assert len(vde) == 2 and len(de) == 63 and len(en) == 63 and len(ven) == 2
    cleaned = (out / "tmp" / "train.tags.de-en.de").read_text().split("\n")[:-1]
    assert vde == [cleaned[22], cleaned[45]]  # NR % 23 == 0
    # tags the script strips (title/description) vs keeps (speaker)
    assert cleaned[0] == "&lt; speaker &gt; jane doe &lt; / speaker &gt;"
    assert cleaned[1] == "jane doe : ein vortrag"
    assert cleaned[2] == "ted talk subtitles and transcript : ein vortrag ."
    assert cleaned[3] == "satz nummer 1 ist hier , sagte dr. müller ."
    ecl = (out / "tmp" / "train.tags.de-en.en").read_text().split("\n")[:-1]
    assert ecl[3] == "sentence number 1 is here , said dr. müller ."
    assert "ja ." not in cleaned and "yes , yes , yes , yes ." not in ecl
    assert len(cleaned[-2].split(" ")) == 175
    # tokenizer before lowercasing: cased, and clean-corpus-n keeps the text as tokenized
    tok = (out / "tmp" / "train.tags.de-en.tok.en").read_text().split("\n")
    assert tok[3] == "Sentence number 1 is here , said Dr. Müller ."
    assert cleaned[-1] == "er sagte : „ das ist r &amp; d “ – wirklich ?"
    assert ecl[-1] == "he said : “ that &apos;s r &amp; d ” – really ?"
    assert "train.de" in os.listdir(out) and not (out / ".work").exists()


def test_raw_references_from_the_xml(shared_data: Path) -> None:
    raw = shared_data / "iwslt14_de_en_raw"
    refs = [r for name in SETS for r in read_references(raw / f"IWSLT14.{name}.de-en.en.xml")]
    assert len(refs) == 6750
    text = "\n".join(refs)
    assert "R&D" in text and "R&amp;D" not in text  # entities unescaped
    assert "Proctor & Gamble" in text and "&lt;" not in text and "&gt;" not in text
    assert all(r == r.strip() and "<seg" not in r for r in refs)
    assert any(r != r.lower() for r in refs)  # cased, as published
    # The same segments in the same order as the lines the tokenized test set is made
    # from: escaping the entities again gives the scripts' sed output, line for line.
    segs = [s for name in SETS for s in read_segments(raw / f"IWSLT14.{name}.de-en.en.xml")]
    assert [escape(r).replace("\u2019", "'") for r in refs] == segs


def test_prepare_writes_the_raw_references(prepared: dict[str, object], shared_data: Path) -> None:
    out = Path(str(prepared["work"])) / "prepared"
    refs = (out / "test.raw.en").read_text(encoding="utf-8").split("\n")
    assert refs.pop() == ""  # one line per reference
    raw = shared_data / "iwslt14_de_en_raw"
    assert refs == [
        r for name in SETS for r in read_references(raw / f"IWSLT14.{name}.de-en.en.xml")
    ]
    assert len(refs) == len((out / "test.en").read_text(encoding="utf-8").splitlines()) == 6750
    assert not (out / "test.raw.de").exists()  # the target side only
