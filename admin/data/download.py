"""Download (or copy from an offline folder) a dataset's archives, verified.

    python -m admin.data.download --dataset NAME --out DIR
        [--lock config/checksums.lock.json] [--offline-dir DIR] [--mirror BASE_URL ...]
        [--mirrors-only] [--retries N] [--only FILENAME ...]

Each archive lands in ``DIR/<filename>`` only once its size and checksums are verified.
While it downloads it is ``DIR/.<filename>.part``; an interrupted download resumes from
there with an HTTP Range request.  URLs are tried in turn (``--mirror`` bases first, then
the registry's URLs).

Where the size is known (published in the registry, or recorded in the lock file), the
size the server announces (Content-Length, or the total of a Content-Range) is checked
before the body is fetched: a wrong or changed file is refused at once, naming the URL and
the expected and announced sizes, and the next URL is tried.  A body that runs past the
expected size is cut off and refused.  After the download the size and then every known
digest are checked; a mismatch deletes the file and names URL, expected and actual values.
An offline copy (``--offline-dir``) is checked the same way, size first, and never deleted.
Archives without a published sha256 or size get theirs recorded in the lock file on first
download and verified against it afterwards (see :mod:`admin.data.registry`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from admin.common.atomic import atomic_path, atomic_write_text
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.data.registry import Archive, get_dataset

CHUNK = 1 << 20
USER_AGENT = "admin-nmt-data/0.1 (+https://arxiv.org/abs/2004.08249 reproduction)"
DEFAULT_LOCK = Path("config/checksums.lock.json")
LOCK_COMMENT = (
    "sha256 and size of downloaded archives whose sha256 or size no public source states "
    "(see admin/data/registry.py); recorded on first download by admin.data.download and "
    "verified on every later one."
)


# --- digests and the lock file --------------------------------------------------------


@dataclass(frozen=True)
class Digests:
    sha256: str
    md5: str
    size: int


def file_digests(path: Path) -> Digests:
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            sha.update(block)
            md5.update(block)
            size += len(block)
    return Digests(sha.hexdigest(), md5.hexdigest(), size)


class LockFile:
    """JSON file ``{"archives": {filename: {"sha256", "size", "url"}}}``, committed by users.

    It holds the sha256 and size of archives for which no public source states them
    (recorded on first download); the registry's published figures take precedence.

    Updates take an exclusive flock on a sidecar file, so that concurrent download rules
    do not lose each other's entries, and are written atomically.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _read(self) -> dict:
        if not self.path.exists():
            return {"archives": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise AdminError(f"{self.path}: not valid JSON ({err})") from None
        if not isinstance(data.get("archives"), dict):
            raise AdminError(f'{self.path}: expected a JSON object with an "archives" object')
        return data

    def get(self, filename: str) -> dict | None:
        return self._read()["archives"].get(filename)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flock_path = self.path.parent / f".{self.path.name}.flock"
        with open(flock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def record(self, filename: str, digests: Digests, url: str) -> None:
        with self._locked():
            data = self._read()
            known = data["archives"].get(filename)
            if known and known.get("sha256") != digests.sha256:
                raise AdminError(
                    f"{self.path}: {filename} is already recorded with sha256 "
                    f"{known.get('sha256')}, refusing to overwrite it with {digests.sha256}"
                )
            data.setdefault("_comment", LOCK_COMMENT)
            data["archives"][filename] = {
                "sha256": digests.sha256,
                "size": digests.size,
                "url": url,
            }
            data["archives"] = dict(sorted(data["archives"].items()))
            atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@dataclass(frozen=True)
class Expected:
    """What a copy of an archive must be: the published figures, else the lock file's."""

    sha256: str | None
    md5: str | None
    size: int | None

    @property
    def incomplete(self) -> bool:
        """Whether the lock file should record this archive (sha256 or size unknown)."""
        return self.sha256 is None or self.size is None


def expected(archive: Archive, lock: LockFile | None) -> Expected:
    entry = lock.get(archive.filename) if lock is not None else None
    entry = entry or {}
    sha256 = archive.sha256 or (str(entry["sha256"]) if entry.get("sha256") else None)
    size = archive.size if archive.size is not None else entry.get("size")
    return Expected(sha256, archive.md5, int(size) if size is not None else None)


def expected_sha256(archive: Archive, lock: LockFile | None) -> str | None:
    return expected(archive, lock).sha256


def verify(
    path: Path, archive: Archive, lock: LockFile | None, origin: str
) -> tuple[Digests, bool]:
    """Check ``path``'s size, then its digests; delete it and raise on a mismatch.

    Returns the digests and whether the sha256 or size was unknown (so the lock file
    should record them).
    """
    want = expected(archive, lock)
    actual_size = path.stat().st_size
    if want.size is not None and actual_size != want.size:
        path.unlink(missing_ok=True)
        raise SizeMismatch(
            f"size mismatch for {archive.filename} from {origin}: expected {want.size} "
            f"bytes, actual {actual_size} bytes; the file was deleted"
        )
    digests = file_digests(path)
    problems = _mismatches(digests, want)
    if problems:
        path.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"checksum mismatch for {archive.filename} from {origin}: {'; '.join(problems)} "
            f"({digests.size} bytes); the file was deleted"
        )
    return digests, want.incomplete


def _mismatches(digests: Digests, want: Expected) -> list[str]:
    """Each known size or digest that ``digests`` does not match, as 'expected X, actual Y'."""
    problems = []
    if want.size is not None and digests.size != want.size:
        problems.append(f"expected {want.size} bytes, actual {digests.size} bytes")
    if want.sha256 is not None and digests.sha256 != want.sha256:
        problems.append(f"expected sha256 {want.sha256}, actual sha256 {digests.sha256}")
    if want.md5 is not None and digests.md5 != want.md5:
        problems.append(f"expected md5 {want.md5}, actual md5 {digests.md5}")
    return problems


class ChecksumMismatch(AdminError):
    pass


class SizeMismatch(ChecksumMismatch):
    """The size announced by a server, or the size of a file, is not the expected one."""


# --- HTTP with resume ------------------------------------------------------------------


class _Progress:
    """A one-line progress display on a terminal; a start and an end line otherwise."""

    def __init__(self, label: str, total: int | None, start: int) -> None:
        self.label, self.total, self.done = label, total, start
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        if not self.tty:
            resumed = f" (resuming at {start} bytes)" if start else ""
            print(f"downloading {label}{resumed}", file=sys.stderr)

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self.last > 0.2:
            self.last = now
            mb = self.done / 1e6
            if self.total:
                pct = 100.0 * self.done / self.total
                text = f"{mb:,.1f}/{self.total / 1e6:,.1f} MB {pct:5.1f}%"
            else:
                text = f"{mb:,.1f} MB"
            print(f"\r{self.label}: {text}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)
        else:
            print(f"downloaded {self.label}: {self.done} bytes", file=sys.stderr)


class _Incomplete(Exception):
    pass


class _Overrun(Exception):
    pass


def _announced_total(response: http.client.HTTPResponse, have: int) -> int | None:
    """The whole file's size as the response headers state it, None if they do not."""
    if response.status == 206:
        # "bytes START-END/TOTAL"; TOTAL may be "*" (unknown)
        total = response.headers.get("Content-Range", "").rpartition("/")[2].strip()
        if total.isdigit():
            return int(total)
        length = response.headers.get("Content-Length")
        return have + int(length) if length is not None and length.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length is not None and length.isdigit() else None


def _http_get(url: str, part: Path, timeout: float, size: int | None = None) -> None:
    """Fetch ``url`` into ``part``, resuming from its current size with a Range request.

    With ``size`` (the expected size of the whole file), the size the server announces
    is checked before any of the body is read, and a body that runs past it is cut off;
    both raise :class:`SizeMismatch`.
    """
    name = part.name.removeprefix(".").removesuffix(".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()  # longer than the file can be: not a prefix of it, start over
        have = 0
    if size is not None and have == size:
        return  # the part file is whole; the digests decide whether it is right
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            return  # nothing left to send: the part file is already whole
        raise
    with response:
        if have and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {have}-"):
                raise _Incomplete(f"unexpected Content-Range {content_range!r} for {have}-")
            mode = "ab"
        else:
            have, mode = 0, "wb"  # the server ignored the Range header: start over
        announced = _announced_total(response, have)
        if size is not None and announced is not None and announced != size:
            # Refused before a byte of the body is read (the part file is untouched).
            raise SizeMismatch(
                f"size mismatch for {name} from {url}: expected {size} bytes, the server "
                f"announces {announced} bytes; refused before reading the body"
            )
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        total = have + remaining if remaining is not None else None
        progress = _Progress(name, total, have)
        received = 0
        with open(part, mode) as handle:
            try:
                while block := response.read(CHUNK):
                    if size is not None and have + received + len(block) > size:
                        raise _Overrun(have + received + len(block))
                    handle.write(block)
                    received += len(block)
                    progress.update(len(block))
            except _Overrun as err:
                handle.close()
                part.unlink(missing_ok=True)
                raise SizeMismatch(
                    f"size mismatch for {name} from {url}: expected {size} bytes, "
                    f"the server sent at least {err.args[0]} bytes; the part file was deleted"
                ) from None
            except (TimeoutError, http.client.IncompleteRead, ConnectionError) as err:
                got = have + received
                raise _Incomplete(f"connection broke after {got} bytes: {err}") from None
            finally:
                progress.close()
        if remaining is not None and received < remaining:
            raise _Incomplete(f"got {have + received} of {total} bytes")


def _download_one(
    url: str, part: Path, retries: int, timeout: float, size: int | None = None
) -> None:
    errors = []
    for attempt in range(retries + 1):
        try:
            _http_get(url, part, timeout, size)
            return
        except _Incomplete as err:
            errors.append(str(err))  # keep the part file: the next attempt resumes
        except urllib.error.HTTPError as err:
            raise AdminError(f"HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            errors.append(str(getattr(err, "reason", err)))
        if attempt < retries:
            time.sleep(min(2.0**attempt, 30.0) * 0.5)
    raise AdminError(f"failed after {retries + 1} attempts ({'; '.join(errors)})")


def fetch_archive(
    archive: Archive,
    out_dir: str | os.PathLike[str],
    *,
    lock: LockFile | None = None,
    offline_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] = (),
    retries: int = 3,
    timeout: float = 60.0,
    mirrors_only: bool = False,
) -> Path:
    """Make ``out_dir/<filename>`` a verified copy of ``archive``; return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / archive.filename
    if final.exists():
        digests, unknown = verify(final, archive, lock, origin=str(final))
        if unknown and lock is not None:
            lock.record(archive.filename, digests, str(final))
        return final

    if offline_dir is not None:
        source = Path(offline_dir) / archive.filename
        if not source.is_file():
            raise AdminError(
                f"offline folder {offline_dir} has no {archive.filename} (looked for {source})"
            )
        digests, unknown = _verify_copy(source, archive, lock)
        with atomic_path(final) as tmp:
            tmp.unlink()
            try:
                os.link(source, tmp)  # big WMT archives: no second copy when possible
            except OSError:
                shutil.copyfile(source, tmp)
        if unknown and lock is not None:
            lock.record(archive.filename, digests, source.resolve().as_uri())
        return final

    urls = [f"{base.rstrip('/')}/{archive.filename}" for base in mirrors]
    if not mirrors_only:
        urls += archive.urls
    part = out_dir / f".{archive.filename}.part"
    failures = []
    size = expected(archive, lock).size
    for url in urls:
        try:
            _download_one(url, part, retries, timeout, size)
            digests, unknown = verify(part, archive, lock, origin=url)
        except AdminError as err:
            # A mismatch after the download already deleted the part file; a size refused
            # before the download left it as it was.  After a network failure it stays,
            # so the next URL (a mirror of the same bytes) or the next run resumes it; a
            # wrong mix would fail the checksum.
            failures.append(f"  {url}: {err}")
            continue
        os.replace(part, final)
        if unknown and lock is not None:
            lock.record(archive.filename, digests, url)
        return final
    raise AdminError(
        f"could not download {archive.filename}; tried {len(urls)} URL(s):\n" + "\n".join(failures)
    )


def _verify_copy(source: Path, archive: Archive, lock: LockFile | None) -> tuple[Digests, bool]:
    # Never delete the user's offline copy: check its size, then its digests, in place.
    want = expected(archive, lock)
    actual_size = source.stat().st_size
    if want.size is not None and actual_size != want.size:
        raise SizeMismatch(
            f"size mismatch for offline file {source} ({archive.filename}): expected "
            f"{want.size} bytes, actual {actual_size} bytes"
        )
    digests = file_digests(source)
    problems = _mismatches(digests, want)
    if problems:
        raise ChecksumMismatch(
            f"checksum mismatch for offline file {source}: {'; '.join(problems)}"
        )
    return digests, want.incomplete


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admin.data.download", description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True, type=Path, help="folder for the archives")
    parser.add_argument("--lock", type=Path, default=DEFAULT_LOCK, help="checksum lock file")
    parser.add_argument("--offline-dir", type=Path, help="folder of already-downloaded archives")
    parser.add_argument(
        "--mirror", action="append", default=[], help="base URL tried before the registry's"
    )
    parser.add_argument(
        "--mirrors-only", action="store_true", help="never fall back to the registry's URLs"
    )
    parser.add_argument("--only", action="append", help="fetch only this archive (repeatable)")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    dataset = get_dataset(args.dataset)
    lock = LockFile(args.lock)
    archives = dataset.archives
    if args.only:
        names = {a.filename for a in archives}
        missing = sorted(set(args.only) - names)
        if missing:
            raise AdminError(f"{dataset.name} has no archive {missing}; it has {sorted(names)}")
        archives = tuple(a for a in archives if a.filename in args.only)
    for archive in archives:
        path = fetch_archive(
            archive,
            args.out,
            lock=lock,
            offline_dir=args.offline_dir,
            mirrors=args.mirror,
            retries=args.retries,
            timeout=args.timeout,
            mirrors_only=args.mirrors_only,
        )
        print(f"ok {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
