"""WMT'14 En-De recipe on small archives in the real layout (train/dev from the OpenNMT toy
sample, test from the real newstest2014 SGM files): steps, cleaning and counts."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from admin.data.prepare import prepare
from admin.data.sgm import read_references


def _tgz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_wmt14_en_de_prepare(tmp_path: Path, shared_data: Path) -> None:
    toy = shared_data / "opennmt_py_toy_en_de"
    en = (toy / "src-train.txt").read_text(encoding="utf-8").split("\n")[:300]
    de = (toy / "tgt-train.txt").read_text(encoding="utf-8").split("\n")[:300]
    en[5], de[5] = " ".join(["word"] * 81), "zu lang"  # 81 tokens > 80: cleaned away
    en[6], de[6] = "\u201cQuoted\u201d text\u00a0here.", "„Zitat“ hier."

    def text(lines: list[str]) -> bytes:
        return ("\n".join(lines) + "\n").encode()

    a = tmp_path / "archives"
    a.mkdir()
    parts = {
        "training-parallel-europarl-v7.tgz": "training/europarl-v7.de-en",
        "training-parallel-commoncrawl.tgz": "commoncrawl.de-en",
        "training-parallel-nc-v12.tgz": "training/news-commentary-v12.de-en",
    }
    for i, (archive, prefix) in enumerate(parts.items()):
        lo, hi = 100 * i, 100 * (i + 1)
        _tgz(a / archive, {f"{prefix}.en": text(en[lo:hi]), f"{prefix}.de": text(de[lo:hi])})
    val_en = (toy / "src-val.txt").read_text(encoding="utf-8").split("\n")[:50]
    val_de = (toy / "tgt-val.txt").read_text(encoding="utf-8").split("\n")[:50]
    _tgz(a / "dev.tgz", {"dev/newstest2013.en": text(val_en), "dev/newstest2013.de": text(val_de)})
    sgm = shared_data / "wmt14_newstest2014_de_en"
    _tgz(
        a / "test-full.tgz",
        {
            f"test-full/newstest2014-deen-{n}.sgm": (
                sgm / f"newstest2014-deen-{n}.sgm"
            ).read_bytes()
            for n in ("src.en", "ref.de")
        },
    )
    out = tmp_path / "prepared"
    prepare("wmt14_en_de", a, out, workers=2)

    def lines(name: str) -> list[str]:
        return (out / name).read_text(encoding="utf-8").split("\n")[:-1]

    assert len(lines("test.en")) == len(lines("test.de")) == 3003
    assert len(lines("valid.en")) == len(lines("valid.de")) == 50
    tok = lines("tmp/train.tags.en-de.tok.en")
    assert len(tok) == 300
    assert tok[6] == "&quot; Quoted &quot; text here ."  # normalized, NBSP gone, cased
    assert lines("tmp/train.tags.en-de.tok.de")[6] == "&quot; Zitat &quot; hier ."
    train = lines("train.en")
    assert len(train) == len(lines("train.de")) < 300
    assert " ".join(["word"] * 81) not in train
    assert all(1 <= len(t.split(" ")) <= 80 for t in train)
    assert "Standard &amp; Poor &apos;s" in "\n".join(lines("test.en"))
    # sacreBLEU's references: newstest2014's German SGM as published, all 3003 in order.
    assert lines("test.raw.de") == read_references(sgm / "newstest2014-deen-ref.de.sgm")
    assert len(lines("test.raw.de")) == 3003 and not (out / "test.raw.en").exists()
    assert any(" @-@ " in t for t in train)  # tokenizer -a
    assert not (out / ".work").exists()
