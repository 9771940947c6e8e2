"""Observes each rank of a data-parallel test run (loaded via PYTHONPATH).

Only active when ``ADMIN_RANK_PROBE_DIR`` is set and the process is a torchrun
worker (``RANK`` set).  It changes nothing in the run; it records
* ``writes.rank<R>.txt``: every file the rank opened for writing (audit hook);
* ``omegas.rank<R>.json``: the Admin omegas the rank holds at its first forward,
  i.e. right after the model was built from the profile, before any update.
"""

import json
import os
import sys

_DIR = os.environ.get("ADMIN_RANK_PROBE_DIR")
_RANK = os.environ.get("RANK")

if _DIR and _RANK is not None:
    _writes = open(os.path.join(_DIR, f"writes.rank{_RANK}.txt"), "a", encoding="utf-8")  # noqa: SIM115

    def _audit(event, args):
        if event == "open" and isinstance(args[1], str) and set(args[1]) & set("wax+"):
            _writes.write(f"{os.fspath(args[0])}\n")
            _writes.flush()
        elif event in ("os.rename", "os.replace"):
            _writes.write(f"{os.fspath(args[1])}\n")
            _writes.flush()

    sys.addaudithook(_audit)

    import torch

    _done = []

    def _first_forward(module, _inputs):
        if _done or type(module).__name__ != "AdminTransformerModel":
            return
        _done.append(True)
        tensors = dict(module.named_parameters())
        tensors.update(module.named_buffers())
        omegas = {k: v.detach().tolist() for k, v in tensors.items() if k.endswith("omega")}
        with open(os.path.join(_DIR, f"omegas.rank{_RANK}.json"), "w", encoding="utf-8") as fh:
            json.dump(omegas, fh)

    torch.nn.modules.module.register_module_forward_pre_hook(_first_forward)
