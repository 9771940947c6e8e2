"""scripts/gpu-check.sh and benchmarks.gpu_check, as far as they run without a GPU.

The bundle's pins against the project's constraints and its requirement closure; the
GPU overlay's plan (the rules on CUDA with the presets' fp16 settings); the script's
loud failures (no bundle, no CUDA device, a spent budget); fp16 loss scaling read from
a real fairseq fp16 run (on the CPU, which fairseq allows with unflattened gradients);
and the script's whole CPU smoke sequence in the development venv, whose runs the GPU
checks then reject (no CUDA device, no fp16).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benchmarks import gpu_check
from tests.conftest import REPO, VENV_BIN
from tests.steps_support import ok, run_step, train_args
from tests.workflow_support import parse_dry_run, shell_option, snakemake

SCRIPT = REPO / "scripts" / "gpu-check.sh"
LIST = REPO / "envs" / "gpu-bundle.txt"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)$")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = PIN.match(line.split("#", 1)[0].strip())
        if m:
            pins[canonicalize_name(m[1])] = m[2]
    return pins


def _not_carried() -> set[str]:
    for line in LIST.read_text(encoding="utf-8").splitlines():
        if line.startswith("# not carried:"):
            return {canonicalize_name(n) for n in line.split(":", 1)[1].split()}
    raise AssertionError(f"{LIST} has no '# not carried:' line")


def _script(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, env=full, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


# --------------------------------------------------------------------------- the bundle


def test_bundle_pins_are_the_projects_pins():
    bundle = _pins(LIST)
    project: dict[str, str] = {}
    for name in ("requirements.txt", "constraints.txt", "requirements-fairseq.txt"):
        project |= _pins(REPO / "envs" / name)
    bundle.pop("pip")  # the installer of the rest; the project pins no pip
    differ = {n: (v, project.get(n)) for n, v in bundle.items() if project.get(n) != v}
    assert not differ, f"envs/gpu-bundle.txt differs from the project's pins: {differ}"
    for name in ("fairseq-fixed", "hydra-core", "omegaconf", "bitarray", "snakemake"):
        assert name in bundle


def test_bundle_holds_the_requirement_closure_of_what_it_carries():
    """Every requirement (no extras) of every carried package, transitively, is carried
    or named as left to the machine (and explained in the file's header)."""
    bundle = set(_pins(LIST))
    left = _not_carried()
    assert {"torch", "scikit-learn", "pulp"} <= left
    missing: dict[str, str] = {}
    for name in sorted(bundle - {"pip"}):
        dist = metadata.distribution(name)  # the development venv holds the same versions
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate({"extra": "", "python_version": "3.12"}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in bundle and dep not in left:
                missing[dep] = name
    assert not missing, f"required but neither carried nor left to the machine: {missing}"


def test_the_check_needs_the_bundle(tmp_path):
    proc = _script("--work", str(tmp_path / "w"), env={"GPU_CHECK_BUNDLE": str(tmp_path / "no")})
    assert proc.returncode == 1
    assert f"no bundle at {tmp_path / 'no'}: run 'bash scripts/gpu-check.sh --prepare'" in (
        proc.stderr
    )


# --------------------------------------------------------------------------- the plan


def test_gpu_overlay_runs_profile_train_and_evaluate_on_cuda_with_the_presets_fp16(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(json.dumps(gpu_check.overlay("gpu")))
    presets = [yaml.safe_load((REPO / "config" / f"{p}.yaml").read_text())
               for p in gpu_check.PRESETS]  # fmt: skip
    fp16 = next(iter(presets[0]["experiments"].values()))["hparams"]
    targets = [str(f / "scores.json") for f in gpu_check.run_folders("gpu")]
    proc = snakemake(
        *targets, "-n", "-p", "-F", "--nolock", "--cores", "16",
        "--configfile", str(REPO / "config" / "config.yaml"), str(overlay), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = parse_dry_run(proc.stdout + proc.stderr)
    by_rule: dict[str, list] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    assert len(by_rule["train"]) == 4 and len(by_rule["profile"]) == 2
    assert len(by_rule["evaluate"]) == 4
    for job in by_rule["profile"] + by_rule["train"] + by_rule["evaluate"]:
        assert shell_option(job, "--device") == "cuda", job["shell"]
    for job in by_rule["train"]:
        assert job["resources"]["gpus_per_node"] == 1
    for job in by_rule["recipe"]:
        hparams = json.loads(shell_option(job, "--spec"))["identity"]["hparams"]
        for key in gpu_check.FP16_KEYS:
            assert hparams[key] == fp16[key], (key, hparams)
    assert {k: fp16[k] for k in gpu_check.FP16_KEYS} == {
        "fp16": True, "fp16_scale_window": 256, "threshold_loss_scale": 0.03125,
    }  # fmt: skip


# --------------------------------------------------------------------------- loud failures


def test_a_spent_budget_stops_the_check_with_a_message(tmp_path):
    work = tmp_path / "w"
    proc = _script("--cpu-smoke", "--no-setup", "--python", str(VENV_BIN / "python"),
                   "--work", str(work), "--budget", "2")  # fmt: skip
    assert proc.returncode == 1
    assert "phase versions did not succeed" in proc.stderr
    phases = (work / "phases.tsv").read_text()
    assert "not run: the 2 s budget was spent" in phases
    report = (work / "results.md").read_text()
    assert "1 check(s) failed" in report and "phase versions not run" in report


def test_gpu_mode_without_a_cuda_device_fails_at_once(tmp_path):
    work = tmp_path / "w"
    proc = _script("--no-setup", "--python", str(VENV_BIN / "python"), "--work", str(work),
                   "--out", str(tmp_path / "r.md"))  # fmt: skip
    assert proc.returncode == 1
    assert "torch sees no CUDA device: this check needs one GPU" in proc.stderr
    assert "phase versions did not succeed" in proc.stderr
    assert "workflow" not in (work / "phases.tsv").read_text()  # nothing ran after it
    assert "phase versions failed (exit 1)" in (tmp_path / "r.md").read_text()


# --------------------------------------------------------------------------- fp16


@pytest.mark.slow
def test_fp16_loss_scale_is_read_from_a_real_fp16_run(tiny_databin, tmp_path):
    """fairseq trains in fp16 on the CPU when its gradients are not flattened (slowly, and
    it cannot survive an overflow there: its handler calls CUDA): a small initial scale
    keeps 4 updates clear of overflows, and the report reads the dynamic loss scale."""
    run = tmp_path / "results" / "tiny" / "postln" / "2-2" / "seed1"
    args = train_args(
        tiny_databin, run, "postln", fp16=True, fp16_no_flatten_grads=True, fp16_init_scale=4,
        fp16_scale_window=2, threshold_loss_scale=0.03125, max_epoch=None, max_update=4,
        log_interval=1,
    )  # fmt: skip
    ok(run_step("train", *args))
    figures = gpu_check.read_run(tmp_path, Path("results/tiny/postln/2-2/seed1"), "gpu")
    assert figures.status == "completed" and figures.updates == 4
    # the scale doubles after every 2 updates without an overflow; the scale logged at
    # update u is the one after its step
    assert figures.overflows == 0
    assert figures.loss_scales == [4 * 2 ** (u // 2) for u in range(1, 5)]
    assert figures.ms_per_update > 0 and figures.tokens_per_s > 0
    problems = "\n".join(figures.problems)
    assert "fp16 was not in effect" not in problems and "below the threshold" not in problems
    assert "trained on the CPU" in problems  # the GPU check's device check
    assert "scores.json is missing" in problems  # not evaluated here
