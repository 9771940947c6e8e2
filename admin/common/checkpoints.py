"""Loading fairseq checkpoints under torch's weights-only unpickler.

torch >= 2.6 loads with ``weights_only=True``.  fairseq checkpoints hold one
plain Python object beside tensors and containers (the argparse ``Namespace``
of the run), which that unpickler rejects.  Rather than switching the check
off, we allow exactly that type; anything else in a pickle (e.g. a callable)
is still refused.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch

# Exactly what fairseq 0.12 checkpoints need beyond tensors and containers:
# the run's argparse Namespace, nested in the saved config.
SAFE_CHECKPOINT_GLOBALS: list[Any] = [argparse.Namespace]


def allow_fairseq_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` accept fairseq's checkpoint metadata.

    fairseq calls ``torch.load`` itself (training resume, ``fairseq-generate``),
    so the plugin registers these types once when it is imported.
    """
    torch.serialization.add_safe_globals(SAFE_CHECKPOINT_GLOBALS)


def load_checkpoint(path: str | os.PathLike[str], mmap: bool = False) -> dict[str, Any]:
    """Load a fairseq checkpoint on CPU with the weights-only check on.

    ``mmap=True`` maps the tensors instead of reading them: only those that are
    used (e.g. the model's, not the optimizer's) are ever paged in.
    """
    load = {"map_location": "cpu", "weights_only": True, "mmap": mmap}
    allowed = torch.serialization.get_safe_globals()
    if all(g in allowed for g in SAFE_CHECKPOINT_GLOBALS):
        # Registered already (the plugin is loaded): torch's safe_globals context would
        # remove them again on exit, breaking fairseq's own loads in this process.
        return torch.load(path, **load)
    with torch.serialization.safe_globals(SAFE_CHECKPOINT_GLOBALS):
        return torch.load(path, **load)


def tensor_bytes(obj: Any) -> int:
    """Bytes of the distinct tensor storages in a (nested) checkpoint.

    Tensors that share a storage (tied weights such as a shared embedding, views)
    are held once in memory and written once by ``torch.save``: counted per
    tensor, they would be counted several times.
    """
    storages: dict[int, int] = {}

    def visit(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(item, dict):
            for value in item.values():
                visit(value)
        elif isinstance(item, list | tuple):
            for value in item:
                visit(value)

    visit(obj)
    return sum(storages.values())
