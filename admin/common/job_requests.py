"""What a run's jobs ask the scheduler for: one SLURM job per run, and its GPUs.

On a cluster every job waits in the queue, so a run's ``train``, ``average`` and
``evaluate`` steps go to SLURM as one job: a Snakemake job group named after the run
(:func:`run_group`).  Snakemake sizes a group job from its members (the largest of
their CPUs, memory and GPUs; the sum of their time limits) and runs the members one
after the other inside it, each with its own log, benchmark file and retries; outside
SLURM (a local run) groups have no effect (docs/slurm-internals.md, "One job per run").

A group's GPU request must be one the ``evaluate`` step's one-GPU ``gpu`` resource
can join: a job-wide count (``sbatch --gpus``).  So a one-node training job asks for
its GPUs as ``gpu`` (:func:`train_gpu`), which on one node is the same allocation as a
per-node ``--gres``.  A multi-node training job must ask per node (``--gres=gpu:G``,
:func:`train_gres`; a job-wide count would put every GPU on the first node's job step),
which no group with ``evaluate`` can: it stays a job of its own, and the run's
``average`` and ``evaluate`` steps share a second one.

Locally, the ``gpu`` resource counts against a user's ``--resources gpu=N`` cap, which
the checks here keep honest: a job wider than the cap, or on several nodes, stops with
the rule and wildcards named.  Which devices a job gets is
:mod:`admin.common.gpu_lease`'s business.
"""

from __future__ import annotations

from admin.common.errors import AdminError
from admin.common.run_folder import RunKey, parse_depth

# The steps of one run that share its SLURM job.
RUN_STEPS = ("train", "average", "evaluate")


def depth_priority(depth: str) -> int:
    """The scheduling priority of every job of a run (profile, train, average,
    evaluate): its layers, encoder and decoder.  Within a dataset a deeper run trains
    longer; starting the longest jobs first is meant to keep a deep run from training
    alone at the end on a few cores.  Its profiling goes first for Admin's training, and
    its decoding follows.  On the demo it did not shorten the wall time in the one run
    measured (README, "The embedded demo").  The order changes no result."""
    encoder, decoder = parse_depth(depth)
    return encoder + decoder


def run_group(step: str, key: RunKey, train_nodes: int) -> str | None:
    """The job group of a run's ``step``: ``run_<dataset>_<variant>_<depth>_<seed>``
    (what the SLURM job's comment and log folder start with), or None for a training
    step on several nodes (a job of its own, see the module doc)."""
    if step not in RUN_STEPS:
        raise ValueError(f"{step!r} is not one of a run's steps {RUN_STEPS}")
    if step == "train" and train_nodes > 1:
        return None
    return group_name(key)


def group_name(key: RunKey) -> str:
    return f"run_{key.dataset}_{key.variant}_{key.depth}_{key.seed}"


def train_gpu(
    gpus: int, nodes: int, *, cap: int | None = None, where: str = "rule train"
) -> int | None:
    """The training job's ``gpu`` resource: the GPUs of a one-node job (so that the run's
    group asks ``--gpus=G`` on SLURM, and a local ``--resources gpu=N`` counts them), none
    for a multi-node job (its ``gres``) or a CPU one.

    ``cap``: the ``--resources gpu=N`` of a local run, checked here: a job wider than
    the cap, or on several nodes, could not run as asked."""
    if cap is not None:
        if nodes > 1:
            raise AdminError(
                f"{where} trains on {nodes} nodes of {gpus} GPUs: a local run cannot start "
                "it; run it on a SLURM cluster (--profile slurm) or leave it out "
                "(e.g. --config depths=[...])"
            )
        if gpus > cap:
            # Snakemake would lower the job's count to the cap and let it use more GPUs.
            raise AdminError(
                f"{where} needs {gpus} GPUs, more than --resources gpu={cap}; lower "
                "resources.train.gpus in a config file of yours (batch_gpus keeps "
                "the recipe's batch)"
            )
    return gpus if gpus and nodes == 1 else None


def train_gres(gpus: int, nodes: int) -> str:
    """The training job's ``gres``: ``gpu:G`` per node for a multi-node job, else empty
    (a one-node job asks through ``gpu``, :func:`train_gpu`)."""
    return f"gpu:{gpus}" if gpus and nodes > 1 else ""
