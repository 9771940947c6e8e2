from __future__ import annotations

import pytest

from admin.common.errors import AdminError
from admin.common.fairseq_args import to_argv


def test_to_argv_maps_types():
    argv = to_argv(
        {"lr": 0.0005, "max_tokens": 4096, "share_all_embeddings": True, "fp16": False,
         "restore_file": None, "adam_betas": "(0.9, 0.98)", "update_freq": [2]}
    )  # fmt: skip
    assert argv == [
        "--lr", "0.0005", "--max-tokens", "4096", "--share-all-embeddings",
        "--adam-betas", "(0.9, 0.98)", "--update-freq", "2",
    ]  # fmt: skip


@pytest.mark.parametrize("bad", [{"lr; rm -rf /": 1}, {"lr": {"nested": 1}}])
def test_to_argv_rejects_bad_input(bad):
    with pytest.raises(AdminError):
        to_argv(bad)
