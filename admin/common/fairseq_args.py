"""Turn a recipe's hyperparameters (a mapping) into fairseq command-line flags.

The config holds fairseq options by their dest names (``max_tokens``); this is
the one place that turns them into an argv list (``--max-tokens 4096``).  The
list goes to ``subprocess`` directly, never through a shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from admin.common.errors import AdminError


def to_argv(hparams: Mapping[str, Any]) -> list[str]:
    """Map ``{"lr": 5e-4, "share_all_embeddings": True}`` to
    ``["--lr", "0.0005", "--share-all-embeddings"]``.

    ``True`` is a bare flag; ``False`` and ``None`` are left out; lists become
    comma-separated values (fairseq's convention for e.g. ``--lr``).
    """
    argv: list[str] = []
    for key, value in hparams.items():
        if not isinstance(key, str) or not key.replace("_", "").isalnum():
            raise AdminError(f"hyperparameter name {key!r} is not a fairseq option name")
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list | tuple):
            argv += [flag, ",".join(str(v) for v in value)]
        elif isinstance(value, int | float | str):
            argv += [flag, str(value)]
        else:
            raise AdminError(f"hyperparameter {key!r} has unsupported value {value!r}")
    return argv


def precision(hparams: Mapping[str, Any]) -> str:
    """The precision fairseq trains (or decodes) in under ``hparams``: fp16 (``fp16`` or
    ``memory_efficient_fp16``), bf16 (``bf16``) or fp32."""
    if hparams.get("fp16") or hparams.get("memory_efficient_fp16"):
        return "fp16"
    return "bf16" if hparams.get("bf16") else "fp32"
