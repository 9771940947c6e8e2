"""How ``admin.train`` starts fairseq: one process, one per device, or one launcher per node.

Every mode runs the same per-rank entry point, :mod:`admin.rank_entry`, which
hands fairseq its rank explicitly (fairseq's own torchrun detection divides by
the CUDA device count, which breaks on CPU and with one launcher per node):

``single``    ``python -m admin.rank_entry ARGV`` (world size 1)
``torchrun``  one node: ``torchrun --standalone --nproc_per_node N`` (a free port
              is picked by torchrun, so concurrent jobs on a node never collide)
``srun``      several nodes inside a SLURM job: ``srun`` starts one torchrun per
              node; they meet at a c10d rendezvous on the job's first node, on a
              port derived from the SLURM job id

``--device cpu`` adds fairseq's CPU data-parallel flags (gloo, legacy_ddp), so
the multi-process code path runs, and is tested, without GPUs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from admin.errors import AdminError

MODES = ("auto", "single", "torchrun", "srun")
DEVICES = ("cuda", "cpu")
# Rendezvous ports: 10000-29999, below Linux's ephemeral range (32768+), so a
# derived port is not already taken by some outgoing connection.
PORT_BASE, PORT_SPAN = 10000, 20000


@dataclass(frozen=True)
class Launch:
    mode: str = "auto"
    nproc_per_node: int = 1
    nnodes: int = 1
    device: str = "cuda"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise AdminError(f"launcher {self.mode!r} is not one of {', '.join(MODES)}")
        if self.device not in DEVICES:
            raise AdminError(f"device {self.device!r} is not one of {', '.join(DEVICES)}")
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


def device_flags(launch: Launch) -> list[str]:
    """fairseq flags that depend on the device and the world size, not on the rank."""
    flags: list[str] = []
    if launch.device == "cpu":
        flags.append("--cpu")
        if launch.world_size > 1:
            # The stock DDP wrapper rejects CPU modules; gloo is the CPU backend.
            flags += ["--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"]
    return flags


def port_for_job(job_id: str | int) -> int:
    """The rendezvous port of a SLURM job: distinct for any two jobs fewer than 20000 ids apart."""
    try:
        number = int(str(job_id).split("_")[0])
    except ValueError:
        raise AdminError(f"SLURM job id {job_id!r} is not a number") from None
    return PORT_BASE + number % PORT_SPAN


def job_hosts(nodelist: str) -> list[str]:
    """The hosts of a SLURM node list (``node[01-02]`` -> ``node01``, ``node02``)."""
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        raise AdminError("multi-node launch needs SLURM's scontrol on PATH")
    out = subprocess.run(
        [scontrol, "show", "hostnames", nodelist], capture_output=True, text=True, check=False
    )
    hosts = out.stdout.split()
    if out.returncode != 0 or not hosts:
        raise AdminError(f"scontrol could not expand node list {nodelist!r}: {out.stderr.strip()}")
    return hosts


def command(
    launch: Launch, fairseq_argv: list[str], env: Mapping[str, str] | None = None
) -> list[str]:
    """The argv that starts every rank of the run (no shell involved)."""
    env = os.environ if env is None else env
    entry = ["-m", "admin.rank_entry", *fairseq_argv]
    mode = launch.resolved_mode
    if mode == "single":
        return [sys.executable, *entry]
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    if mode == "torchrun":
        return [
            *torchrun, "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(launch.nproc_per_node), *entry,
        ]  # fmt: skip
    # Inside Snakemake's SLURM jobstep only SLURM_JOB_ID and the job's node list
    # describe the whole job (SLURM_NNODES is the one-node step's), see
    # docs/slurm-internals.md.
    job_id = env.get("SLURM_JOB_ID")
    nodelist = env.get("SLURM_JOB_NODELIST")
    if not job_id or not nodelist:
        raise AdminError(
            "launcher 'srun' runs inside a SLURM job (SLURM_JOB_ID and SLURM_JOB_NODELIST unset)"
        )
    hosts = job_hosts(nodelist)
    if len(hosts) < launch.nnodes:
        raise AdminError(f"--nnodes is {launch.nnodes} but the SLURM job has {len(hosts)} node(s)")
    endpoint = f"{hosts[0]}:{port_for_job(job_id)}"
    return [
        # --overlap: the step running this command already holds the job's CPUs
        # and GPUs; without it the nested step waits for them forever.
        "srun", "--overlap", "--nodes", str(launch.nnodes), "--ntasks", str(launch.nnodes),
        "--ntasks-per-node", "1", "--kill-on-bad-exit=1",
        *torchrun, "--nnodes", str(launch.nnodes),
        "--nproc_per_node", str(launch.nproc_per_node),
        "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", f"admin-{job_id}",
        *entry,
    ]  # fmt: skip
