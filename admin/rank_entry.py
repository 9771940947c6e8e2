"""One rank of ``fairseq-train``: ``python -m admin.rank_entry FAIRSEQ_TRAIN_ARGV...``.

Started by :mod:`admin.common.launch`, alone or under torchrun.  Under torchrun it
reads ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` and passes them to fairseq
explicitly with ``--distributed-init-method env://``: fairseq's own torchrun
detection derives the device from the CUDA device count, which crashes on CPU
and is wrong with one launcher per node.  Alone, it pins world size 1, so a
single-process run on a multi-GPU node does not spread over every GPU.

CPUs: each rank takes its share of its node's CPUs (``ADMIN_CPUS_PER_NODE``, the job's
threads).  Where a scheduler bound the node's processes to exactly their CPUs (SLURM
with task/affinity or task/cgroup), rank ``i`` of ``n`` is pinned to the ``i``-th slice
of that CPU set; elsewhere (a laptop, where the mask is the whole machine) it is not
pinned, so concurrent jobs do not pile onto the same cores, and only its thread count is
set.  torch's intra-op threads and ``OMP_NUM_THREADS`` (data loader workers) follow.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from admin.common.fairseq_import import import_fairseq
from admin.common.launch import CPUS_ENV


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


def cpu_share(allowed: Sequence[int], local_rank: int, local_world: int) -> list[int]:
    """Rank ``local_rank``'s slice of ``allowed`` when ``local_world`` ranks share it."""
    cpus = sorted(allowed)
    if local_world <= 1:
        return cpus
    per = len(cpus) // local_world
    if per == 0:  # more ranks than CPUs: they share, round robin
        return [cpus[local_rank % len(cpus)]]
    return cpus[local_rank * per : (local_rank + 1) * per]


def take_cpu_share(env: Mapping[str, str]) -> str:
    """Pin this rank to its share of the node's CPUs (module docstring); returns a line
    for the log."""
    import torch

    local_rank = int(env.get("LOCAL_RANK", "0"))
    local_world = int(env.get("LOCAL_WORLD_SIZE", "1"))
    allowed = os.sched_getaffinity(0)
    budget = int(env.get(CPUS_ENV) or len(allowed))
    bound = len(allowed) <= budget  # the scheduler gave us exactly our CPUs
    if bound:
        share = cpu_share(allowed, local_rank, local_world)
        os.sched_setaffinity(0, share)
        threads = len(share)
    else:
        threads = max(1, budget // local_world)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    where = f"pinned to CPUs {sorted(os.sched_getaffinity(0))}" if bound else "not pinned"
    return (
        f"admin: rank {env.get('RANK', '0')} (local {local_rank} of {local_world}) {where}, "
        f"{threads} torch threads"
    )


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    print(take_cpu_share(os.environ), flush=True)
    train = import_fairseq("fairseq_cli.train")  # imported late: it is slow (torch)

    sys.argv = ["fairseq-train", *argv, *rank_flags(os.environ)]
    train.cli_main()


if __name__ == "__main__":
    main()
