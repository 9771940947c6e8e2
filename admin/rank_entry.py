"""One rank of ``fairseq-train``: ``python -m admin.rank_entry FAIRSEQ_TRAIN_ARGV...``.

Started by :mod:`admin.launch`, alone or under torchrun.  Under torchrun it
reads ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` and passes them to fairseq
explicitly with ``--distributed-init-method env://``: fairseq's own torchrun
detection derives the device from the CUDA device count, which crashes on CPU
and is wrong with one launcher per node.  Alone, it pins world size 1, so a
single-process run on a multi-GPU node does not spread over every GPU.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence


def rank_flags(env: Mapping[str, str]) -> list[str]:
    world = int(env.get("WORLD_SIZE", "1"))
    if "RANK" not in env or world == 1:
        return ["--distributed-world-size", "1"]
    return [
        "--distributed-world-size", str(world),
        "--distributed-rank", env["RANK"],
        "--distributed-init-method", "env://",
        "--device-id", env.get("LOCAL_RANK", "0"),
        "--distributed-no-spawn",
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    from fairseq_cli import train  # imported late: it is slow and pulls in torch

    # fairseq's --user-dir import is skipped when a package named "admin" is
    # already loaded (this module's own), so register the plugin here.
    import admin.fairseq_plugin  # noqa: F401

    sys.argv = ["fairseq-train", *argv, *rank_flags(os.environ)]
    train.cli_main()


if __name__ == "__main__":
    main()
