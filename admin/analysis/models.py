"""Models at initialisation for the paper's analyses.

Builds ``admin_transformer`` models through fairseq's own option parser and
task, exactly as ``fairseq-train`` would, for a variant and a depth, on a
real data-bin.  For Admin, the profile is computed in-process on a real batch
(the same profiling forward pass as the profiling job) before the model is
built from it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from fairseq import options, tasks

import admin.fairseq_plugin  # noqa: F401  (registers admin_transformer)
from admin.fairseq_plugin.model import ProfilingFinished
from admin.variants import fairseq_flags, needs_profile


def model_args(dim: int, layers: int, heads: int = 4) -> list[str]:
    """A small, equally deep encoder-decoder: width ``dim``, FFN ``2*dim``."""
    return [
        "--encoder-layers", str(layers), "--decoder-layers", str(layers),
        "--encoder-embed-dim", str(dim), "--decoder-embed-dim", str(dim),
        "--encoder-ffn-embed-dim", str(2 * dim), "--decoder-ffn-embed-dim", str(2 * dim),
        "--encoder-attention-heads", str(heads), "--decoder-attention-heads", str(heads),
        "--share-all-embeddings", "--dropout", "0.1",
        "--attention-dropout", "0.0", "--activation-dropout", "0.0",
    ]  # fmt: skip


def _parse(data_bin: Path, extra: list[str]) -> Any:
    parser = options.get_training_parser()
    return options.parse_args_and_arch(
        parser,
        [
            str(data_bin), "--arch", "admin_transformer", "--cpu",
            "--optimizer", "radam", "--lr", "0.0005", "--max-tokens", "2000",
            "--criterion", "label_smoothed_cross_entropy", *extra,
        ],
    )  # fmt: skip


class Builder:
    """Builds models of one data-bin; keeps the task and a fixed batch."""

    def __init__(self, data_bin: Path, split: str = "valid", max_tokens: int = 2000):
        self.data_bin = Path(data_bin)
        args = _parse(self.data_bin, model_args(32, 1))
        self.task = tasks.setup_task(args)
        self.task.load_dataset(split)
        itr = self.task.get_batch_iterator(
            dataset=self.task.dataset(split), max_tokens=max_tokens, seed=1
        ).next_epoch_itr(shuffle=False)
        self.batch = next(iter(itr))

    def build(
        self, variant: str, layers: int, dim: int, seed: int, profile_dir: Path | None = None
    ) -> torch.nn.Module:
        """A ``variant`` model at initialisation, in eval mode.

        Admin is profiled first, exactly as the profiling job does (the first
        training batch, training mode, the same seed), then built from that profile.
        """
        arch = model_args(dim, layers)
        with tempfile.TemporaryDirectory(dir=profile_dir) as tmp:
            profile = Path(tmp) / "profile.json"
            if needs_profile(variant):
                torch.manual_seed(seed)
                try:  # the plugin profiles the first training batch while building
                    self._build(arch + fairseq_flags(variant, profile, profiling=True))
                except ProfilingFinished:
                    pass
            torch.manual_seed(seed)
            model = self._build(arch + fairseq_flags(variant, profile))
        model.eval()
        return model

    def _build(self, extra: list[str]) -> torch.nn.Module:
        return self.task.build_model(_parse(self.data_bin, extra))


def load_trained(checkpoint: Path, task: Any) -> torch.nn.Module:
    """A trained model from a fairseq checkpoint (its own saved config), in eval mode."""
    from fairseq import checkpoint_utils

    models, _ = checkpoint_utils.load_model_ensemble([str(checkpoint)], task=task)
    model = models[0]
    model.eval()
    return model
