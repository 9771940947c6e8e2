"""Shared pytest fixtures.

Real data for tests lives in ``../shared/data`` beside the checkout (never in
the repository).  A missing folder is an error, not a skip: CI must fail loudly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ADMIN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        raise RuntimeError(
            f"test data folder {SHARED_DATA} is missing: clone the project beside ../shared "
            "or set ADMIN_SHARED_DATA"
        )
    return SHARED_DATA


VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


@pytest.fixture(scope="session")
def tiny_databin(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fairseq data-bin made from real BPE'd IWSLT'14 De-En sentences.

    600 training, 60 valid and 60 test pairs from the reference preparation,
    binarized by the real ``fairseq-preprocess`` with a joined dictionary.
    """
    import subprocess

    prepared = shared_data / "iwslt14_de_en_fairseq_prepared"
    raw = tmp_path_factory.mktemp("tiny_raw")
    spans = {"train": (0, 600), "valid": (600, 660), "test": (660, 720)}
    for lang in ("de", "en"):
        lines = (prepared / f"valid.{lang}").read_text(encoding="utf-8").splitlines(True)
        for split, (start, stop) in spans.items():
            (raw / f"{split}.{lang}").write_text("".join(lines[start:stop]), encoding="utf-8")
    dest = tmp_path_factory.mktemp("tiny_databin")
    subprocess.run(
        [
            str(VENV_BIN / "fairseq-preprocess"),
            "--source-lang",
            "de",
            "--target-lang",
            "en",
            "--trainpref",
            str(raw / "train"),
            "--validpref",
            str(raw / "valid"),
            "--testpref",
            str(raw / "test"),
            "--destdir",
            str(dest),
            "--joined-dictionary",
            "--workers",
            "1",
        ],  # fmt: skip
        check=True,
        capture_output=True,
    )
    return dest
