"""Shared pytest fixtures.

Real data for tests lives in ``../shared/data`` beside the checkout (never in
the repository).  A missing folder is an error, not a skip: CI must fail loudly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


# `make test` runs the suite on two workers (`pytest -n 2 --dist loadfile`).  Each module
# runs whole on one worker, so its module-scoped fixtures (a trained run, a rehearsal)
# are built once; every module that drives the local SLURM cluster runs on the same
# worker, since the fault drills set a node DOWN and would requeue another module's jobs.
# The longest modules start first so that both workers stay busy to the end (measured
# with --durations; the order only changes the wall time).
LONGEST_FIRST = (
    "test_slurm_rehearsal.py",
    "test_workflow_e2e.py",
    "test_status.py",
    "test_divergence.py",
    "test_run_identity.py",
    "test_cli_end_to_end.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each module is kept


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadfile, with every SLURM module in one unit of work."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False  # keep LONGEST_FIRST (xdist sorts by test count)

    class SlurmTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return "slurm" if Path(module).name.startswith("test_slurm_") else module

    return SlurmTogether(config, log)
