"""Helpers for tests of the fairseq plugin: build models in-process the way
``fairseq-train`` does, fetch real batches, and run the real CLIs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import torch
from fairseq import options, tasks

from admin.common.fairseq_command import PLUGIN_DIR, load_plugin
from admin.common.fairseq_import import FAIRSEQ_MAIN
from tests.conftest import VENV_BIN

USER_DIR = str(PLUGIN_DIR)

# A small model: wide enough for the statistics to be meaningful, fast on CPU.
SMALL_MODEL = [
    "--encoder-layers", "3", "--decoder-layers", "3",
    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64",
    "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
    "--share-all-embeddings",
]  # fmt: skip

TRAINING = [
    "--optimizer", "radam", "--adam-betas", "(0.9, 0.98)",
    "--lr", "0.0005", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "20",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--dropout", "0.1", "--max-tokens", "1500", "--cpu", "--seed", "7",
    "--log-format", "simple", "--log-interval", "1", "--num-workers", "0",
]  # fmt: skip

# registers admin_transformer and radam, as fairseq's --user-dir does
PLUGIN = load_plugin()


def parse_train_args(
    databin: Path, *extra: str, arch: str = "admin_transformer", model: list[str] = SMALL_MODEL
) -> Any:
    parser = options.get_training_parser()
    return options.parse_args_and_arch(
        parser, [str(databin), "--arch", arch, *model, *TRAINING, *extra]
    )


def build(
    databin: Path,
    *extra: str,
    arch: str = "admin_transformer",
    seed: int = 7,
    model: list[str] = SMALL_MODEL,
):
    """(task, model) built exactly as fairseq-train builds them; ``model`` gives the shape."""
    args = parse_train_args(databin, *extra, arch=arch, model=model)
    task = tasks.setup_task(args)
    torch.manual_seed(seed)
    return task, task.build_model(args)


def first_batch(task: Any, split: str = "valid", max_tokens: int = 1500) -> dict:
    task.load_dataset(split)
    itr = task.get_batch_iterator(
        dataset=task.dataset(split), max_tokens=max_tokens, seed=1
    ).next_epoch_itr(shuffle=False)
    return next(iter(itr))


def fairseq_cli_cmd(tool: str, *args: str) -> list[str]:
    """A fairseq command line (``fairseq-train`` etc.) run as the workflow's steps run it:
    its ``fairseq_cli`` main, imported without the metric libraries no step uses
    (admin.common.fairseq_import; 2.5 s less start-up a process)."""
    module = "fairseq_cli." + tool.removeprefix("fairseq-")
    return [str(VENV_BIN / "python"), "-m", FAIRSEQ_MAIN, module, *args]


def fairseq_cli(
    tool: str, *args: str, cwd: Path, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a fairseq command line from the project's environment."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread (tests.steps_support)
    proc = subprocess.run(
        fairseq_cli_cmd(tool, *args), cwd=cwd, env=env, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def train_cmd(databin: Path, save_dir: Path, *extra: str) -> list[str]:
    return [
        str(databin), "--user-dir", USER_DIR, "--arch", "admin_transformer",
        *SMALL_MODEL, *TRAINING, "--save-dir", str(save_dir), *extra,
    ]  # fmt: skip
