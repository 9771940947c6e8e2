"""The project's workflow on a real SLURM cluster, through ``--profile slurm``.

* The shrunk demo runs end to end; every job except the local ones went through
  sbatch (SLURM job ids in the plugin's log, COMPLETED in squeue) and the table
  is produced.
* A training job is cancelled with ``scancel`` mid-run; running the workflow again
  resumes it from ``checkpoint_last.pt`` (the update count continues).
* Training in the data-parallel CPU mode with 2 ranks inside one SLURM job: world
  size 2, identical omegas on both ranks, an effective batch twice the
  single-process one, and one set of checkpoints, written by rank 0 only.

Needs a SLURM cluster (``bash scripts/slurm-local-cluster.sh start``); skips
without one, fails instead with ADMIN_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.slurm_support import (
    PROFILE_DIR,
    REPO,
    cancel_run_jobs,
    default_partition,
    require_slurm,
    squeue_fields,
    submissions,
    workflow_rules,
    write_local_overlay,
)

pytestmark = pytest.mark.slow

PROBE = REPO / "tests" / "rank_probe"
LOADED_RE = re.compile(
    r"[Ll]oaded checkpoint \S*checkpoint_last\.pt \(epoch (\d+) @ (\d+) updates\)"
)

# The demo, shrunk to fit CI on two shared cores: a small corpus, two variants, one
# shallow depth, one seed, a tiny model and a few epochs.
SHRINK: dict[str, Any] = {
    "experiments": {
        "demo": {
            "data": {
                "corpus": {"seed": 1, "train": 1200, "valid": 100, "test": 100},
                "bpe_merges": 300,
            },
            "matrix": {"variants": ["postln", "admin"], "depths": ["2-2"], "seeds": [1]},
            "hparams": {
                "encoder_embed_dim": 32,
                "decoder_embed_dim": 32,
                "encoder_ffn_embed_dim": 64,
                "decoder_ffn_embed_dim": 64,
                "encoder_attention_heads": 2,
                "decoder_attention_heads": 2,
                "max_tokens": 2000,
                "max_epoch": 3,
                "warmup_updates": 6,
                "log_interval": 1,
            },
            "average": {"last": 2, "upper_bound": None},
        }
    }
}


def _write_config(path: Path, overrides: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(overrides, sort_keys=False), encoding="utf-8")
    return path


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _snakemake(
    workdir: Path, overlay: Path, configfile: Path, targets: list[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    from tests.slurm_support import run_snakemake

    return run_snakemake(
        [
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--profile",
            str(PROFILE_DIR),
            "--profile",
            str(overlay),
            "--configfile",
            str(REPO / "config" / "config.yaml"),
            str(configfile),
            *targets,
        ],  # fmt: skip
        cwd=REPO,
        timeout=timeout,
        env={"PYTHONPATH": str(REPO)},
    )


def _completed_submissions(log: str) -> list[dict[str, str]]:
    subs = submissions(log)
    for sub in subs:
        state = squeue_fields(sub["slurm"], "%T")
        assert state == "COMPLETED", (sub, state)
    return subs


def _rule_of(sub: dict[str, str]) -> str:
    m = re.search(r"/rule_([A-Za-z0-9_]+)/", sub["log"])
    return m.group(1) if m else "?"


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    require_slurm()
    return write_local_overlay(tmp_path / "overlay", default_partition())


def test_demo_through_slurm(tmp_path: Path, overlay: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    configfile = _write_config(tmp_path / "shrink.yaml", SHRINK)
    t0 = time.monotonic()
    proc = _snakemake(workdir, overlay, configfile, [], timeout=1500)
    log = proc.stdout + proc.stderr
    try:
        assert proc.returncode == 0, log[-8000:]
        table = workdir / "results" / "demo" / "table.md"
        assert table.is_file(), log[-4000:]
        cells = json.loads((workdir / "results" / "demo" / "table.json").read_text())
        assert cells, cells

        subs = _completed_submissions(log)
        submitted_rules = {_rule_of(s) for s in subs}
        _, local = workflow_rules()
        # Every step ran as a SLURM job: the demo's data, training and evaluation.
        for rule in ("demo_corpus", "tokenize", "bpe", "binarize", "profile", "train", "evaluate"):
            assert rule in submitted_rules, (rule, submitted_rules)
        assert not submitted_rules & local, submitted_rules & local
        assert len({s["slurm"] for s in subs}) == len(subs)
        print(f"demo through SLURM: {len(subs)} jobs in {time.monotonic() - t0:.0f} s")
    finally:
        if proc.returncode != 0:
            cancel_run_jobs(log)


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"snakemake ended before {what}:\n{out[-6000:]}")
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_training_resumes_after_scancel(tmp_path: Path, overlay: Path) -> None:
    from tests.slurm_support import SNAKEMAKE, run_snakemake

    workdir = tmp_path / "work"
    workdir.mkdir()
    shrink = _merge(
        SHRINK,
        {"experiments": {"demo": {"matrix": {"variants": ["preln"]}, "hparams": {"max_epoch": 6}}}},
    )
    configfile = _write_config(tmp_path / "shrink.yaml", shrink)
    # No retries: the rerun is ours, as after a kill nobody retried.
    no_retry = write_local_overlay(tmp_path / "no-retry", default_partition(), retries=0)
    run_dir = workdir / "results" / "demo" / "preln" / "2-2" / "seed1"
    target = str(run_dir.relative_to(workdir) / "status.json")
    args = [
        SNAKEMAKE,
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--profile", str(PROFILE_DIR), "--profile", str(no_retry),
        "--configfile", str(REPO / "config" / "config.yaml"), str(configfile), target,
    ]  # fmt: skip
    first = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**_clean_env(), "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        last = run_dir / "checkpoints" / "checkpoint_last.pt"
        _wait_for(last.exists, 900, "the first checkpoint", first)
        # The training job: the newest submission whose SLURM log is under rule_train.
        log_dir = workdir / ".snakemake" / "slurm_logs" / "rule_train"
        train_ids = sorted(p.stem for p in log_dir.rglob("*.log"))
        assert train_ids, list(log_dir.rglob("*"))
        subprocess.run(["scancel", train_ids[-1]], check=True, timeout=30)
        out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode != 0, out[-4000:]
    assert last.exists(), "the checkpoint did not survive the cancelled job"
    assert not (run_dir / "status.json").exists()

    second = run_snakemake(args[1:], cwd=REPO, timeout=1200, env={"PYTHONPATH": str(REPO)})
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-8000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed", status
    train_log = "\n".join(
        p.read_text(errors="replace")
        for p in [run_dir / "train.log", *sorted((workdir / "logs").rglob("train*.log"))]
        if p.is_file()
    )
    loaded = LOADED_RE.findall(train_log)
    assert loaded, "the rerun did not load checkpoint_last.pt:\n" + train_log[-4000:]
    epoch, updates = (int(x) for x in loaded[-1])
    assert epoch >= 1 and updates > 0, loaded
    assert status["num_updates"] > updates, (status, loaded)


def _clean_env() -> dict[str, str]:
    import os

    from tests.slurm_support import VENV_BIN

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_cpu_data_parallel_two_ranks_in_a_slurm_job(tmp_path: Path, overlay: Path) -> None:
    """Single-process and 2-rank CPU training of the same run, each as a SLURM job."""
    results: dict[int, dict[str, Any]] = {}
    for procs in (1, 2):
        workdir = tmp_path / f"work{procs}"
        workdir.mkdir()
        probe_dir = tmp_path / f"probe{procs}"
        probe_dir.mkdir()
        shrink = _merge(
            SHRINK,
            {
                "experiments": {
                    "demo": {
                        "matrix": {"variants": ["admin"]},
                        "hparams": {"max_epoch": 1},
                        "resources": {"train": {"cpus": 2, "cpu_procs": procs}},
                    }
                }
            },
        )
        configfile = _write_config(tmp_path / f"shrink{procs}.yaml", shrink)
        run_dir = workdir / "results" / "demo" / "admin" / "2-2" / "seed1"
        from tests.slurm_support import run_snakemake

        proc = run_snakemake(
            [
                "--snakefile",
                str(REPO / "Snakefile"),
                "--directory",
                str(workdir),
                "--profile",
                str(PROFILE_DIR),
                "--profile",
                str(overlay),
                "--configfile",
                str(REPO / "config" / "config.yaml"),
                str(configfile),
                str(run_dir.relative_to(workdir) / "status.json"),
            ],  # fmt: skip
            cwd=REPO,
            timeout=1200,
            env={
                "PYTHONPATH": f"{PROBE}:{REPO}",
                "ADMIN_RANK_PROBE_DIR": str(probe_dir),
            },
        )
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            cancel_run_jobs(log)
        assert proc.returncode == 0, log[-8000:]
        subs = _completed_submissions(log)
        assert "train" in {_rule_of(s) for s in subs}
        results[procs] = {
            "status": json.loads((run_dir / "status.json").read_text()),
            "train_log": (run_dir / "train.log").read_text(errors="replace"),
            "probe": probe_dir,
            "run_dir": run_dir,
        }

    two = results[2]
    # world size 2 in the log
    assert re.search(r"world.size\D{0,5}2\b", two["train_log"], re.I), two["train_log"][-3000:]
    assert two["status"].get("world_size", 2) == 2, two["status"]
    # identical omegas on both ranks, read from the one profile
    omegas = [json.loads((two["probe"] / f"omegas.rank{r}.json").read_text()) for r in (0, 1)]
    assert omegas[0] and omegas[0] == omegas[1]
    # effective batch: twice the single-process one, hence half the updates per epoch
    one_updates = results[1]["status"]["num_updates"]
    two_updates = two["status"]["num_updates"]
    assert abs(2 * two_updates - one_updates) <= 2, (one_updates, two_updates)
    # one set of checkpoints, written by rank 0 only
    writes = {
        r: (two["probe"] / f"writes.rank{r}.txt").read_text().splitlines()
        for r in (0, 1)
        if (two["probe"] / f"writes.rank{r}.txt").exists()
    }
    ckpt_dir = two["run_dir"] / "checkpoints"
    assert any(Path(w).name.startswith("checkpoint") for w in writes.get(0, [])), writes
    assert not any(str(ckpt_dir) in w for w in writes.get(1, [])), writes.get(1)
    assert (ckpt_dir / "checkpoint_last.pt").is_file()
