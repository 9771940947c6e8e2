"""Download (or copy from an offline folder) a dataset's archives, verified.

    python -m admin.data.download --dataset NAME --out DIR
        [--lock config/checksums.lock.json] [--offline-dir DIR] [--mirror BASE_URL ...]
        [--mirrors-only] [--retries N] [--only FILENAME ...]

Each archive lands in ``DIR/<filename>`` only once its checksum is verified.  While it
downloads it is ``DIR/.<filename>.part``; an interrupted download resumes from there with
an HTTP Range request.  URLs are tried in turn (``--mirror`` bases first, then the
registry's URLs).  A checksum mismatch deletes the file and names URL, expected and actual
digests.  Archives without a published checksum get theirs recorded in the lock file on
first download and verified against it afterwards (see :mod:`admin.data.registry`).
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
            data.setdefault(
                "_comment",
                "sha256 of downloaded archives that have no published checksum; recorded on "
                "first download by admin.data.download and verified on every later one.",
            )
            data["archives"][filename] = {
                "sha256": digests.sha256,
                "size": digests.size,
                "url": url,
            }
            data["archives"] = dict(sorted(data["archives"].items()))
            atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def expected_sha256(archive: Archive, lock: LockFile | None) -> str | None:
    if archive.sha256:
        return archive.sha256
    if lock is not None:
        entry = lock.get(archive.filename)
        if entry:
            return str(entry["sha256"])
    return None


def verify(
    path: Path, archive: Archive, lock: LockFile | None, origin: str
) -> tuple[Digests, bool]:
    """Check ``path`` against the known digests; delete it and raise on a mismatch.

    Returns the digests and whether the sha256 was unknown (so it should be recorded).
    """
    digests = file_digests(path)
    want = expected_sha256(archive, lock)
    problems = _mismatches(digests, archive, want)
    if problems:
        path.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"checksum mismatch for {archive.filename} from {origin}: {'; '.join(problems)} "
            f"({digests.size} bytes); the file was deleted"
        )
    return digests, want is None


def _mismatches(digests: Digests, archive: Archive, want_sha256: str | None) -> list[str]:
    """Each known digest that ``digests`` does not match, as 'expected X, actual Y'."""
    problems = []
    if want_sha256 is not None and digests.sha256 != want_sha256:
        problems.append(f"expected sha256 {want_sha256}, actual sha256 {digests.sha256}")
    if archive.md5 is not None and digests.md5 != archive.md5:
        problems.append(f"expected md5 {archive.md5}, actual md5 {digests.md5}")
    return problems


class ChecksumMismatch(AdminError):
    pass


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


def _http_get(url: str, part: Path, timeout: float) -> None:
    """Fetch ``url`` into ``part``, resuming from its current size with a Range request."""
    have = part.stat().st_size if part.exists() else 0
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
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        total = have + remaining if remaining is not None else None
        progress = _Progress(part.name.removeprefix(".").removesuffix(".part"), total, have)
        received = 0
        with open(part, mode) as handle:
            try:
                while block := response.read(CHUNK):
                    handle.write(block)
                    received += len(block)
                    progress.update(len(block))
            except (TimeoutError, http.client.IncompleteRead, ConnectionError) as err:
                got = have + received
                raise _Incomplete(f"connection broke after {got} bytes: {err}") from None
            finally:
                progress.close()
        if remaining is not None and received < remaining:
            raise _Incomplete(f"got {have + received} of {total} bytes")


def _download_one(url: str, part: Path, retries: int, timeout: float) -> None:
    errors = []
    for attempt in range(retries + 1):
        try:
            _http_get(url, part, timeout)
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
    for url in urls:
        try:
            _download_one(url, part, retries, timeout)
            digests, unknown = verify(part, archive, lock, origin=url)
        except AdminError as err:
            # A mismatch already deleted the part file.  After a network failure it stays,
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
    # Never delete the user's offline copy: verify a digest of it without unlinking.
    digests = file_digests(source)
    want = expected_sha256(archive, lock)
    problems = _mismatches(digests, archive, want)
    if problems:
        raise ChecksumMismatch(
            f"checksum mismatch for offline file {source}: {'; '.join(problems)}"
        )
    return digests, want is None


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
