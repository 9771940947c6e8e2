"""Models and training steps for the throughput benchmarks, built the way fairseq-train
builds them (fairseq's option parser, task, model and criterion).

The timed step is what every training update does: forward and loss, backward,
the optimizer step (the plugin's RAdam, the paper's optimizer).  fairseq's
trainer adds the same bookkeeping to every model, so it is left out.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fairseq import options, tasks
from fairseq.data import Dictionary

from admin.common import profiling
from admin.common.fairseq_command import load_plugin
from admin.common.variants import fairseq_flags

# Quiet consoles: fairseq's per-model INFO lines and two torch warnings that fairseq's
# code triggers on every batch say nothing about the figures.
logging.getLogger("fairseq").setLevel(logging.WARNING)
logging.getLogger("admin").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*pin_memory.*")
warnings.filterwarnings("ignore", message=".*mismatched key_padding_mask and attn_mask.*")

# The models compared: fairseq's stock transformer, then admin_transformer with each
# trainable --init-type (the pipeline's variant names, see admin.common.variants).
STOCK = "transformer"
ADMIN_VARIANTS = {
    "postln": "default",
    "admin": "adaptive",
    "admin-logn": "admin-logn",
    "deepnet": "deepnet",
    "rezero": "rezero",
}

# registers admin_transformer and radam, as fairseq's --user-dir does
PLUGIN = load_plugin()


@dataclass(frozen=True)
class Size:
    """An equally deep encoder-decoder."""

    layers: int
    dim: int
    ffn: int
    heads: int

    def argv(self) -> list[str]:
        return [
            "--encoder-layers", str(self.layers), "--decoder-layers", str(self.layers),
            "--encoder-embed-dim", str(self.dim), "--decoder-embed-dim", str(self.dim),
            "--encoder-ffn-embed-dim", str(self.ffn), "--decoder-ffn-embed-dim", str(self.ffn),
            "--encoder-attention-heads", str(self.heads),
            "--decoder-attention-heads", str(self.heads),
        ]  # fmt: skip

    def text(self) -> str:
        depth = f"{self.layers}-{self.layers}"
        return f"{depth} layers, dim {self.dim}, FFN {self.ffn}, {self.heads} heads"


def variant_argv(variant: str, profile: Path | None) -> list[str]:
    if variant == STOCK:
        return ["--arch", "transformer"]
    return ["--arch", "admin_transformer", *fairseq_flags(variant, profile)]


def parse(data: Path, argv: Sequence[str], max_tokens: int, cpu: bool) -> Any:
    """fairseq-train's arguments for ``data`` (a data-bin or a folder of dictionaries)."""
    return options.parse_args_and_arch(
        options.get_training_parser(),
        [
            str(data), *argv, *(["--cpu"] if cpu else []),
            "--share-all-embeddings", "--dropout", "0.1",
            "--attention-dropout", "0.0", "--activation-dropout", "0.0",
            "--optimizer", "radam", "--adam-betas", "(0.9, 0.98)", "--lr", "0.0005",
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
            "--max-tokens", str(max_tokens), "--seed", "1",
        ],
    )  # fmt: skip


@dataclass
class Trainable:
    """A model with its criterion and optimizer, ready for timed steps."""

    model: torch.nn.Module
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    amp_dtype: torch.dtype | None = None  # autocast (mixed precision) when set

    def step(self, sample: dict) -> None:
        """One training update.  Nothing is read back: on a GPU the caller synchronizes
        once per timed pass, not once per step."""
        self._backward(sample)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def forward_backward(self, sample: dict) -> None:
        """The model's share of a step (no optimizer), for FLOP utilisation."""
        self._backward(sample)
        self.model.zero_grad(set_to_none=True)

    def _backward(self, sample: dict) -> None:
        amp: contextlib.AbstractContextManager = contextlib.nullcontext()
        if self.amp_dtype is not None:
            device_type = next(self.model.parameters()).device.type
            amp = torch.autocast(device_type, dtype=self.amp_dtype)
        with amp:
            loss, _, _ = self.criterion(self.model, sample)
        loss.backward()


def build(task: Any, args: Any, device: str, amp_dtype: torch.dtype | None = None) -> Trainable:
    torch.manual_seed(1)  # every model starts from the same draws
    model = task.build_model(args).to(device)
    model.train()
    criterion = task.build_criterion(args).to(device)
    optimizer = PLUGIN.radam.RAdam(model.parameters(), lr=5e-4, betas=(0.9, 0.98))
    return Trainable(model, criterion, optimizer, amp_dtype)


def write_profile(task: Any, args: Any, sample: dict, device: str, path: Path) -> None:
    """Admin's profile of this model size on ``sample``, with the plugin's own profiling
    forward pass (``AdminTransformerModel.profile``), written where ``adaptive`` reads it."""
    args = _with(args, init_type="admin-logn")  # any omega model: profiling sets every omega
    torch.manual_seed(1)
    model = task.build_model(args).to(device)
    model.train()
    profiling.write_profile(path, model.profile(**sample["net_input"]))


def _with(args: Any, **changes: Any) -> Any:
    copy = type(args)(**vars(args))
    for key, value in changes.items():
        setattr(copy, key, value)
    return copy


def synthetic_dictionary_dir(folder: Path, vocab: int, langs: tuple[str, str]) -> Path:
    """A folder holding only joined dictionaries of ``vocab`` symbols (specials included),
    enough for fairseq's translation task to set up and build models without data."""
    folder.mkdir(parents=True, exist_ok=True)
    words = vocab - len(Dictionary())  # Dictionary() holds the special symbols
    text = "".join(f"w{i} 1\n" for i in range(words))
    for lang in langs:
        (folder / f"dict.{lang}.txt").write_text(text, encoding="utf-8")
    return folder


def synthetic_batch(
    sentences: int, src_len: int, tgt_len: int, vocab: int, device: str, seed: int = 1
) -> dict:
    """A batch of random tokens with no padding, so every position is counted work."""
    gen = torch.Generator().manual_seed(seed)
    nspecial = len(Dictionary())
    src = torch.randint(nspecial, vocab, (sentences, src_len), generator=gen)
    tgt = torch.randint(nspecial, vocab, (sentences, tgt_len), generator=gen)
    eos = Dictionary().eos()
    prev = torch.cat([torch.full((sentences, 1), eos), tgt[:, :-1]], dim=1)
    sample = {
        "net_input": {
            "src_tokens": src,
            "src_lengths": torch.full((sentences,), src_len),
            "prev_output_tokens": prev,
        },
        "target": tgt,
        "ntokens": sentences * tgt_len,
        "nsentences": sentences,
    }
    return _to(sample, device)


def data_batches(task: Any, args: Any, count: int, device: str) -> list[dict]:
    """The first ``count`` training batches of a data-bin, in fairseq's order (seed 1)."""
    task.load_dataset("train", epoch=1)
    itr = task.get_batch_iterator(
        dataset=task.dataset("train"), max_tokens=args.max_tokens, seed=1, epoch=1,
        required_batch_size_multiple=1, num_workers=0,
    ).next_epoch_itr(shuffle=True)  # fmt: skip
    batches = []
    for batch in itr:
        batches.append(_to(batch, device))
        if len(batches) == count:
            break
    return batches


def setup_task(args: Any) -> Any:
    return tasks.setup_task(args)


def _to(sample: Any, device: str) -> Any:
    if isinstance(sample, torch.Tensor):
        return sample.to(device)
    if isinstance(sample, dict):
        return {k: _to(v, device) for k, v in sample.items()}
    return sample
