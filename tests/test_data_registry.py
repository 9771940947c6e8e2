"""The registry: every archive carries a published size and digest with its source named,
or says explicitly that no public source states them."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from admin.data import registry
from admin.data.registry import DATASETS, MULTI30K_DE_EN, Archive

ARCHIVES = sorted(
    {(d.name, a.filename): a for d in DATASETS.values() for a in d.archives}.items(),
)
IDS = [f"{name}/{filename}" for (name, filename), _ in ARCHIVES]

# What no public source states, checked in tensorflow/datasets, HuggingFace datasets,
# sacrebleu, Sockeye and fairseq (see the registry's docstring).  An archive added without
# a published size or digest makes the test below fail until it is documented here.
NOT_PUBLISHED = {
    "de-en.tgz": {"size", "digest"},  # IWSLT'14, fairseq's mirror
    "dev.tgz": {"size"},  # WMT'17 dev sets: md5 only
    "test-full.tgz": {"size"},  # WMT'14 test sets: md5 only
}
COMMIT = re.compile(r"\b[0-9a-f]{40}\b")
REPO_FILE = re.compile(r"\b[\w.-]+/[\w.-]+ [\w.-]+(/[\w.-]+)+")  # "owner/repo dir/file"


def _missing(archive: Archive) -> set[str]:
    missing = set()
    if archive.size is None:
        missing.add("size")
    if archive.sha256 is None and archive.md5 is None:
        missing.add("digest")
    return missing


@pytest.mark.parametrize(("key", "archive"), ARCHIVES, ids=IDS)
def test_every_archive_has_a_published_size_and_digest_or_says_why_not(
    key: tuple[str, str], archive: Archive
) -> None:
    assert archive.source.strip(), f"{key}: no source named"
    missing = _missing(archive)
    assert missing == NOT_PUBLISHED.get(archive.filename, set()), key
    if missing:
        # said in the archive's source text and in the module docstring
        assert "no public source" in archive.source, key
        assert archive.filename in registry.__doc__
        assert "lock file" in archive.source, key
    if archive.size is not None or archive.sha256 or archive.md5:
        # each published figure names a repository, a file in it and a commit
        assert COMMIT.search(archive.source), key
        assert REPO_FILE.search(archive.source), key


@pytest.mark.parametrize(("key", "archive"), ARCHIVES, ids=IDS)
def test_digests_and_sizes_are_well_formed(key: tuple[str, str], archive: Archive) -> None:
    if archive.sha256 is not None:
        assert re.fullmatch(r"[0-9a-f]{64}", archive.sha256), key
    if archive.md5 is not None:
        assert re.fullmatch(r"[0-9a-f]{32}", archive.md5), key
    if archive.size is not None:
        assert isinstance(archive.size, int) and archive.size > 0, key


def _same_file_key(url: str) -> tuple[str, str]:
    """(host without 'www.', path): what http/https and statmt.org/www.statmt.org share."""
    parts = urlsplit(url)
    return parts.netloc.removeprefix("www."), parts.path


@pytest.mark.parametrize(("key", "archive"), ARCHIVES, ids=IDS)
def test_published_url_is_the_same_file_as_ours(key: tuple[str, str], archive: Archive) -> None:
    # Every URL a figure was published for is one of ours up to the scheme and "www.",
    # the only differences the source texts explain; and our primary URL is among them.
    published = re.findall(r"https?://[^\s;,()]+", archive.source)
    if not published:
        assert "multi30k/dataset" in archive.source or "no public source" in archive.source
        return
    ours = {_same_file_key(url) for url in archive.urls}
    for url in published:
        assert _same_file_key(url) in ours, (key, url)
    assert _same_file_key(archive.urls[0]) in {_same_file_key(u) for u in published}, key


def test_wmt_training_archives_carry_tfds_size_and_sha256_and_sockeye_md5() -> None:
    for name in ("wmt14_en_de", "wmt14_en_fr"):
        for archive in DATASETS[name].archives:
            if archive.filename.startswith("training-"):
                assert archive.size and archive.sha256 and archive.md5, archive.filename
                assert "tensorflow/datasets tensorflow_datasets/url_checksums/" in archive.source
                assert "awslabs/sockeye contrib/autopilot/tasks.py" in archive.source


def test_an_archive_shared_by_two_datasets_has_one_set_of_figures() -> None:
    by_name: dict[str, Archive] = {}
    for dataset in DATASETS.values():
        for archive in dataset.archives:
            assert by_name.setdefault(archive.filename, archive) == archive


def test_multi30k_figures_match_the_real_files(shared_data: Path) -> None:
    raw = shared_data / "multi30k_task1_de_en" / "raw"
    for archive in MULTI30K_DE_EN.archives:
        data = (raw / archive.filename).read_bytes()
        assert len(data) == archive.size, archive.filename
        assert hashlib.sha256(data).hexdigest() == archive.sha256, archive.filename
        # and the git blob id the source names is that of these bytes
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        assert f"git blob {blob} " in archive.source, archive.filename
