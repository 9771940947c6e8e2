"""Models at initialisation (and trained ones) for the paper's analyses.

Builds ``admin_transformer`` models through fairseq's own option parser and
task, exactly as ``fairseq-train`` would, for a variant, a depth and a
recipe's hyperparameters, on a real data-bin.  For Admin, the profile is either
given (the profile a training run started from) or computed in-process on a
real batch by the same profiling forward pass as the profiling job.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from fairseq import options, tasks

from admin.common.errors import AdminError
from admin.common.fairseq_args import to_argv
from admin.common.fairseq_command import RESERVED_HPARAMS, load_plugin
from admin.common.variants import fairseq_flags, needs_profile

# What the analyses add to a recipe's options: a CPU run and the training
# options fairseq's parser insists on (they do not change the model).
_BASE = {
    "arch": "admin_transformer",
    "optimizer": "radam",
    "lr": 0.0005,
    "max_tokens": 2000,
    "criterion": "label_smoothed_cross_entropy",
}

# registers admin_transformer, as fairseq's --user-dir does
PLUGIN = load_plugin()


def small_hparams(dim: int, ffn_dim: int, heads: int) -> dict[str, Any]:
    """The options of a small encoder-decoder (``dim`` wide, shared embeddings)."""
    return {
        "encoder_embed_dim": dim, "decoder_embed_dim": dim,
        "encoder_ffn_embed_dim": ffn_dim, "decoder_ffn_embed_dim": ffn_dim,
        "encoder_attention_heads": heads, "decoder_attention_heads": heads,
        "share_all_embeddings": True, "dropout": 0.1,
        "attention_dropout": 0.0, "activation_dropout": 0.0,
    }  # fmt: skip


def _parse(data_bin: Path, hparams: Mapping[str, Any], extra: list[str]) -> Any:
    reserved = sorted(RESERVED_HPARAMS & hparams.keys())
    if reserved:
        raise AdminError(f"hparams set {', '.join(reserved)}, which the analysis sets itself")
    parser = options.get_training_parser()
    argv = [str(data_bin), "--cpu", *to_argv({**_BASE, **hparams}), *extra]
    return options.parse_args_and_arch(parser, argv)


class Builder:
    """Builds models of one data-bin; keeps the task and a fixed real batch.

    The batch is the first of ``split`` in fairseq's (length-sorted) order, at
    most ``max_tokens`` tokens, so every model of an analysis sees the same one.
    """

    def __init__(self, data_bin: Path, split: str = "valid", max_tokens: int = 2000):
        self.data_bin = Path(data_bin)
        if not self.data_bin.is_dir():
            raise AdminError(f"data-bin {self.data_bin} is not a folder")
        args = _parse(self.data_bin, small_hparams(32, 64, 4), [])
        self.task = tasks.setup_task(args)
        self.task.load_dataset(split)
        itr = self.task.get_batch_iterator(
            dataset=self.task.dataset(split), max_tokens=max_tokens, seed=1
        ).next_epoch_itr(shuffle=False)
        self.batch = next(iter(itr))

    def build(
        self,
        variant: str,
        depth: tuple[int, int],
        hparams: Mapping[str, Any],
        seed: int,
        profile: Path | None = None,
    ) -> torch.nn.Module:
        """A ``variant`` model at initialisation, in eval mode.

        ``depth`` is (encoder layers, decoder layers).  The weights are those
        ``fairseq-train --seed seed`` starts from.  Admin reads ``profile`` if
        given; otherwise it is profiled first, exactly as the profiling job does
        (the first training batch, training mode, the same seed), then built
        from that profile.
        """
        layers = ["--encoder-layers", str(depth[0]), "--decoder-layers", str(depth[1])]
        if not needs_profile(variant):
            return self._build(hparams, layers + fairseq_flags(variant), seed)
        if profile is not None:
            return self._build(hparams, layers + fairseq_flags(variant, profile), seed)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "profile.json"
            try:  # the plugin profiles the first training batch while building
                self._build(hparams, layers + fairseq_flags(variant, path, profiling=True), seed)
            except PLUGIN.model.ProfilingFinished:
                pass
            return self._build(hparams, layers + fairseq_flags(variant, path), seed)

    def _build(self, hparams: Mapping[str, Any], extra: list[str], seed: int) -> torch.nn.Module:
        args = _parse(self.data_bin, hparams, [*extra, "--seed", str(seed)])
        torch.manual_seed(seed)
        model = self.task.build_model(args)
        model.eval()
        return model


def load_trained(checkpoint: Path, task: Any) -> torch.nn.Module:
    """A trained model from a fairseq checkpoint (its own saved config), in eval mode."""
    from fairseq import checkpoint_utils

    models, _ = checkpoint_utils.load_model_ensemble([str(checkpoint)], task=task)
    model = models[0]
    model.eval()
    return model
