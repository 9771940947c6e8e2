"""Helpers for the pipeline step tests: a small recipe, running ``python -m
admin.<step>`` like the rules do, and one trained Admin run shared by the tests
that need a real model (average, evaluate, plots)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from admin.common.launch import CPUS_ENV
from admin.common.run_folder import RunKey
from admin.common.run_folder import write_recipe as write_recipe_file
from admin.recipe import build as build_recipe
from admin.recipe import make_spec, split_hparams
from tests.conftest import REPO

DEPTH = "2-2"
# admin.train --divergence: training not judged (non-finite losses and storms still are)
NOT_JUDGED = json.dumps({"unigram_margin": None, "bigram_margin": None})
# A small model that still has every part of the real one; fast on a shared 2-core machine.
HPARAMS: dict[str, Any] = {
    "arch": "admin_transformer",
    "encoder_embed_dim": 32, "decoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64, "decoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 2, "decoder_attention_heads": 2,
    "share_all_embeddings": True,
    "optimizer": "radam", "adam_betas": "(0.9, 0.98)", "lr": 0.002,
    "lr_scheduler": "inverse_sqrt", "warmup_updates": 6,
    "criterion": "label_smoothed_cross_entropy", "label_smoothing": 0.1, "dropout": 0.1,
    "max_tokens": 4000, "num_workers": 0, "log_interval": 1, "max_epoch": 3,
}  # fmt: skip


def hparams(**overrides: Any) -> str:
    merged = {**HPARAMS, **overrides}
    return json.dumps({k: v for k, v in merged.items() if v is not None})


def step_env(**extra: str) -> dict[str, str]:
    # One thread per process, and one CPU for a train step's ranks (what a workflow job
    # with the default `cpus: 1` passes them): the suite runs two workers on 2 shared
    # cores.  A rank that takes both cores runs two torch threads that spin against the
    # other worker's processes: a run-identity test beside one busy process took 40.2
    # user-s so, 30.0 with one CPU.
    env = {**os.environ, "OMP_NUM_THREADS": "1", CPUS_ENV: "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra.get("PYTHONPATH"), str(REPO)) if p)
    return env


def step_cmd(module: str, *args: Any) -> list[str]:
    return [sys.executable, "-m", f"admin.{module}", *(str(a) for a in args)]


def run_step(
    module: str, *args: Any, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        step_cmd(module, *args), cwd=REPO, env=env or step_env(),
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def write_recipe(
    databin: Path,
    run: Path,
    variant: str,
    seed: int = 1,
    depth: str = DEPTH,
    world: int = 1,
    **hp: Any,
) -> Path:
    """``run/recipe.json`` for HPARAMS with ``hp`` on top, as the workflow's recipe step
    writes it (admin.recipe); the run's key is ``tiny/<variant>/<depth>/seed<seed>``."""
    merged = json.loads(hparams(**hp))
    key = RunKey("tiny", variant, depth, seed)
    path = run / "recipe.json"
    write_recipe_file(path, build_recipe(databin, make_spec(key, merged, world)))
    return path


def stop_and_runtime(**hp: Any) -> list[Any]:
    """``--stop`` and ``--runtime`` of HPARAMS with ``hp`` on top."""
    _, stop, runtime = split_hparams(json.loads(hparams(**hp)))
    return ["--stop", json.dumps(stop), "--runtime", json.dumps(runtime)]


def profile_args(databin: Path, out: Path, seed: int = 1, **hp: Any) -> list[Any]:
    recipe = write_recipe(databin, out.parent, "admin", seed, **hp)
    _, _, runtime = split_hparams(json.loads(hparams(**hp)))
    return [
        "--data-bin", databin, "--recipe", recipe, "--runtime", json.dumps(runtime),
        "--out", out, "--log", out.with_suffix(".log"), "--device", "cpu",
    ]  # fmt: skip


def train_args(
    databin: Path,
    run: Path,
    variant: str,
    *extra: Any,
    seed: int = 1,
    world: int = 1,
    depth: str = DEPTH,
    **hp: Any,
) -> list[Any]:
    """The train step's arguments for HPARAMS with ``hp`` on top (its recipe written)."""
    recipe = write_recipe(databin, run, variant, seed, depth, world=world, **hp)
    # These runs are a few dozen updates: too short to leave the unigram plateau or beat
    # a bigram, so they are not judged on training (non-finite losses still are);
    # tests/test_divergence.py tests those rules.
    judged = [] if "--divergence" in extra else ["--divergence", NOT_JUDGED]
    return [
        "--data-bin", databin, "--run-dir", run, "--recipe", recipe, *stop_and_runtime(**hp),
        "--device", "cpu", *judged, *extra,
    ]  # fmt: skip


def probe_folder(probe: Path, run: Path) -> Path:
    """Where tests/rank_probe records the ranks of the run in folder ``run``."""
    return probe / "_".join(Path(run).resolve().parts[-4:])


_TRAINED: dict[Path, Path] = {}


def trained_admin_run(tiny_databin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``results/tiny/admin/2-2/seed1``: profiled, then trained for 3 epochs (completed).

    Test modules wrap this in a session fixture; the run is made once per session.
    """
    if tiny_databin not in _TRAINED:
        run = tmp_path_factory.mktemp("results") / "tiny" / "admin" / DEPTH / "seed1"
        ok(run_step("profile_run", *profile_args(tiny_databin, run / "profile.json")))
        # every epoch checkpoint kept (the averaging window of 3): tests average them
        args = train_args(tiny_databin, run, "admin", "--profile", run / "profile.json",
                          "--average-last", 3)  # fmt: skip
        ok(run_step("train", *args))
        _TRAINED[tiny_databin] = run
    return _TRAINED[tiny_databin]
