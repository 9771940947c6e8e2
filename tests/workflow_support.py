"""Helpers for the workflow tests: run Snakemake from the project's environment and
read the jobs of a dry run (``snakemake -n -p``) as dicts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import REPO, VENV_BIN

SNAKEMAKE = str(VENV_BIN / "snakemake")
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SNAKEFMT = str(VENV_BIN / "snakefmt")


def snakemake_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a Snakemake run on the submit host: this one, without any
    SLURM variable (Snakemake must submit, not believe it already runs inside a
    job), the project's .venv first on PATH, plus ``env``."""
    full_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLURM_", "SBATCH_", "SRUN_"))
    }
    full_env["PATH"] = f"{VENV_BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env or {})
    return full_env


def snakemake_cmd(
    *args: str, env: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of ``snakemake ARGS`` with the project's Snakefile, from
    the project's .venv (see :func:`snakemake_env`)."""
    return [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), *args], snakemake_env(env)


def snakemake(
    *args: str, cwd: Path = REPO, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``snakemake ARGS`` run to its end (see :func:`snakemake_cmd`)."""
    argv, full_env = snakemake_cmd(*args, env=env)
    return subprocess.run(
        argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


_RULE = re.compile(r"^(?:local)?rule (?P<rule>\w+):$")


def _split_items(body: str) -> list[str]:
    return [item for item in body.split(", ") if item]


def parse_dry_run(text: str) -> list[dict[str, Any]]:
    """The jobs printed by ``snakemake -n -p``: rule, input/output lists, wildcards,
    resources (ints where they are ints), threads, priority and the shell command."""
    jobs: list[dict[str, Any]] = []
    job: dict[str, Any] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        match = _RULE.match(line)
        if match:
            job = {"rule": match["rule"], "input": [], "output": [], "wildcards": {},
                   "resources": {}, "threads": 1, "priority": 0, "shell": None}  # fmt: skip
            jobs.append(job)
            continue
        if job is None:
            continue
        key, sep, body = line.partition(": ")
        if not sep and line.endswith(":"):
            key, body = line[:-1], ""
        if key in ("input", "output", "log"):
            job[key] = _split_items(body)
        elif key == "wildcards":
            job["wildcards"] = dict(item.split("=", 1) for item in _split_items(body))
        elif key == "resources":
            for item in re.split(r", (?=\w+=)", body):
                name, _, value = item.partition("=")
                job["resources"][name] = int(value) if re.fullmatch(r"-?\d+", value) else value
        elif key in ("threads", "priority"):
            job[key] = int(body)
        elif line.startswith("Shell command:") and job.get("shell") is None:
            job["shell"] = line.split(":", 1)[1].strip()
    return jobs


def plan(*args: str) -> list[dict[str, Any]]:
    """The jobs Snakemake plans for ``args`` (targets, --config ...), every job forced,
    in an empty folder (whatever the checkout's results/ holds) with the project's config.

    ``--cores 256`` so that threads are not clamped to the dry run's one core."""
    with tempfile.TemporaryDirectory(prefix="admin-plan-") as workdir:
        proc = snakemake(
            "-n", "-p", "-F", "--nolock", "--cores", "256", *args,
            # last: --configfile takes every word up to the next option
            "--configfile", str(REPO / "config" / "config.yaml"), cwd=Path(workdir),
        )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"snakemake -n {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return parse_dry_run(proc.stdout + proc.stderr)


def counts(jobs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(job["rule"] for job in jobs)


def shell_option(job: dict[str, Any], option: str) -> str:
    """The value after ``option`` in a job's shell command."""
    words = shlex.split(job["shell"].split(" > ", 1)[0])
    return words[words.index(option) + 1]


def hparams(job: dict[str, Any]) -> dict[str, Any]:
    return json.loads(shell_option(job, "--hparams"))


def project_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The project's configuration (config/config.yaml and its presets, the schema's
    defaults) as the workflow loads it, with ``overrides`` as --config gives them."""
    from admin.common import config as cfgmod

    return cfgmod.load(
        cfgmod.read_yaml(REPO / "config" / "config.yaml"),
        locate=lambda p: REPO / p,
        schema=SCHEMA,
        overrides=overrides,
    )
