"""Bad input: a clear AdminError naming the file/URL and the problem, and no output left."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from admin.common.errors import AdminError
from admin.data.download import fetch_archive
from admin.data.prepare import prepare
from admin.data.registry import MULTI30K_DE_EN
from admin.data.tokenize import tokenize_corpus
from tests.data_server import serve

REPO = Path(__file__).resolve().parents[1]


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _iwslt_members(raw: Path, skip: str = "") -> dict[str, bytes]:
    members = {
        "de-en/train.tags.de-en.de": b"Hallo Welt.\n",
        "de-en/train.tags.de-en.en": b"Hello world.\n",
    }
    for xml in sorted(raw.glob("IWSLT14.*.xml")):
        if xml.name != skip:
            members[f"de-en/{xml.name}"] = xml.read_bytes()
    return members


def test_truncated_archive(tmp_path: Path, shared_data: Path) -> None:
    data = _tgz(_iwslt_members(shared_data / "iwslt14_de_en_raw"))
    (tmp_path / "archives").mkdir()
    (tmp_path / "archives" / "de-en.tgz").write_bytes(data[: len(data) // 2])
    with pytest.raises(AdminError, match=r"archive .*de-en\.tgz is truncated or corrupt"):
        prepare("iwslt14_de_en", tmp_path / "archives", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archives"]


def test_missing_member(tmp_path: Path, shared_data: Path) -> None:
    skip = "IWSLT14.TED.tst2012.de-en.en.xml"
    data = _tgz(_iwslt_members(shared_data / "iwslt14_de_en_raw", skip=skip))
    (tmp_path / "archives").mkdir()
    (tmp_path / "archives" / "de-en.tgz").write_bytes(data)
    with pytest.raises(AdminError) as err:
        prepare("iwslt14_de_en", tmp_path / "archives", tmp_path / "out")
    assert "de-en.tgz lacks expected member(s): de-en/" + skip in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archives"]


def test_checksum_mismatch_deletes_and_names_url(tmp_path: Path, shared_data: Path) -> None:
    archive = MULTI30K_DE_EN.archive("val.de.gz")
    # the right size (the server's announcement passes) but one byte changed
    good = (shared_data / "multi30k_task1_de_en/raw/val.de.gz").read_bytes()
    wrong = good[:100] + bytes([good[100] ^ 0xFF]) + good[101:]
    with serve({"/m/val.de.gz": wrong}) as (base, _):
        with pytest.raises(AdminError) as err:
            fetch_archive(archive, tmp_path, mirrors=[f"{base}/m"], retries=0, mirrors_only=True)
    message = str(err.value)
    url = f"{base}/m/val.de.gz"
    assert url in message
    assert f"expected sha256 {archive.sha256}" in message
    assert f"actual sha256 {hashlib.sha256(wrong).hexdigest()}" in message
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part is left


def test_a_wrong_file_through_the_cli(tmp_path: Path, shared_data: Path) -> None:
    """Another file of another size: refused on the size the server announces."""
    wrong = (shared_data / "multi30k_task1_de_en/raw/val.en.gz").read_bytes()
    with serve({"/m/val.de.gz": wrong}) as (base, _):
        result = subprocess.run(
            [sys.executable, "-m", "admin.data.download", "--dataset", "multi30k_de_en",
             "--out", str(tmp_path / "a"), "--lock", str(tmp_path / "lock.json"),
             "--mirror", f"{base}/m", "--mirrors-only", "--only", "val.de.gz",
             "--retries", "0"],
            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True, text=True,
        )  # fmt: skip
    assert result.returncode == 2
    assert "error: could not download val.de.gz; tried 1 URL(s)" in result.stderr
    assert (
        f"{base}/m/val.de.gz: size mismatch for val.de.gz from {base}/m/val.de.gz: expected "
        f"24681 bytes, the server announces {len(wrong)} bytes" in result.stderr
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "a" / "val.de.gz").exists()


def test_parallel_sides_differ_in_line_count(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.xx").write_text("a b\nc d\ne f\n")
    (raw / "train.yy").write_text("A B\nC D\n")
    with pytest.raises(AdminError) as err:
        tokenize_corpus(raw, tmp_path / "out", "xx", "yy", splits=["train"])
    message = str(err.value)
    assert f"{raw / 'train.xx'} has 3 lines" in message
    assert f"{raw / 'train.yy'} has 2 lines" in message
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.xx").write_bytes(b"fine\nalso fine\nbad \xff\xfe byte\n")
    (raw / "train.yy").write_bytes(b"ok\nok\nok\n")
    with pytest.raises(AdminError) as err:
        tokenize_corpus(raw, tmp_path / "out", "xx", "yy", splits=["train"])
    assert f"{raw / 'train.xx'}, line 3: invalid UTF-8" in str(err.value)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_truncated_gzip_member(tmp_path: Path, shared_data: Path) -> None:
    raw = shared_data / "multi30k_task1_de_en" / "raw"
    (tmp_path / "a").mkdir()
    for archive in MULTI30K_DE_EN.archives:
        data = (raw / archive.filename).read_bytes()
        if archive.filename == "train.en.gz":
            data = data[:5000]
        (tmp_path / "a" / archive.filename).write_bytes(data)
    with pytest.raises(AdminError, match=r"train\.en\.gz is truncated or corrupt"):
        prepare("multi30k_de_en", tmp_path / "a", tmp_path / "out")
    assert not (tmp_path / "out").exists()
