"""admin.common.gpu_lease on its own: the pool's sources, CUDA_VISIBLE_DEVICES as CUDA
reads it, and the per-device flock locks across real processes (a holder that exits or
is SIGKILLed frees its devices; a step takes all its devices or none; a waiter says who
holds them and can give up)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from admin.common import gpu_lease as gl
from admin.common.errors import AdminError
from tests.conftest import REPO


def test_cuda_visible_devices_is_read_as_cuda_reads_it():
    assert gl.parse_visible("0,1") == ("0", "1")
    assert gl.parse_visible(" 2, 3 ") == ("2", "3")
    uuid = "GPU-8e6c1d41-8a2c-5c4f-9a0b-1f2e3d4c5b6a"
    assert gl.parse_visible(f"{uuid},1") == (uuid, "1")
    assert gl.parse_visible("MIG-GPU-8e6c1d41/1/0") == ("MIG-GPU-8e6c1d41/1/0",)
    # CUDA stops at the first invalid entry: none at all, or the ones before it
    assert gl.parse_visible("") == ()
    assert gl.parse_visible("-1") == ()
    assert gl.parse_visible("0,-1,1") == ("0",)
    assert gl.parse_visible("1,x,2") == ("1",)
    assert gl.parse_visible("0,0,1") == ("0",)


def test_a_pool_the_user_wrote_is_checked():
    assert gl.parse_pool("0,1,2") == ("0", "1", "2")
    with pytest.raises(AdminError, match=r"ADMIN_GPU_POOL='0,gpu1': 'gpu1' is not a device id"):
        gl.parse_pool("0,gpu1")
    with pytest.raises(AdminError, match=r"ADMIN_GPU_POOL='0,1,0' lists 0 more than once"):
        gl.parse_pool("0,1,0")


def test_the_pool_comes_from_the_simulated_set_then_the_users_list_then_the_machine():
    def three() -> int:
        return 3

    env = {"ADMIN_GPU_POOL": "4,5", "CUDA_VISIBLE_DEVICES": "1,2"}
    assert gl.find_pool(env, three) == gl.Pool(("4", "5"), "ADMIN_GPU_POOL")
    assert gl.find_pool({"CUDA_VISIBLE_DEVICES": "1,2"}, three) == gl.Pool(
        ("1", "2"), "CUDA_VISIBLE_DEVICES"
    )
    assert gl.find_pool({"CUDA_VISIBLE_DEVICES": ""}, three).devices == ()
    assert gl.find_pool({}, three) == gl.Pool(("0", "1", "2"), "torch.cuda.device_count()")
    # an empty ADMIN_GPU_POOL is no pool (the way to switch it off)
    assert gl.find_pool({"ADMIN_GPU_POOL": " "}, three).source == "torch.cuda.device_count()"
    # the real machine: torch's own count
    import torch

    assert len(gl.find_pool({}).devices) == torch.cuda.device_count()


def test_what_a_step_takes():
    pool = {"ADMIN_GPU_POOL": "0,1,2"}
    # on the CPU nothing, unless a simulated pool is set
    assert gl.need("cpu", 2, {}) == gl.Need(0, None, "on the CPU")
    assert gl.need("cpu", 2, pool) == gl.Need(2, gl.Pool(("0", "1", "2"), "ADMIN_GPU_POOL"))
    assert gl.need("cuda", 1, {"CUDA_VISIBLE_DEVICES": "3,5"}).pool == gl.Pool(
        ("3", "5"), "CUDA_VISIBLE_DEVICES"
    )
    # inside a SLURM job SLURM's assignment stands, whatever the pool
    slurm = {**pool, "SLURM_JOB_ID": "77", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert gl.need("cuda", 2, slurm) == gl.Need(0, None, "assigned by SLURM job 77", ("0", "1"))
    assert gl.need("cpu", 2, slurm).assigned == ()
    # more than the pool has: an error naming both, before anything is locked
    with pytest.raises(AdminError) as err:
        gl.need("cpu", 4, pool)
    assert str(err.value).startswith(
        "this step needs 4 GPUs but the pool has 3: 0,1,2 (ADMIN_GPU_POOL)"
    )
    with pytest.raises(AdminError, match=r"needs 1 GPU but the pool has 0: none \(torch"):
        gl.need("cuda", 1, {}, device_count=lambda: 0)


def test_not_leased_the_environment_is_left_alone(tmp_path: Path):
    with gl.hold(gl.need("cpu", 1, {}), "test", env={}) as lease:
        assert lease == gl.Lease((), False, "devices none (on the CPU); nothing leased")
        assert lease.environ({"A": "1"}) == {"A": "1"}
    slurm = gl.need("cuda", 2, {"SLURM_JOB_ID": "9", "CUDA_VISIBLE_DEVICES": "2,3"})
    with gl.hold(slurm, "test", env={}) as lease:
        assert lease.devices == ("2", "3") and not lease.leased
        assert lease.note == "devices 2, 3 (assigned by SLURM job 9); nothing leased"
        assert lease.environ({"CUDA_VISIBLE_DEVICES": "2,3"}) == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert not list(tmp_path.iterdir())  # no lock file anywhere


# --------------------------------------------------------------------------- across processes

HOLDER = textwrap.dedent(
    """
    import sys, time
    from admin.common import gpu_lease as gl
    want = gl.need("cpu", int(sys.argv[1]))
    with gl.hold(want, "holder " + sys.argv[1]) as lease:
        print(",".join(lease.devices), flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A simulated pool of three devices and a lock folder of this test's own."""
    return {
        "ADMIN_GPU_POOL": "0,1,2",
        "ADMIN_GPU_LOCK_DIR": str(tmp_path / "locks"),
        "ADMIN_GPU_POLL_SECONDS": "0.05",
    }


def holder(env: dict[str, str], count: int, seconds: float) -> tuple[subprocess.Popen, str]:
    """A real process holding ``count`` devices for ``seconds``, and the ones it holds."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(count), str(seconds)], cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_devices_held_by_another_process_are_not_taken_until_it_dies(env):
    pool = gl.Pool(("0", "1", "2"), "ADMIN_GPU_POOL")
    folder = gl.lock_dir(env)
    proc, held = holder(env, 1, 60)
    try:
        assert held == "0"  # the pool's order
        busy = gl.try_take(folder, pool, 3, "me")
        assert isinstance(busy, str)
        assert busy.startswith(f"2 free, 0 held by pid {proc.pid} on ")
        assert "(holder 1, since " in busy
        # all or nothing: the two free devices were not kept
        taken = gl.try_take(folder, pool, 2, "me")
        assert isinstance(taken, dict) and sorted(taken) == ["1", "2"]
        for fd in taken.values():
            os.close(fd)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # the kernel freed the lock of the killed process
        taken = gl.try_take(folder, pool, 3, "me")
        assert isinstance(taken, dict) and sorted(taken) == ["0", "1", "2"]
        for fd in taken.values():
            os.close(fd)
    finally:
        proc.kill()
        proc.wait()


def test_a_waiting_step_says_who_holds_its_devices_and_takes_them_when_freed(env):
    first, held = holder(env, 3, 1.0)
    said: list[str] = []
    start = time.monotonic()
    with gl.hold(gl.need("cpu", 2, env), "waiter", say=said.append, env=env) as lease:
        waited = time.monotonic() - start
        assert first.wait(timeout=30) == 0
        assert lease.leased and lease.devices == ("0", "1")
        assert lease.environ({})["CUDA_VISIBLE_DEVICES"] == "0,1"
        assert lease.note.startswith("devices 0,1 leased from pool 0,1,2 (ADMIN_GPU_POOL) at ")
    assert held == "0,1,2"
    assert 0.3 < waited < 30
    # one message while the holders stayed the same, and the release
    assert len(said) == 2
    assert re.fullmatch(r"devices 0,1 released at \S+Z", said[1])
    assert said[0].startswith(
        f"waiting for 2 of pool 0,1,2 (ADMIN_GPU_POOL): 0 free, 0 held by pid {first.pid} on "
    )
    assert "; 2 held by pid" in said[0] and "(holder 3, since" in said[0]


def test_a_waiting_step_gives_up_after_the_wait_limit(env):
    proc, _ = holder(env, 3, 60)
    try:
        limited = {**env, "ADMIN_GPU_WAIT_SECONDS": "0.3"}
        start = time.monotonic()
        with pytest.raises(AdminError) as err:
            with gl.hold(gl.need("cpu", 1, env), "waiter", say=lambda _: None, env=limited):
                pass
        assert 0.3 <= time.monotonic() - start < 30
        assert re.match(
            r"gave up after \d+\.\d s \(ADMIN_GPU_WAIT_SECONDS=0\.3\) waiting for 1 of pool "
            rf"0,1,2 \(ADMIN_GPU_POOL\): 0 free, 0 held by pid {proc.pid} ",
            str(err.value),
        )
    finally:
        proc.kill()
        proc.wait()


def test_released_devices_are_free_again_in_the_same_process(env):
    want = gl.need("cpu", 3, env)
    with gl.hold(want, "one", env=env) as lease:
        assert lease.devices == ("0", "1", "2")
    with gl.hold(want, "two", env=env) as lease:
        assert lease.devices == ("0", "1", "2")


def test_bad_settings_are_named(env, tmp_path: Path):
    want = gl.need("cpu", 1, env)
    for name, value in (("ADMIN_GPU_POLL_SECONDS", "often"), ("ADMIN_GPU_POLL_SECONDS", "0"),
                        ("ADMIN_GPU_WAIT_SECONDS", "-1")):  # fmt: skip
        with pytest.raises(AdminError, match=rf"{name}='{value}' is not a number of seconds"):
            with gl.hold(want, "x", env={**env, name: value}):
                pass
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(AdminError, match=r"cannot use .*file for the GPU locks"):
        gl.lock_dir({"ADMIN_GPU_LOCK_DIR": str(not_a_folder)})


def test_the_default_lock_folder_is_the_users_own():
    folder = gl.lock_dir({})
    assert folder == Path(f"/tmp/admin-gpu-leases-{os.getuid()}")
    assert folder.stat().st_uid == os.getuid()
    assert gl.lock_path(folder, "MIG-GPU-1/2/0").name == "gpu-MIG-GPU-1%2F2%2F0.lock"
