"""Data-parallel training through admin.train: the CPU mode with 2 ranks (gloo)
runs the same code path as multi-GPU training; plus the launch command lines."""

from __future__ import annotations

import json
import math
import re
import stat
from pathlib import Path

import pytest

from admin.common import profiling
from admin.common.errors import AdminError
from admin.common.launch import CPUS_ENV, Launch, command, device_flags, port_for_job
from admin.rank_entry import cpu_share, rank_flags
from tests import steps_support
from tests.conftest import REPO
from tests.steps_support import DEPTH, ok, run_step, step_env, train_args

_EPOCH1 = re.compile(r"\| train \| epoch 001 \|.*\| bsz (\S+) \| num_updates (\d+) \|")


@pytest.fixture(scope="session")
def trained_admin_run(tiny_databin, tmp_path_factory):
    return steps_support.trained_admin_run(tiny_databin, tmp_path_factory)


def _first_epoch(log: str) -> tuple[float, int]:
    """(mean sentences per update, updates) of epoch 1's summary line."""
    m = _EPOCH1.search(log)
    assert m, "no epoch 1 summary in the log"
    return float(m[1]), int(m[2])


@pytest.mark.slow
def test_cpu_two_ranks(trained_admin_run, tiny_databin, tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    run = tmp_path / "admin" / DEPTH / "seed1"
    profile_path = trained_admin_run / "profile.json"
    env = step_env(PYTHONPATH=str(REPO / "tests" / "rank_probe"), ADMIN_RANK_PROBE_DIR=str(probe))
    # a recipe of 2 processes (no batch_gpus): each update takes both ranks' batches
    args = train_args(
        tiny_databin, run, "admin", "--profile", profile_path, "--nproc-per-node", 2,
        world=2, max_epoch=1,
    )  # fmt: skip
    ok(run_step("train", *args, env=env))
    probe = steps_support.probe_folder(probe, run)

    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["world_size"] == 2
    log = (run / "train.log").read_text()
    assert "training on 2 devices" in log
    assert "distributed init (rank 0)" in log and "distributed init (rank 1)" in log
    assert "torch.distributed.run" in log.splitlines()[0]  # launched by torchrun

    # Each update sees both ranks' batches: twice the sentences, half the updates of
    # the single-process run of the same recipe (the shared trained run, epoch 1).
    one_bsz, one_updates = _first_epoch((trained_admin_run / "train.log").read_text())
    two_bsz, two_updates = _first_epoch(log)
    assert two_updates == math.ceil(one_updates / 2)
    assert two_bsz * two_updates == pytest.approx(one_bsz * one_updates)  # same epoch
    assert two_bsz == pytest.approx(2 * one_bsz)

    # Both ranks start from the profile's omegas, identically.
    omegas = [json.loads((probe / f"omegas.rank{r}.json").read_text()) for r in (0, 1)]
    assert omegas[0] == omegas[1]
    profile = profiling.read_profile(profile_path)
    for stack, per_layer in (("encoder", 2), ("decoder", 3)):
        want = profile.stack(stack).omegas
        for layer in range(len(want) // per_layer):
            rows = omegas[0][f"{stack}.layers.{layer}.omega"]
            for i, row in enumerate(rows):
                assert row == pytest.approx([want[layer * per_layer + i]] * len(row))

    # One set of checkpoints, written by rank 0 only.
    save_dir = str(run / "checkpoints")
    writes = [(probe / f"writes.rank{r}.txt").read_text().splitlines() for r in (0, 1)]
    assert any(p.startswith(save_dir) and p.endswith(".pt") for p in writes[0])
    assert not [p for p in writes[1] if p.startswith(save_dir)]
    assert {p.name for p in (run / "checkpoints").glob("*.pt")} == {
        "checkpoint1.pt", "checkpoint_last.pt",  # checkpoint_best.pt is never kept
    }  # fmt: skip

    # Extended by one epoch, both ranks resume from the checkpoint (each reads it: the
    # weights-only unpickler refuses fairseq's broadcast of it) and the count continues.
    args = train_args(
        tiny_databin, run, "admin", "--profile", profile_path, "--nproc-per-node", 2,
        world=2, max_epoch=2,
    )  # fmt: skip
    ok(run_step("train", *args, env=env))
    resumed = json.loads((run / "status.json").read_text())
    assert resumed["status"] == "completed" and resumed["epochs"] == 2
    assert resumed["num_updates"] == 2 * status["num_updates"]
    log = (run / "train.log").read_text()
    assert "Loaded checkpoint" in log and "training on 2 devices" in log


# --- launch command lines ---------------------------------------------------------


def test_rank_flags():
    assert rank_flags({}) == ["--distributed-world-size", "1"]
    flags = rank_flags({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert flags == [
        "--distributed-world-size", "4", "--distributed-rank", "3",
        "--distributed-init-method", "env://", "--device-id", "1", "--distributed-no-spawn",
    ]  # fmt: skip


def test_single_and_one_node_commands():
    argv = ["DATA", "--lr", "1"]
    single = command(Launch(device="cuda"), argv, {})
    assert single.argv[1:] == ["-m", "admin.rank_entry", *argv]
    node = command(Launch(nproc_per_node=8, cpus_per_node=16), argv, {"PATH": "/bin"})
    assert node.argv[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "8",
        "-m", "admin.rank_entry", *argv,
    ]  # fmt: skip
    assert node.env == {"PATH": "/bin", CPUS_ENV: "16"}  # the ranks' CPU budget
    # GPUs: nccl and fairseq's DDP; every rank reads the checkpoint it resumes from
    assert device_flags(Launch(nproc_per_node=8)) == ["--load-checkpoint-on-all-dp-ranks"]
    assert device_flags(Launch(nproc_per_node=2, device="cpu")) == [
        "--cpu", "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp",
        "--load-checkpoint-on-all-dp-ranks",
    ]  # fmt: skip
    assert device_flags(Launch(device="cpu")) == ["--cpu"]


def _fake_scontrol(tmp_path: Path, nodelist: str, hosts: list[str]) -> str:
    """A stand-in for ``scontrol show job`` and ``scontrol show hostnames``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(
        '#!/bin/sh\ncase "$1 $2" in\n'
        f'"show job") echo "JobId=$4 JobName=x NodeList={nodelist} NumNodes={len(hosts)}" ;;\n'
        f"\"show hostnames\") printf '%s\\n' {' '.join(hosts)} ;;\n"
        "*) exit 2 ;;\nesac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir)


def test_multi_node_command(tmp_path, monkeypatch):
    """In the job step, SLURM_JOB_NODELIST and SLURM_NNODES are the one-node step's (as
    observed on the two-node cluster, docs/slurm-internals.md): the launcher asks scontrol
    for the job's nodes and starts the nested srun in the job's environment."""
    monkeypatch.setenv("PATH", _fake_scontrol(tmp_path, "gpu[07-08]", ["gpu07", "gpu08"]),
                       prepend=":")  # fmt: skip
    env = {"SLURM_JOB_ID": "4242", "SLURM_JOBID": "4242", "SLURM_JOB_NODELIST": "gpu07",
           "SLURM_NODELIST": "gpu[07-08]", "SLURM_NNODES": "1", "SLURM_CPU_BIND": "mask_cpu:0x3",
           "SRUN_DEBUG": "3", "SLURM_ARRAY_TASK_ID": "2", "HOME": "/root"}  # fmt: skip
    cmd = command(Launch(nproc_per_node=8, nnodes=2, cpus_per_node=64), ["DATA"], env)
    assert cmd.argv[:10] == [
        "srun", "--overlap", "--nodes", "2", "--ntasks", "2", "--ntasks-per-node", "1",
        "--cpus-per-task=64", "--kill-on-bad-exit=1",
    ]  # fmt: skip
    joined = " ".join(cmd.argv)
    assert "--nnodes 2 --nproc_per_node 8" in joined
    assert f"--rdzv_backend c10d --rdzv_endpoint gpu07:{port_for_job(4242)}" in joined
    assert "--rdzv_id admin-4242" in joined
    assert cmd.argv[-3:] == ["-m", "admin.rank_entry", "DATA"]
    assert cmd.env == {"SLURM_JOB_ID": "4242", "SLURM_JOBID": "4242", "HOME": "/root",
                       "SLURM_ARRAY_TASK_ID": "2", CPUS_ENV: "64"}  # fmt: skip
    with pytest.raises(AdminError, match="SLURM job 4242 has 2 node"):
        command(Launch(nproc_per_node=8, nnodes=4), ["DATA"], env)
    with pytest.raises(AdminError, match="inside a SLURM job"):
        command(Launch(nproc_per_node=8, nnodes=2), ["DATA"], {})


def test_cpu_share():
    assert cpu_share([0, 1, 2, 3], 0, 2) == [0, 1] and cpu_share([3, 1, 0, 2], 1, 2) == [2, 3]
    assert cpu_share([4, 5, 6], 1, 3) == [5]
    assert cpu_share([0, 1], 0, 1) == [0, 1]
    assert [cpu_share([0, 1], r, 4) for r in range(4)] == [[0], [1], [0], [1]]  # shared


def test_rendezvous_ports_differ_between_jobs():
    ports = {port_for_job(job) for job in range(1_000_000, 1_020_000)}
    assert len(ports) == 20_000  # any two jobs fewer than 20000 ids apart never collide
    assert min(ports) >= 10_000 and max(ports) < 32_768  # below the ephemeral range


def test_bad_launch_settings():
    with pytest.raises(AdminError, match="one process"):
        Launch(mode="single", nproc_per_node=2)
    with pytest.raises(AdminError, match="srun"):
        Launch(mode="torchrun", nnodes=2)
    with pytest.raises(AdminError, match=">= 1"):
        Launch(nproc_per_node=0)
