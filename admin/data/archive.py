"""Reading the members a recipe needs out of downloaded archives, with clear errors."""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from admin.common.errors import AdminError

_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError)


def _norm(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def extract_members(
    archive: str | os.PathLike[str], members: Sequence[str], dest: str | os.PathLike[str]
) -> dict[str, Path]:
    """Extract ``members`` (paths inside the tar) of ``archive`` into ``dest``.

    One sequential pass over the archive (the WMT ones are gigabytes).  A truncated or
    corrupt archive and a missing member are :class:`AdminError`s naming the archive.
    """
    archive, dest = Path(archive), Path(dest)
    wanted = {_norm(m) for m in members}
    found: dict[str, Path] = {}
    if not archive.is_file():
        raise AdminError(f"archive {archive} not found")
    try:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                name = _norm(info.name)
                if name not in wanted or not info.isfile():
                    continue
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(info)
                assert source is not None
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                if target.stat().st_size != info.size:
                    raise EOFError(f"member {name} is short")
                found[name] = target
    except _CORRUPT as err:
        raise AdminError(
            f"archive {archive} is truncated or corrupt ({type(err).__name__}: {err}); "
            "delete it and download it again"
        ) from None
    missing = sorted(wanted - set(found))
    if missing:
        raise AdminError(f"archive {archive} lacks expected member(s): {', '.join(missing)}")
    return {m: found[_norm(m)] for m in members}


def gunzip(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Decompress a ``.gz`` file; a truncated one is an :class:`AdminError` naming it."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise AdminError(f"file {source} not found")
    try:
        with gzip.open(source, "rb") as inp, open(target, "wb") as out:
            shutil.copyfileobj(inp, out, 1 << 20)
    except _CORRUPT as err:
        raise AdminError(
            f"{source} is truncated or corrupt ({type(err).__name__}: {err}); "
            "delete it and download it again"
        ) from None
    return target
