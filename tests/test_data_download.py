"""Downloads: resume with HTTP Range, mirror fallback, checksum mismatch, lock file, offline;
the announced size checked before the body, then size and digests after."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from admin.common.errors import AdminError
from admin.data.download import LockFile, SizeMismatch, fetch_archive
from admin.data.registry import MULTI30K_DE_EN, Archive
from tests.data_server import ServerState, serve

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
MD5 = hashlib.md5(DATA).hexdigest()
BIG = 8 * len(DATA)  # what a wrong file announces: 2.4 MB instead of 300 kB


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


# --- the size announced by the server, checked before the body ----------------------------

WRONG_THEN_RIGHT = {"/wrong/blob.tgz": os.urandom(BIG), "/right/blob.tgz": DATA}


def _wrong_then_right(base: str, state: ServerState) -> Archive:
    """An archive whose first URL announces BIG bytes but sends none of them (break_after
    0: a refusal can only come from the headers), and whose second URL is right."""
    state.break_after["/wrong/blob.tgz"] = 0
    urls = (f"{base}/wrong/blob.tgz", f"{base}/right/blob.tgz")
    return Archive("blob.tgz", urls, sha256=SHA, size=len(DATA))


def test_announced_size_mismatch_is_refused_before_the_body(tmp_path: Path) -> None:
    # Had the client read the wrong URL's body, it would have met a broken connection
    # and retried the same URL.
    with serve(WRONG_THEN_RIGHT) as (base, state):
        archive = _wrong_then_right(base, state)
        path = fetch_archive(archive, tmp_path, retries=3)
        assert state.requests == [("/wrong/blob.tgz", None), ("/right/blob.tgz", None)]
        assert state.bytes_sent == len(DATA)  # the right body only
    assert path.read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.tgz"]


def test_announced_size_mismatch_names_url_and_sizes(tmp_path: Path) -> None:
    # A large wrong body: refused from its Content-Length, nothing of it reaches the disk.
    with serve({"/blob.tgz": os.urandom(BIG)}) as (base, state):
        archive = Archive("blob.tgz", (f"{base}/blob.tgz",), sha256=SHA, size=len(DATA))
        with pytest.raises(AdminError) as err:
            fetch_archive(archive, tmp_path, retries=3)
        assert state.requests == [("/blob.tgz", None)]  # no retry of a refused size
    message = str(err.value)
    assert "could not download blob.tgz; tried 1 URL(s)" in message
    assert f"size mismatch for blob.tgz from {base}/blob.tgz" in message
    assert f"expected {len(DATA)} bytes, the server announces {BIG} bytes" in message
    assert list(tmp_path.iterdir()) == []  # no .part file was even opened


def test_announced_total_of_a_resumed_download_is_checked(tmp_path: Path) -> None:
    # A previous run left a valid prefix.  A server whose Content-Range says the whole file
    # has another size is refused and the prefix is kept; the next URL resumes it.
    (tmp_path / ".blob.tgz.part").write_bytes(DATA[:100_000])
    with serve(WRONG_THEN_RIGHT) as (base, state):
        archive = _wrong_then_right(base, state)
        fetch_archive(archive, tmp_path)
        assert state.requests == [
            ("/wrong/blob.tgz", "bytes=100000-"),
            ("/right/blob.tgz", "bytes=100000-"),
        ]
        assert state.bytes_sent == len(DATA) - 100_000
    assert (tmp_path / "blob.tgz").read_bytes() == DATA


def test_registry_archive_of_the_wrong_size_is_refused_before_the_body(
    tmp_path: Path, shared_data: Path
) -> None:
    # The real Multi30k val.en.gz served as val.de.gz: the registry's published size
    # (24681 bytes) refuses the 21650 bytes the server announces.
    archive = MULTI30K_DE_EN.archive("val.de.gz")
    wrong = (shared_data / "multi30k_task1_de_en/raw/val.en.gz").read_bytes()
    with serve({"/m/val.de.gz": wrong}) as (base, state):
        state.break_after["/m/val.de.gz"] = 0
        with pytest.raises(AdminError) as err:
            fetch_archive(archive, tmp_path, mirrors=[f"{base}/m"], retries=2, mirrors_only=True)
        assert state.requests == [("/m/val.de.gz", None)]
    assert archive.size == 24681 and len(wrong) == 21650
    assert f"{base}/m/val.de.gz: size mismatch for val.de.gz" in str(err.value)
    assert "expected 24681 bytes, the server announces 21650 bytes" in str(err.value)
    assert list(tmp_path.iterdir()) == []


# --- after the body: size, then digests ------------------------------------------------------


def test_digest_mismatch_after_download_is_refused_and_not_promoted(tmp_path: Path) -> None:
    evil = DATA[:-1] + bytes([DATA[-1] ^ 0xFF])  # same size: passes the announced-size check
    with serve({"/blob.tgz": evil}) as (base, state):
        archive = Archive("blob.tgz", (f"{base}/blob.tgz",), SHA, MD5, size=len(DATA))
        with pytest.raises(AdminError) as err:
            fetch_archive(archive, tmp_path, retries=0)
        assert state.bytes_sent == len(DATA)  # it was downloaded in full, then refused
    message = str(err.value)
    assert f"checksum mismatch for blob.tgz from {base}/blob.tgz" in message
    assert f"expected sha256 {SHA}, actual sha256 {hashlib.sha256(evil).hexdigest()}" in message
    assert f"expected md5 {MD5}, actual md5 {hashlib.md5(evil).hexdigest()}" in message
    assert list(tmp_path.iterdir()) == []  # neither blob.tgz nor .blob.tgz.part


def test_correct_file_with_published_size_and_digests_passes(tmp_path: Path) -> None:
    lock = LockFile(tmp_path / "lock.json")
    with serve({"/blob.tgz": DATA}) as (base, state):
        archive = Archive("blob.tgz", (f"{base}/blob.tgz",), SHA, MD5, size=len(DATA))
        path = fetch_archive(archive, tmp_path / "out", lock=lock)
        assert state.requests == [("/blob.tgz", None)] and state.bytes_sent == len(DATA)
        # a second call finds the file, checks its size and digests, fetches nothing
        assert fetch_archive(archive, tmp_path / "out", lock=lock) == path
        assert len(state.requests) == 1
    assert path.read_bytes() == DATA
    assert sorted(p.name for p in path.parent.iterdir()) == ["blob.tgz"]
    assert not lock.path.exists()  # everything was published: nothing to record


def test_lock_records_size_and_a_later_server_announcing_another_is_refused(
    tmp_path: Path,
) -> None:
    # No published digest nor size (as IWSLT'14 de-en.tgz): the first download records
    # both; a later download from a server announcing another size is refused at once.
    lock = LockFile(tmp_path / "lock.json")
    with serve({"/a/blob.tgz": DATA, "/b/blob.tgz": os.urandom(BIG)}) as (base, state):
        fetch_archive(Archive("blob.tgz", (f"{base}/a/blob.tgz",)), tmp_path / "one", lock=lock)
        assert lock.get("blob.tgz") == {
            "sha256": SHA,
            "size": len(DATA),
            "url": f"{base}/a/blob.tgz",
        }
        state.break_after["/b/blob.tgz"] = 0
        with pytest.raises(AdminError) as err:
            fetch_archive(Archive("blob.tgz", (f"{base}/b/blob.tgz",)), tmp_path / "two", lock=lock)
        assert state.requests[-1] == ("/b/blob.tgz", None)
        assert state.bytes_sent == len(DATA)
    assert f"expected {len(DATA)} bytes, the server announces {BIG} bytes" in str(err.value)
    assert list((tmp_path / "two").iterdir()) == []


def test_md5_only_archive_records_sha256_and_size(tmp_path: Path) -> None:
    # As WMT dev.tgz and test-full.tgz: a published md5, no published size.
    lock = LockFile(tmp_path / "lock.json")
    with serve({"/blob.tgz": DATA}) as (base, _):
        fetch_archive(Archive("blob.tgz", (f"{base}/blob.tgz",), md5=MD5), tmp_path, lock=lock)
    assert lock.get("blob.tgz") == {"sha256": SHA, "size": len(DATA), "url": f"{base}/blob.tgz"}


def test_body_running_past_the_expected_size_is_cut_off(tmp_path: Path) -> None:
    with serve({"/blob.tgz": DATA + os.urandom(BIG)}) as (base, state):
        state.no_length.add("/blob.tgz")
        archive = Archive("blob.tgz", (f"{base}/blob.tgz",), sha256=SHA, size=len(DATA))
        with pytest.raises(AdminError) as err:
            fetch_archive(archive, tmp_path, retries=0)
    message = str(err.value)
    assert f"size mismatch for blob.tgz from {base}/blob.tgz: expected {len(DATA)} bytes" in message
    assert "the server sent at least" in message and "the part file was deleted" in message
    assert list(tmp_path.iterdir()) == []


# --- offline copies: size, then digests ----------------------------------------------------


def test_offline_copy_is_checked_for_size_before_digests(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "blob.tgz").write_bytes(DATA[:-10])
    archive = Archive("blob.tgz", ("http://127.0.0.1:9/unreachable",), SHA, size=len(DATA))
    with pytest.raises(SizeMismatch) as err:
        fetch_archive(archive, tmp_path / "out", offline_dir=offline)
    message = str(err.value)
    assert f"size mismatch for offline file {offline / 'blob.tgz'} (blob.tgz)" in message
    assert f"expected {len(DATA)} bytes, actual {len(DATA) - 10} bytes" in message
    assert "sha256" not in message  # refused on its size, before hashing
    assert (offline / "blob.tgz").read_bytes() == DATA[:-10]  # never deleted
    assert not (tmp_path / "out" / "blob.tgz").exists()
    # the right size with the wrong bytes: the digest refuses it
    (offline / "blob.tgz").write_bytes(DATA[:-1] + b"x")
    with pytest.raises(AdminError, match=rf"offline file .*expected sha256 {SHA}"):
        fetch_archive(archive, tmp_path / "out", offline_dir=offline)
    (offline / "blob.tgz").write_bytes(DATA)
    assert fetch_archive(archive, tmp_path / "out", offline_dir=offline).read_bytes() == DATA


def test_existing_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / "blob.tgz").write_bytes(DATA + b"tail")
    archive = Archive("blob.tgz", ("http://127.0.0.1:9/unreachable",), SHA, size=len(DATA))
    with pytest.raises(SizeMismatch, match=rf"expected {len(DATA)} bytes, actual {len(DATA) + 4}"):
        fetch_archive(archive, tmp_path)
    assert list(tmp_path.iterdir()) == []
