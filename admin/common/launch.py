"""How ``admin.train`` starts fairseq: one process, one per device, or one launcher per node.

Every mode runs the same per-rank entry point, :mod:`admin.rank_entry`, which
hands fairseq its rank explicitly (fairseq's own torchrun detection divides by
the CUDA device count, which breaks on CPU and with one launcher per node):

``single``    ``python -m admin.rank_entry ARGV`` (world size 1)
``torchrun``  one node: ``torchrun --standalone --nproc_per_node N`` (a free port
              is picked by torchrun, so concurrent jobs on a node never collide)
``srun``      several nodes inside a SLURM job: a nested ``srun`` starts one
              torchrun per node, with the node's CPUs (``--cpus-per-task``); they
              meet at a c10d rendezvous on the job's first node, on a port derived
              from the SLURM job id

Inside Snakemake's SLURM job step the ``SLURM_*`` variables describe the one-node
step, not the job: the job's nodes come from ``scontrol show job`` and the nested
srun runs in the environment the job step gives its own srun (every ``SLURM_*``,
``SRUN_*`` and ``SBATCH_*`` variable removed but the job's identity); see
docs/slurm-internals.md.  Each rank then takes its share of its node's CPUs
(:mod:`admin.rank_entry`).

``--device cpu`` adds fairseq's CPU data-parallel flags (gloo, legacy_ddp), so
the multi-process code path runs, and is tested, without GPUs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from admin.common.errors import AdminError

MODES = ("auto", "single", "torchrun", "srun")
DEVICES = ("cuda", "cpu")
# fairseq options that need a GPU; a rehearsal on a node without one drops them.
GPU_ONLY_OPTIONS = ("fp16", "bf16", "memory_efficient_fp16", "memory_efficient_bf16", "amp")
# Rendezvous ports: 10000-29999, below Linux's ephemeral range (32768+), so a
# derived port is not already taken by some outgoing connection.
PORT_BASE, PORT_SPAN = 10000, 20000
# What Snakemake's SLURM job step keeps of the job's environment for its own srun
# (snakemake_executor_plugin_slurm_jobstep); a nested srun needs the same.
JOB_IDENTITY = ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_CLUSTER_NAME", "SLURM_SUBMIT_DIR",
                "SLURM_SUBMIT_HOST")  # fmt: skip
# The CPUs of one node of the job, for the ranks' shares (admin.rank_entry).
CPUS_ENV = "ADMIN_CPUS_PER_NODE"


@dataclass(frozen=True)
class Launch:
    mode: str = "auto"
    nproc_per_node: int = 1
    nnodes: int = 1
    device: str = "cuda"
    cpus_per_node: int | None = None  # the job's CPUs on each node (SLURM --cpus-per-task)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise AdminError(f"launcher {self.mode!r} is not one of {', '.join(MODES)}")
        if self.device not in DEVICES:  # "auto" is resolved before (resolve_device)
            raise AdminError(f"device {self.device!r} is not one of {', '.join(DEVICES)}")
        if self.cpus_per_node is not None and self.cpus_per_node < 1:
            raise AdminError(f"--cpus-per-node must be >= 1, got {self.cpus_per_node}")
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise AdminError(
                f"--nproc-per-node ({self.nproc_per_node}) and --nnodes ({self.nnodes}) "
                "must be >= 1"
            )
        resolved = self.resolved_mode
        if resolved == "single" and self.world_size > 1:
            raise AdminError(f"launcher 'single' runs one process, not {self.world_size}")
        if resolved == "torchrun" and self.nnodes > 1:
            raise AdminError("launcher 'torchrun' runs on one node; use 'srun' for --nnodes > 1")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        if self.nnodes > 1:
            return "srun"
        return "torchrun" if self.nproc_per_node > 1 else "single"


def resolve_device(device: str) -> tuple[str, str | None]:
    """(device, note) for ``device`` cuda, cpu or auto.

    ``auto`` (rehearsals) uses the GPU when torch sees one, else the CPU, and the note
    says so (the caller then drops :data:`GPU_ONLY_OPTIONS`).  ``cuda`` without a visible
    GPU is an error naming what the job was given, not a crash deep inside fairseq."""
    if device == "cpu":
        return device, None
    import torch

    if torch.cuda.is_available():
        return "cuda", None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    if device == "cuda":
        raise AdminError(
            f"this job asked for GPUs but torch {torch.__version__} sees none "
            f"(CUDA_VISIBLE_DEVICES={visible}, torch built for CUDA {torch.version.cuda}); "
            "check the job's GPU request and the installed torch build"
        )
    return "cpu", (
        f"no GPU visible to torch (CUDA_VISIBLE_DEVICES={visible}): running on the CPU, "
        f"without the GPU-only options ({', '.join(GPU_ONLY_OPTIONS)})"
    )


def without_gpu_options(options: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in options.items() if k not in GPU_ONLY_OPTIONS}


def device_flags(launch: Launch) -> list[str]:
    """fairseq flags that depend on the device and the world size, not on the rank."""
    flags: list[str] = []
    if launch.device == "cpu":
        flags.append("--cpu")
        if launch.world_size > 1:
            # The stock DDP wrapper rejects CPU modules; gloo is the CPU backend.
            flags += ["--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"]
    if launch.world_size > 1:
        # Resuming, fairseq otherwise loads the checkpoint on rank 0 and broadcasts it as a
        # pickle that the other ranks torch.load with weights_only=True, which refuses the
        # omegaconf config inside: every rank but 0 fails.  Each rank reads it instead,
        # through the plugin's allow-list (the checkpoints sit on a shared file system).
        flags.append("--load-checkpoint-on-all-dp-ranks")
    return flags


def port_for_job(job_id: str | int) -> int:
    """The rendezvous port of a SLURM job: distinct for any two jobs fewer than 20000 ids apart."""
    try:
        number = int(str(job_id).split("_")[0])
    except ValueError:
        raise AdminError(f"SLURM job id {job_id!r} is not a number") from None
    return PORT_BASE + number % PORT_SPAN


def scontrol(*args: str) -> str:
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        raise AdminError("multi-node launch needs SLURM's scontrol on PATH")
    out = subprocess.run([scontrol, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise AdminError(f"scontrol {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def job_hosts(job_id: str) -> list[str]:
    """The hosts of a SLURM job (``node[01-02]`` -> ``node01``, ``node02``), asked from
    ``scontrol show job``: inside the job step the variables name the step's one node."""
    m = re.search(r"(?:^|\s)NodeList=(\S+)", scontrol("show", "job", "-o", str(job_id)))
    if not m or m[1] in ("(null)", ""):
        raise AdminError(f"SLURM job {job_id} has no nodes yet (scontrol show job)")
    hosts = scontrol("show", "hostnames", m[1]).split()
    if not hosts:
        raise AdminError(f"scontrol could not expand node list {m[1]!r}")
    return hosts


