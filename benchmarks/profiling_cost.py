"""Profiling cost: the wall time of Admin's profiling job, the real CLI step the workflow
runs (``python -m admin.profile_run``), against one training step of the same model, with
process start-up shown separately.

The model is the embedded demo's Admin model (``config/config.yaml``, the demo's
hparams at depth 6-6), on a data-bin of real IWSLT'14 sentences.  Per round:

* the profiling job, end to end (start-up, data loading, model build, profiling forward);
* process start-up alone: importing torch, fairseq and the plugin (``load_plugin``);
* in-process, on the job's own first batch: the profiling forward pass, and one
  training step (forward, loss, backward, RAdam step) of the Admin model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.core import REPO, Context, Figure, Result, interleave, ratios, timed
from benchmarks.databin import iwslt_databin

NAME = "profiling_cost"
TRAIN_LINES = 3000
IMPORTS = (
    "import torch, fairseq; from admin.common.fairseq_command import load_plugin; load_plugin()"
)


def demo_hparams(config: Path = REPO / "config" / "config.yaml") -> dict[str, Any]:
    return yaml.safe_load(config.read_text(encoding="utf-8"))["experiments"]["demo"]["hparams"]


def profile_job(ctx: Context, databin: Path, depth: str, hparams: dict, out: Path) -> float:
    """The workflow's profiling job, from the run's recipe (written first, not timed)."""
    from admin import recipe
    from admin.common.run_folder import RunKey, write_recipe

    recipe_file = out.with_suffix(".recipe.json")
    spec = recipe.make_spec(RunKey("iwslt14_bench", "admin", depth, 1), hparams)
    write_recipe(recipe_file, recipe.build(databin, spec))
    _, _, runtime = recipe.split_hparams(hparams)
    cmd = [
        sys.executable, "-m", "admin.profile_run", "--data-bin", str(databin),
        "--recipe", str(recipe_file), "--runtime", json.dumps(runtime),
        "--out", str(out), "--log", str(out.with_suffix(".log")), "--device", "cpu",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=ctx.env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the profiling job failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def startup(ctx: Context) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], cwd=REPO, env=ctx.env(), check=True)
    return time.perf_counter() - start


class InProcess:
    """The job's model and first batch, built here as fairseq-train builds them."""

    def __init__(self, databin: Path, depth: str, hparams: dict, profile: Path) -> None:
        import torch
        from fairseq import options, tasks

        from admin.common.fairseq_command import load_plugin, parse_depth, train_argv
        from admin.common.variants import fairseq_flags

        plugin = load_plugin()
        first_training_batch, RAdam = plugin.model.first_training_batch, plugin.radam.RAdam
        from benchmarks.models import Trainable

        argv = train_argv(
            databin, hparams, parse_depth(depth), 1, fairseq_flags("admin", profile),
            profile.parent / "save",
        )  # fmt: skip
        args = options.parse_args_and_arch(options.get_training_parser(), [*argv, "--cpu"])
        task = tasks.setup_task(args)
        torch.manual_seed(1)
        model = task.build_model(args)
        model.train()
        self.batch = first_training_batch(args, task, model)
        self.model = model
        self.trainable = Trainable(
            model, task.build_criterion(args), RAdam(model.parameters(), lr=5e-4)
        )

    def profile_forward(self) -> float:
        return timed(lambda: self.model.profile(**self.batch["net_input"]))

    def train_step(self) -> float:
        return timed(lambda: self.trainable.step(self.batch))


def run(ctx: Context) -> Result:
    import torch

    torch.set_num_threads(ctx.threads)
    depth = "2-2" if ctx.quick else "6-6"
    rounds = ctx.repeats(3)
    hparams = demo_hparams()
    databin = iwslt_databin(ctx, TRAIN_LINES)
    folder = ctx.workdir / NAME
    profile = folder / "profile.json"
    profile_job(ctx, databin, depth, hparams, profile)  # warm the file cache; gives the profile
    local = InProcess(databin, depth, hparams, profile)
    local.train_step()  # first-call allocations out of the timings
    samples = interleave(
        {
            "job": lambda: profile_job(ctx, databin, depth, hparams, folder / "again.json"),
            "startup": lambda: startup(ctx),
            "forward": local.profile_forward,
            "step": local.train_step,
        },
        rounds,
    )
    figures = [
        Figure(NAME, "profiling job (python -m admin.profile_run), wall", samples["job"], "s"),
        Figure(NAME, f"process start-up ({IMPORTS})", samples["startup"], "s"),
        Figure(NAME, "profiling forward pass, in-process", samples["forward"], "s"),
        Figure(NAME, "one training step, in-process", samples["step"], "s"),
        Figure(NAME, "profiling job / one training step", ratios(samples["job"], samples["step"])),
        Figure(
            NAME, "profiling job minus start-up (per round)",
            [j - s for j, s in zip(samples["job"], samples["startup"], strict=True)], "s",
        ),
    ]  # fmt: skip
    tokens = int(local.batch["ntokens"])
    notes = [
        f"the demo's Admin model at {depth} ({hparams['arch']}, dim "
        f"{hparams['encoder_embed_dim']}, max_tokens {hparams['max_tokens']}) on IWSLT'14 "
        f"sentences (vocabulary {len(local.trainable.criterion.task.source_dictionary)}); the "
        f"first batch has {tokens} target tokens; CPU, {ctx.threads} thread(s); "
        f"{rounds} rounds, the four measurements interleaved"
    ]
    return Result(figures, notes)
