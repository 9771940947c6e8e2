"""Observes each rank of a data-parallel test run (loaded via PYTHONPATH).

Only active when ``ADMIN_RANK_PROBE_DIR`` is set and the process is a torchrun
worker (``RANK`` set).  It changes nothing in the run; it records, in the subfolder
named after the run folder (``<dataset>_<variant>_<depth>_seed<N>``: the four folders
above ``--save-dir``, as ``tests.steps_support.probe_folder`` names it)
* ``writes.rank<R>.txt``: every file the rank opened for writing (audit hook);
* ``omegas.rank<R>.json``: the Admin omegas the rank holds at its first forward,
  i.e. right after the model was built from the profile, before any update;
* ``cpus.rank<R>.json``: where the rank runs at its first forward: its host, SLURM node,
  CPU affinity, torch's thread count, OMP_NUM_THREADS and CUDA_VISIBLE_DEVICES.
"""

import json
import os
import sys

_PROBE = os.environ.get("ADMIN_RANK_PROBE_DIR")
_RANK = os.environ.get("RANK")


def _run_folder_name() -> str:
    with open("/proc/self/cmdline", "rb") as fh:
        argv = fh.read().decode().split("\0")
    save_dir = argv[argv.index("--save-dir") + 1] if "--save-dir" in argv else "unknown"
    parts = os.path.normpath(os.path.abspath(save_dir)).split(os.sep)
    return "_".join(parts[-5:-1])


if _PROBE and _RANK is not None:
    _DIR = os.path.join(_PROBE, _run_folder_name())
    os.makedirs(_DIR, exist_ok=True)
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
        where = {
            "host": os.uname().nodename,
            "slurm_nodeid": os.environ.get("SLURM_NODEID"),
            "slurmd_nodename": os.environ.get("SLURMD_NODENAME"),
            "local_rank": os.environ.get("LOCAL_RANK"),
            "affinity": sorted(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        with open(os.path.join(_DIR, f"cpus.rank{_RANK}.json"), "w", encoding="utf-8") as fh:
            json.dump(where, fh)
        tensors = dict(module.named_parameters())
        tensors.update(module.named_buffers())
        omegas = {k: v.detach().tolist() for k, v in tensors.items() if k.endswith("omega")}
        with open(os.path.join(_DIR, f"omegas.rank{_RANK}.json"), "w", encoding="utf-8") as fh:
            json.dump(omegas, fh)

    torch.nn.modules.module.register_module_forward_pre_hook(_first_forward)