def job_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` as Snakemake's job step gives it to its own srun: the step's SLURM, SRUN
    and SBATCH variables removed, the job's identity kept.  A nested srun started with
    the step's variables asks for the step's one node (docs/slurm-internals.md)."""

    def kept(name: str) -> bool:
        if not name.startswith(("SLURM_", "SRUN_", "SBATCH_")):
            return True
        return name in JOB_IDENTITY or name.startswith("SLURM_ARRAY_")

    return {k: v for k, v in env.items() if kept(k)}


@dataclass(frozen=True)
class Command:
    """The argv that starts every rank of the run (no shell), and its environment."""

    argv: list[str]
    env: dict[str, str] | None = field(default=None)  # None: this process's


def command(
    launch: Launch, fairseq_argv: list[str], env: Mapping[str, str] | None = None
) -> Command:
    env = dict(os.environ if env is None else env)
    if launch.cpus_per_node is not None:
        env[CPUS_ENV] = str(launch.cpus_per_node)
    entry = ["-m", "admin.rank_entry", *fairseq_argv]
    mode = launch.resolved_mode
    if mode == "single":
        return Command([sys.executable, *entry], env)
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    if mode == "torchrun":
        return Command([
            *torchrun, "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(launch.nproc_per_node), *entry,
        ], env)  # fmt: skip
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        raise AdminError("launcher 'srun' runs inside a SLURM job (SLURM_JOB_ID is unset)")
    hosts = job_hosts(job_id)
    if len(hosts) < launch.nnodes:
        raise AdminError(f"--nnodes is {launch.nnodes} but SLURM job {job_id} has "
                         f"{len(hosts)} node(s)")  # fmt: skip
    endpoint = f"{hosts[0]}:{port_for_job(job_id)}"
    cpus = [] if launch.cpus_per_node is None else [f"--cpus-per-task={launch.cpus_per_node}"]
    return Command([
        # --overlap: the step running this command already holds the first node's CPUs
        # and GPUs; without it the nested step waits for them forever.  Each task gets
        # all of the job's GPUs on its node.
        "srun", "--overlap", "--nodes", str(launch.nnodes), "--ntasks", str(launch.nnodes),
        "--ntasks-per-node", "1", *cpus, "--kill-on-bad-exit=1",
        *torchrun, "--nnodes", str(launch.nnodes),
        "--nproc_per_node", str(launch.nproc_per_node),
        "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", f"admin-{job_id}",
        *entry,
    ], job_environment(env))  # fmt: skip
