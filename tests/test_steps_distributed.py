"""Data-parallel training through admin.train: the CPU mode with 2 ranks (gloo)
runs the same code path as multi-GPU training; plus the launch command lines."""

from __future__ import annotations

import json
import math
import re
import stat
from pathlib import Path

import pytest

from admin import profiling
from admin.errors import AdminError
from admin.launch import Launch, command, device_flags, port_for_job
from admin.rank_entry import rank_flags
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
    single = command(Launch(device="cuda"), argv)
    assert single[1:] == ["-m", "admin.rank_entry", *argv]
    node = command(Launch(nproc_per_node=8), argv)
    assert node[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "8",
        "-m", "admin.rank_entry", *argv,
    ]  # fmt: skip
    assert device_flags(Launch(nproc_per_node=8)) == []  # GPUs: nccl and fairseq's DDP
    assert device_flags(Launch(nproc_per_node=2, device="cpu")) == [
        "--cpu", "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp",
    ]  # fmt: skip
    assert device_flags(Launch(device="cpu")) == ["--cpu"]


def _fake_scontrol(tmp_path: Path, hosts: list[str]) -> str:
    """A stand-in for ``scontrol show hostnames`` (expanding a node list)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text("#!/bin/sh\nprintf '%s\\n' " + " ".join(hosts) + "\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir)


def test_multi_node_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _fake_scontrol(tmp_path, ["gpu07", "gpu08"]), prepend=":")
    env = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_NNODES": "1"}
    cmd = command(Launch(nproc_per_node=8, nnodes=2), ["DATA"], env)
    assert cmd[:8] == [
        "srun", "--overlap", "--nodes", "2", "--ntasks", "2", "--ntasks-per-node", "1",
    ]  # fmt: skip
    joined = " ".join(cmd)
    assert "--nnodes 2 --nproc_per_node 8" in joined
    assert f"--rdzv_backend c10d --rdzv_endpoint gpu07:{port_for_job(4242)}" in joined
    assert "--rdzv_id admin-4242" in joined
    assert cmd[-3:] == ["-m", "admin.rank_entry", "DATA"]
    with pytest.raises(AdminError, match="has 2 node"):
        command(Launch(nproc_per_node=8, nnodes=4), ["DATA"], env)
    with pytest.raises(AdminError, match="inside a SLURM job"):
        command(Launch(nproc_per_node=8, nnodes=2), ["DATA"], {})


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
