"""Downloads: resume with HTTP Range, mirror fallback, checksum mismatch, lock file, offline."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from admin.common.errors import AdminError
from admin.data.download import LockFile, fetch_archive
from admin.data.registry import Archive
from tests.data_server import serve

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def test_interrupted_download_resumes_in_the_same_run(tmp_path: Path) -> None:
    with serve({"/a/blob.tgz": DATA}) as (base, state):
        state.break_after["/a/blob.tgz"] = 100_000
        archive = Archive("blob.tgz", (f"{base}/a/blob.tgz",), sha256=SHA)
        path = fetch_archive(archive, tmp_path, retries=2)
        assert path.read_bytes() == DATA
        assert state.bytes_sent == len(DATA)  # 100k, then the remaining 200k: no restart
        assert state.requests == [("/a/blob.tgz", None), ("/a/blob.tgz", "bytes=100000-")]
    assert not (tmp_path / ".blob.tgz.part").exists()


def test_interrupted_download_resumes_in_the_next_run(tmp_path: Path) -> None:
    # a previous run was killed after 123456 bytes
    (tmp_path / ".blob.tgz.part").write_bytes(DATA[:123_456])
    with serve({"/blob.tgz": DATA}) as (base, state):
        archive = Archive("blob.tgz", (f"{base}/blob.tgz",), sha256=SHA)
        fetch_archive(archive, tmp_path)
        assert state.bytes_sent == len(DATA) - 123_456
        assert state.requests == [("/blob.tgz", "bytes=123456-")]
    assert (tmp_path / "blob.tgz").read_bytes() == DATA


def test_mirrors_are_tried_in_turn(tmp_path: Path) -> None:
    with serve({"/mirror2/blob.tgz": DATA}) as (base, state):
        archive = Archive("blob.tgz", (f"{base}/dead/blob.tgz", f"{base}/mirror2/blob.tgz"), SHA)
        fetch_archive(archive, tmp_path, retries=0)
        assert [r[0] for r in state.requests] == ["/dead/blob.tgz", "/mirror2/blob.tgz"]
    assert (tmp_path / "blob.tgz").read_bytes() == DATA


def test_lock_file_records_then_verifies(tmp_path: Path) -> None:
    lock = LockFile(tmp_path / "config" / "checksums.lock.json")
    with serve({"/blob.tgz": DATA, "/evil/blob.tgz": DATA[:-1] + b"x"}) as (base, _):
        archive = Archive("blob.tgz", (f"{base}/blob.tgz",))
        fetch_archive(archive, tmp_path / "one", lock=lock)
        entry = json.loads(lock.path.read_text())["archives"]["blob.tgz"]
        assert entry == {"sha256": SHA, "size": len(DATA), "url": f"{base}/blob.tgz"}
        # a later download that serves other bytes is caught by the lock
        evil = Archive("blob.tgz", (f"{base}/evil/blob.tgz",))
        with pytest.raises(AdminError) as err:
            fetch_archive(evil, tmp_path / "two", lock=lock)
    message = str(err.value)
    assert f"{base}/evil/blob.tgz" in message and f"expected sha256 {SHA}" in message
    assert f"actual sha256 {hashlib.sha256(DATA[:-1] + b'x').hexdigest()}" in message
    assert list((tmp_path / "two").iterdir()) == []


def test_offline_folder_is_verified_and_never_deleted(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "blob.tgz").write_bytes(DATA)
    archive = Archive("blob.tgz", ("http://127.0.0.1:9/unreachable",), sha256=SHA)
    path = fetch_archive(archive, tmp_path / "out", offline_dir=offline)
    assert path.read_bytes() == DATA
    bad = Archive("blob.tgz", ("http://127.0.0.1:9/unreachable",), sha256="0" * 64)
    with pytest.raises(AdminError, match=r"offline file .*blob.tgz.*expected sha256 0{64}"):
        fetch_archive(bad, tmp_path / "out2", offline_dir=offline)
    assert (offline / "blob.tgz").read_bytes() == DATA
    with pytest.raises(AdminError, match=r"offline folder .* has no other.tgz"):
        fetch_archive(Archive("other.tgz", ("x",)), tmp_path / "out3", offline_dir=offline)
