"""What a target costs, from its recipes, before anything is submitted.

    python -m admin.budget paper_wmt14_en_de [--gpu v100|a100|h200]
    python -m admin.budget paper_all --configfile my.yaml --config depths='[6-6]'
    python -m admin.budget paper_all --tokens-per-second iwslt14_de_en=N  # measured wps/GPU
    python -m admin.budget paper_all --throughput-json throughput.json    # a GPU check's
    python -m admin.budget paper_all --mfu 0.3                            # one assumed MFU

TARGET is ``paper_iwslt14_de_en``, ``paper_wmt14_en_de``, ``paper_wmt14_en_fr``,
``paper_all``, ``mini_multi30k_de_en`` or a dataset of the config.  The config is loaded
as the workflow loads it (``config/config.yaml``, ``--configfile`` and ``--config`` as in
Snakemake, the presets, the schema).  Printed, as Markdown tables:

* every run (dataset, variant, depth, seed, GPUs x nodes): its parameters, training
  FLOPs per target token, tokens trained, GPU-hours and wall hours at the preset's GPUs;
* its checkpoint sizes, its peak disk while training and what stays after scoring
  (``checkpoints.keep``), beside the same figures before checkpoints were pruned;
* per dataset and depth, the tokens/s it is priced at and the published figure (or the
  override) they rest on, then the published figures;
* totals per target;
* per dataset and depth, the ``save_interval_updates`` that bounds what a kill loses.

**Compute.** Target tokens trained (tokens per epoch x epochs, or the updates' token
budget if ``max_update`` ends the run first) / target tokens/s per GPU.  The tokens/s
come from published fairseq training speeds (:mod:`admin.throughput`: each figure's
effective model FLOP utilisation, MFU, per model family and GPU kind, with the rule for
the pairs without one), converted through the run's counted FLOPs per target token
(:func:`train_flops`, source length = target length = the corpus's mean).  Overrides,
the most specific first: ``--tokens-per-second [DATASET=]N`` (a measured fairseq wps per
GPU), ``--throughput-json FILE`` (``python -m benchmarks.gpu_throughput --device cuda
--json FILE``), ``--mfu`` (one assumed MFU for every model; 0.3 gives the estimates
before the calibration).  Tokens per epoch and the mean length come from
``resources/<dataset>/data-bin/preprocess.log`` when the data is prepared, else from
:data:`CORPORA` (approximate sizes of the standard preparations).

**Checkpoints.** Bytes are parameters x 4: fairseq 0.12 saves every model tensor as
float32 (``utils.move_to_cpu`` upcasts fp16/bf16 weights), and the plugin's RAdam keeps
two float32 moments per parameter (fairseq's ``FP16Optimizer.state_dict`` saves the
wrapped optimizer's state only, not its fp32 master weights).  ``move_to_cpu`` also
copies each state-dict entry on its own, so a checkpoint written from a GPU (or from
half precision) holds a shared embedding once per name that uses it (3 times under
``share_all_embeddings``); a float32 CPU run keeps one copy.  ``checkpoint_avg.pt``
(``admin.average``) holds the model's tensors only, as the checkpoints hold them.

**Disk.** While a run trains it keeps the averaging window's N epoch checkpoints,
``checkpoint_last.pt`` and the latest mid-epoch checkpoint (admin.train); the moment
after a save, before the pruner runs, the new checkpoint and fairseq's
``checkpoint_best.pt`` are there too: N + 4 training checkpoints at the peak.  Before
this pruning fairseq kept every epoch checkpoint, ``checkpoint_best.pt`` and
``checkpoint_last.pt``, and ``checkpoint_avg.pt`` carried the optimizer state.

**Mid-epoch saves.** A kill loses at most one save interval.  The interval that takes
15 minutes at the estimate takes 30 if the real throughput is half of it; tokens per
update are taken at their upper bound (``max_tokens`` x batches per update), so the
real interval is shorter still.  The presets' values are derived at the slowest GPU of
:data:`GPUS` (the paper's V100) at its calibrated throughput; the saves table gives the
interval at the estimate beside them.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from admin.common import config as cfgmod
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.common.run_folder import parse_depth
from admin.common.variants import VARIANTS
from admin.recipe import batches_per_update
from admin.throughput import (
    GPUS,
    PUBLISHED,
    Measurement,
    Model,
    Rate,
    at_mfu,
    at_tokens_per_second,
    calibrated,
    missing_figures,
    read_measurement,
)
from admin.throughput import train_flops as train_flops  # re-exported: benchmarks, tests

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "config.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

SLOWEST_GPU = min(GPUS, key=lambda g: GPUS[g][1])
# The MFU the presets' save_interval_updates were derived at, before the estimates were
# calibrated from published figures (admin.throughput); the saves table prints the
# intervals the calibrated estimate gives.

# What a kill may lose, and the interval that keeps it there at half the estimated speed.
MAX_LOSS_MINUTES = 30.0
SAVE_EVERY_MINUTES = MAX_LOSS_MINUTES / 2

# The workflow's named targets (workflow/Snakefile) and the datasets each builds.
NAMED_TARGETS: dict[str, tuple[str, ...]] = {
    "paper_iwslt14_de_en": ("iwslt14_de_en",),
    "paper_wmt14_en_de": ("wmt14_en_de",),
    "paper_wmt14_en_fr": ("wmt14_en_fr",),
    "paper_all": ("iwslt14_de_en", "wmt14_en_de", "wmt14_en_fr"),
    "mini_multi30k_de_en": ("multi30k_de_en",),
}

# (embed dim, FFN dim, attention heads) of fairseq's architecture presets.
ARCHS: dict[str, tuple[int, int, int]] = {
    "transformer": (512, 2048, 8),
    "transformer_iwslt_de_en": (512, 1024, 4),
    "transformer_wmt_en_de": (512, 2048, 8),
    "transformer_wmt_en_de_big": (1024, 4096, 16),
}
ARCHS.update({f"admin_{name}": dims for name, dims in list(ARCHS.items())})

# Options that change the parameter count in ways this module does not count.
UNCOUNTED_OPTIONS = (
    "adaptive_softmax_cutoff", "adaptive_input", "no_cross_attention", "cross_self_attention",
    "decoder_input_dim", "decoder_output_dim", "encoder_layers_to_keep",
    "decoder_layers_to_keep", "scale_attn", "scale_fc", "scale_heads", "scale_resids",
    "base_layers", "add_bias_kv",
)  # fmt: skip


@dataclass(frozen=True)
class Corpus:
    tokens_per_epoch: float  # target tokens (with end-of-sentence) of the training split
    mean_length: float  # target tokens per sentence
    source: str  # where the figures come from


# Approximate sizes of the standard preparations, used until the data-bin exists.
CORPORA: dict[str, Corpus] = {
    "iwslt14_de_en": Corpus(3.9e6, 25, "IWSLT'14 De-En, 160k pairs (approximate)"),
    "wmt14_en_de": Corpus(130e6, 30, "WMT'14 En-De, 4.5M pairs (approximate)"),
    "wmt14_en_fr": Corpus(1.1e9, 32, "WMT'14 En-Fr, 35.8M pairs (approximate)"),
}

SPECIAL_SYMBOLS = 4  # fairseq's <s> <pad> </s> <unk>, not in dict.<lang>.txt
PADDING_FACTOR = 8  # fairseq-preprocess pads its dictionaries to a multiple of this


# --------------------------------------------------------------------------- model size


@dataclass(frozen=True)
class ModelShape:
    """What fixes a translation Transformer's tensors (fairseq 0.12's ``transformer``)."""

    encoder_layers: int
    decoder_layers: int
    encoder_dim: int
    decoder_dim: int
    encoder_ffn: int
    decoder_ffn: int
    src_vocab: int
    tgt_vocab: int
    share_all_embeddings: bool = False
    share_decoder_input_output_embed: bool = False
    init_type: str = "default"
    encoder_normalize_before: bool = False
    decoder_normalize_before: bool = False
    no_decoder_final_norm: bool = False
    layernorm_embedding: bool = False
    encoder_learned_pos: bool = False
    decoder_learned_pos: bool = False
    max_source_positions: int = 1024
    max_target_positions: int = 1024


def _linear(fan_in: int, fan_out: int, bias: bool = True) -> int:
    return fan_in * fan_out + (fan_out if bias else 0)


def _layer_norm(dim: int) -> int:
    return 2 * dim


def _attention(dim: int, kv_dim: int) -> int:
    """fairseq's MultiheadAttention: q, k, v and output projections with biases."""
    return 2 * _linear(dim, dim) + 2 * _linear(kv_dim, dim)


def _residual_params(init_type: str, sublayers: int, dim: int) -> tuple[int, int]:
    """(parameters, buffers) a layer adds for its residual variant; negative parameters
    for the LayerNorms ReZero removes."""
    if init_type in ("adaptive", "adaptive-profiling", "admin-logn"):
        return sublayers * dim, 0  # Admin's omegas, trained
    if init_type == "deepnet":
        return 0, sublayers * dim  # DeepNorm's alphas, constant
    if init_type == "rezero":
        return sublayers - sublayers * _layer_norm(dim), 0
    return 0, 0


def _positions(learned: bool, max_positions: int, dim: int) -> int:
    # fairseq's LearnedPositionalEmbedding: max_positions + padding_idx (1) + 1 rows
    return (max_positions + 2) * dim if learned else 0


def parameter_count(shape: ModelShape) -> int:
    """``sum(p.numel() for p in model.parameters())``: every distinct parameter once."""
    ed, dd = shape.encoder_dim, shape.decoder_dim
    enc_layer = (
        _attention(ed, ed) + _linear(ed, shape.encoder_ffn) + _linear(shape.encoder_ffn, ed)
        + 2 * _layer_norm(ed) + _residual_params(shape.init_type, 2, ed)[0]
    )  # fmt: skip
    dec_layer = (
        2 * _attention(dd, dd) - 2 * _linear(dd, dd) + 2 * _linear(ed, dd)  # cross k, v
        + _linear(dd, shape.decoder_ffn) + _linear(shape.decoder_ffn, dd)
        + 3 * _layer_norm(dd) + _residual_params(shape.init_type, 3, dd)[0]
    )  # fmt: skip
    embeddings = shape.src_vocab * ed
    if not shape.share_all_embeddings:
        embeddings += shape.tgt_vocab * dd
        if not shape.share_decoder_input_output_embed:
            embeddings += shape.tgt_vocab * dd  # the output projection (no bias)
    extras = _positions(shape.encoder_learned_pos, shape.max_source_positions, ed)
    extras += _positions(shape.decoder_learned_pos, shape.max_target_positions, dd)
    if shape.layernorm_embedding:
        extras += _layer_norm(ed) + _layer_norm(dd)
    if shape.encoder_normalize_before:
        extras += _layer_norm(ed)  # the encoder's final LayerNorm (Pre-LN)
    if shape.decoder_normalize_before and not shape.no_decoder_final_norm:
        extras += _layer_norm(dd)
    return embeddings + shape.encoder_layers * enc_layer + shape.decoder_layers * dec_layer + extras


def buffer_count(shape: ModelShape) -> int:
    """Floating-point buffers in the model's state dict: the encoder's and decoder's
    ``version`` and DeepNorm's constant alphas."""
    _, enc = _residual_params(shape.init_type, 2, shape.encoder_dim)
    _, dec = _residual_params(shape.init_type, 3, shape.decoder_dim)
    return 2 + shape.encoder_layers * enc + shape.decoder_layers * dec


def shared_aliases(shape: ModelShape) -> int:
    """Elements of the state dict's extra names for shared tensors: the decoder's
    embedding and output projection under ``share_all_embeddings``, the output
    projection under ``share_decoder_input_output_embed``."""
    if shape.share_all_embeddings:
        return 2 * shape.src_vocab * shape.encoder_dim
    if shape.share_decoder_input_output_embed:
        return shape.tgt_vocab * shape.decoder_dim
    return 0


FLOAT32 = 4
RADAM_MOMENTS = 2  # exp_avg and exp_avg_sq, float32


@dataclass(frozen=True)
class CheckpointBytes:
    model: int  # the model's tensors in a training checkpoint
    optimizer: int  # RAdam's moments
    averaged: int  # checkpoint_avg.pt: the model only, equal tensors stored once

    @property
    def training(self) -> int:
        return self.model + self.optimizer


def checkpoint_bytes(shape: ModelShape, *, tied: bool) -> CheckpointBytes:
    """Tensor bytes of a fairseq 0.12 checkpoint of this model (the file adds the
    pickle's overhead: names, the config, the training progress).  ``tied``: the
    shared embedding is stored once (float32 training on the CPU), not once per name
    (training on a GPU, or in half precision)."""
    params = parameter_count(shape)
    model = params + buffer_count(shape)
    copies = 0 if tied else shared_aliases(shape)
    # admin.average stores the copies of a shared embedding once (tie_equal)
    return CheckpointBytes(FLOAT32 * (model + copies), FLOAT32 * RADAM_MOMENTS * params,
                           FLOAT32 * model)  # fmt: skip


def model_shape(
    hparams: Mapping[str, Any], depth: str, variant: str, vocab: tuple[int, int]
) -> ModelShape:
    """The shape of a run's model: its architecture preset, the recipe's overrides,
    the depth, the variant and the (source, target) vocabulary sizes."""
    arch = hparams.get("arch")
    if arch not in ARCHS:
        raise AdminError(
            f"hparams.arch {arch!r}: admin.budget knows the presets {', '.join(sorted(ARCHS))}"
        )
    uncounted = [k for k in UNCOUNTED_OPTIONS if hparams.get(k)]
    if uncounted:
        raise AdminError(f"admin.budget cannot count parameters with {', '.join(uncounted)} set")
    if variant not in VARIANTS:
        raise AdminError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    dim, ffn, _ = ARCHS[arch]
    init_type, pre_ln = VARIANTS[variant]
    enc, dec = parse_depth(depth)
    share_all = bool(hparams.get("share_all_embeddings"))
    if share_all and vocab[0] != vocab[1]:
        raise AdminError(
            f"share_all_embeddings needs one joined dictionary; source {vocab[0]} and "
            f"target {vocab[1]} symbols differ"
        )
    enc_dim = int(hparams.get("encoder_embed_dim") or dim)
    return ModelShape(
        encoder_layers=enc,
        decoder_layers=dec,
        encoder_dim=enc_dim,
        decoder_dim=int(hparams.get("decoder_embed_dim") or enc_dim),
        encoder_ffn=int(hparams.get("encoder_ffn_embed_dim") or ffn),
        decoder_ffn=int(
            hparams.get("decoder_ffn_embed_dim") or hparams.get("encoder_ffn_embed_dim") or ffn
        ),
        src_vocab=vocab[0],
        tgt_vocab=vocab[1],
        share_all_embeddings=share_all,
        share_decoder_input_output_embed=bool(hparams.get("share_decoder_input_output_embed")),
        init_type=init_type,
        encoder_normalize_before=pre_ln or bool(hparams.get("encoder_normalize_before")),
        decoder_normalize_before=pre_ln or bool(hparams.get("decoder_normalize_before")),
        no_decoder_final_norm=bool(hparams.get("no_decoder_final_norm")),
        layernorm_embedding=bool(hparams.get("layernorm_embedding")),
        encoder_learned_pos=bool(hparams.get("encoder_learned_pos")),
        decoder_learned_pos=bool(hparams.get("decoder_learned_pos")),
        max_source_positions=int(hparams.get("max_source_positions") or 1024),
        max_target_positions=int(hparams.get("max_target_positions") or 1024),
    )


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataFacts:
    vocab: tuple[int, int]  # (source, target) dictionary sizes
    vocab_from: str
    corpus: Corpus | None


def dictionary_size(path: Path) -> int:
    """Symbols of a fairseq dictionary: its lines plus the 4 special symbols."""
    with path.open(encoding="utf-8") as f:
        return SPECIAL_SYMBOLS + sum(1 for line in f if line.strip())


def estimated_vocab(merges: int) -> int:
    """A joined BPE dictionary's size from its merges: one symbol per merge plus the
    special symbols, padded as fairseq-preprocess pads it.  An estimate: the single
    characters add symbols, merge intermediates that never survive segmentation take
    some away (IWSLT'14's BPE'd valid and test sets alone use 9906 distinct symbols of
    its 10000 merges)."""
    size = merges + SPECIAL_SYMBOLS
    return PADDING_FACTOR * math.ceil(size / PADDING_FACTOR)


_PREPROCESS_LINE = re.compile(
    r"\[(?P<lang>[^\]]+)\] (?P<path>\S+): (?P<sents>\d+) sents, (?P<tokens>\d+) tokens"
)


def corpus_from_log(log: Path, tgt: str) -> Corpus | None:
    """The training split's target tokens from fairseq-preprocess's log, or None."""
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _PREPROCESS_LINE.search(line)
        if m and m["lang"] == tgt and Path(m["path"]).name.startswith("train"):
            sents, tokens = int(m["sents"]), int(m["tokens"])
            if sents:
                return Corpus(tokens, tokens / sents, str(log))
    return None


def languages(cfg: Mapping[str, Any], dataset: str) -> tuple[str, str]:
    """(source, target) language codes of a dataset (as the workflow names them)."""
    from admin.data.registry import DATASETS

    source = cfgmod.experiment(cfg, dataset)["data"]["source"]
    if source == "demo":
        return "xs", "xt"
    return DATASETS[source].src, DATASETS[source].tgt


def data_facts(cfg: Mapping[str, Any], dataset: str, resources: Path) -> DataFacts:
    """Vocabulary and corpus size: from the prepared data-bin if it exists, else
    estimated from the BPE merges and :data:`CORPORA`."""
    from admin.data.registry import DATASETS

    data = cfgmod.experiment(cfg, dataset)["data"]
    src, tgt = languages(cfg, dataset)
    data_bin = resources / dataset / "data-bin"
    dicts = [data_bin / f"dict.{lang}.txt" for lang in (src, tgt)]
    corpus = CORPORA.get(data["source"])
    if all(p.is_file() for p in dicts):
        vocab = (dictionary_size(dicts[0]), dictionary_size(dicts[1]))
        log = data_bin / "preprocess.log"
        corpus = (corpus_from_log(log, tgt) if log.is_file() else None) or corpus
        return DataFacts(vocab, f"{dicts[1]}", corpus)
    merges = data.get("bpe_merges") or DATASETS[data["source"]].bpe_merges
    size = estimated_vocab(int(merges))
    return DataFacts((size, size), f"estimated from {merges} BPE merges (no {data_bin})", corpus)


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Hardware:
    """The GPU kind and what its throughput rests on: the published figures
    (admin.throughput) unless one of the overrides is set, the most specific first."""

    gpu: str = "v100"
    mfu: float | None = None  # --mfu: one assumed MFU for every model
    measurement: Measurement | None = None  # --throughput-json
    # --tokens-per-second: (dataset, target tokens/s per GPU); dataset "" for every one
    tokens_per_second: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        return GPUS[self.gpu][0]

    def rate(self, plan: Plan) -> Rate | None:
        """Target tokens/s per GPU of the plan's model, and what the figure rests on."""
        if not plan.world or plan.model is None:
            return None
        fixed = dict(self.tokens_per_second)
        tokens = fixed.get(plan.dataset, fixed.get(""))
        if tokens is not None:
            return at_tokens_per_second(plan.model, self.gpu, tokens,
                                        f"--tokens-per-second {tokens:g}")  # fmt: skip
        if self.measurement is not None:
            return self.measurement.rate(plan.model, self.gpu)
        if self.mfu is not None:
            return at_mfu(plan.model, self.gpu, self.mfu)
        rate = calibrated(plan.model, self.gpu)
        if not plan.half:  # the figures are fp16; fp32 runs slower
            note = "the recipe trains in fp32: optimistic"
            return replace(rate, derived=True, basis=f"{rate.basis}; {note}")
        return rate

    def describe(self) -> str:
        parts = []
        if self.tokens_per_second:
            parts.append(", ".join(f"{d or 'every dataset'}: --tokens-per-second {t:g}"
                                   for d, t in self.tokens_per_second))  # fmt: skip
        if self.measurement is not None:
            parts.append(f"measured (--throughput-json {self.measurement.path})")
        elif self.mfu is not None:
            parts.append(f"--mfu {self.mfu:.0%} for every model (assumed)")
        else:
            parts.append("per model, from published fairseq training speeds")
        return "; otherwise ".join(parts)


@dataclass(frozen=True)
class Plan:
    """One (dataset, depth) of a target: what every run at that depth shares."""

    dataset: str
    depth: str
    gpus: int  # GPUs per node of the train job (0: the CPU)
    nodes: int
    tokens_per_update: int  # upper bound: max_tokens x batches per update
    model: Model | None  # what fixes the FLOPs per token (None: unknown corpus)
    half: bool  # fp16 or bf16 training
    corpus: Corpus | None
    epochs: float | None  # epochs trained (None: unknown corpus)
    tokens: float | None  # target tokens trained
    save_interval: int  # the config's save_interval_updates (0: none)
    window: tuple[int, int | None]

    @property
    def world(self) -> int:
        return self.gpus * self.nodes

    @property
    def flops_per_token(self) -> float | None:
        return None if self.model is None else self.model.flops_per_token()

    def tokens_per_second(self, hw: Hardware) -> float | None:
        """Target tokens/s of all the run's GPUs."""
        rate = hw.rate(self)
        return None if rate is None else rate.tokens_per_second * self.world

    def gpu_hours(self, hw: Hardware) -> float | None:
        """Tokens trained / the GPUs' tokens/s, times the GPUs."""
        rate = hw.rate(self)
        if self.tokens is None or rate is None:
            return None
        return self.tokens / rate.tokens_per_second / 3600

    def wall_hours(self, hw: Hardware) -> float | None:
        hours = self.gpu_hours(hw)
        return None if hours is None else hours / self.world

    def updates_per_hour(self, hw: Hardware) -> float | None:
        """At the estimate, with full batches (a lower bound on the real rate)."""
        tps = self.tokens_per_second(hw)
        return None if tps is None else 3600 * tps / self.tokens_per_update

    def epochs_per_hour(self, hw: Hardware) -> float | None:
        tps = self.tokens_per_second(hw)
        if tps is None or self.corpus is None:
            return None
        return 3600 * tps / self.corpus.tokens_per_epoch

    def updates_per_epoch(self) -> float | None:
        """A lower bound (full batches)."""
        if self.corpus is None:
            return None
        return self.corpus.tokens_per_epoch / self.tokens_per_update

    def max_save_interval(self, hw: Hardware) -> int | None:
        """The most updates between saves that keep a kill's loss under
        :data:`MAX_LOSS_MINUTES` at half the estimated throughput."""
        rate = self.updates_per_hour(hw)
        return None if rate is None else int(rate * SAVE_EVERY_MINUTES / 60)


def plan(cfg: Mapping[str, Any], dataset: str, depth: str, facts: DataFacts) -> Plan:
    hp = cfgmod.recipe_hparams(cfg, dataset, depth)
    res = cfgmod.lookup_resources(cfg, "train", dataset, depth)
    enc, dec = parse_depth(depth)
    shape = model_shape(hp, depth, "postln", facts.vocab)
    if shape.encoder_dim != shape.decoder_dim or shape.encoder_ffn != shape.decoder_ffn:
        raise AdminError(
            f"experiments.{dataset}: admin.budget counts FLOPs of equal encoder and decoder widths"
        )
    if not hp.get("max_tokens"):
        raise AdminError(f"experiments.{dataset}.hparams.max_tokens: needed for the estimate")
    tokens_per_update = int(hp["max_tokens"]) * batches_per_update(
        hp, cfgmod.batch_world(cfg, dataset, depth)
    )
    corpus = facts.corpus
    model = epochs = tokens = None
    if corpus is not None:
        # source length = target length = the corpus's mean
        model = Model(shape.decoder_dim, shape.decoder_ffn, enc, dec, shape.tgt_vocab,
                      corpus.mean_length)  # fmt: skip
        limits = []
        if hp.get("max_epoch"):
            limits.append(int(hp["max_epoch"]) * corpus.tokens_per_epoch)
        if hp.get("max_update"):
            limits.append(int(hp["max_update"]) * tokens_per_update)
        if not limits:
            raise AdminError(
                f"experiments.{dataset}: neither max_epoch nor max_update is set; a run "
                "without a stop condition has no budget"
            )
        tokens = min(limits)
        epochs = tokens / corpus.tokens_per_epoch
    return Plan(
        dataset=dataset, depth=depth, gpus=res["gpus"], nodes=res["nodes"],
        tokens_per_update=tokens_per_update, model=model,
        half=bool(hp.get("fp16") or hp.get("bf16") or hp.get("memory_efficient_fp16")),
        corpus=corpus,
        epochs=epochs, tokens=tokens, save_interval=int(hp.get("save_interval_updates") or 0),
        window=cfgmod.average_window(cfg, dataset),
    )  # fmt: skip


@dataclass(frozen=True)
class Disk:
    peak: int
    left: int


@dataclass(frozen=True)
class Run:
    dataset: str
    variant: str
    depth: str
    seed: int
    plan: Plan
    params: int
    sizes: CheckpointBytes
    epochs: int  # epochs trained, rounded up (the last one may be partial)
    after: Disk
    before: Disk


def disk_after(sizes: CheckpointBytes, epochs: int, window: tuple[int, int | None],
               save_interval: int, keep: str) -> Disk:  # fmt: skip
    """Peak and final bytes of a run with the training step's pruning.  The peak is
    the moment after a save, before the pruner: at an epoch end the window's N
    checkpoints, the new one, checkpoint_best.pt, checkpoint_last.pt and the latest
    mid-epoch checkpoint; at a mid-epoch save the window, the old and the new
    mid-epoch checkpoint, best and last."""
    last, upper = window
    eligible = epochs if upper is None else min(epochs, upper)
    mid = 1 if save_interval else 0
    at_epoch_end = min(last + 1, eligible) + mid + 2
    at_mid_epoch = min(last, eligible) + 2 * mid + 2 if mid else 0
    peak = max(at_epoch_end, at_mid_epoch) * sizes.training
    kept = {"none": 0, "last": 1, "all": min(last, eligible) + 1 + mid}[keep]
    # checkpoint_avg.pt is written while the window is still there: never the peak
    return Disk(peak, kept * sizes.training + sizes.averaged)


def disk_before(sizes: CheckpointBytes, epochs: int) -> Disk:
    """fairseq's defaults: every epoch checkpoint, checkpoint_best.pt and
    checkpoint_last.pt, and a checkpoint_avg.pt that carried the optimizer state;
    nothing deleted afterwards."""
    total = (epochs + 3) * sizes.training
    return Disk(total, total)


def runs(cfg: Mapping[str, Any], dataset: str, resources: Path) -> list[Run]:
    """Every run of a dataset's matrix, with its costs."""
    facts = data_facts(cfg, dataset, resources)
    keep = cfg["checkpoints"]["keep"]
    plans: dict[str, Plan] = {}
    out = []
    for variant, depth, seed in cfgmod.cells(cfg, dataset):
        if depth not in plans:
            plans[depth] = plan(cfg, dataset, depth, facts)
        p = plans[depth]
        hp = cfgmod.recipe_hparams(cfg, dataset, depth)
        shape = model_shape(hp, depth, variant, facts.vocab)
        half = bool(hp.get("fp16") or hp.get("bf16") or hp.get("memory_efficient_fp16"))
        sizes = checkpoint_bytes(shape, tied=p.world == 0 and not half)
        epochs = math.ceil(p.epochs - 1e-9) if p.epochs is not None else _stop_epochs(hp)
        out.append(Run(
            dataset, variant, depth, seed, p, parameter_count(shape), sizes, epochs,
            disk_after(sizes, epochs, p.window, p.save_interval, keep),
            disk_before(sizes, epochs),
        ))  # fmt: skip
    return out


def _stop_epochs(hp: Mapping[str, Any]) -> int:
    if not hp.get("max_epoch"):
        raise AdminError("a run without max_epoch and without a known corpus size: no budget")
    return int(hp["max_epoch"])


def depth_plans(cfg: Mapping[str, Any], dataset: str, resources: Path) -> list[Plan]:
    """One plan per depth of the dataset's matrix."""
    facts = data_facts(cfg, dataset, resources)
    return [plan(cfg, dataset, depth, facts) for depth in cfgmod.matrix(cfg, dataset)[1]]


def readable_floor(value: float) -> int:
    """The largest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k that is <= value."""
    if value < 1:
        raise AdminError(f"no save interval of at least 1 update fits ({value:.2f})")
    scale = 10 ** math.floor(math.log10(value))
    steps = [s * scale for s in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)]
    return int(max(s for s in steps if s <= value + 1e-9))


# --------------------------------------------------------------------------- config


def load_config(configfiles: Sequence[Path] = (), config: Sequence[str] = ()) -> dict[str, Any]:
    """The workflow's config as Snakemake gives it: config/config.yaml, then each
    ``--configfile`` merged on top, then ``--config KEY=VALUE`` (parsed by Snakemake's
    own parser); presets merged under it and the whole validated (admin.common.config)."""
    cfg = cfgmod.read_yaml(CONFIG) or {}
    for path in configfiles:
        if not Path(path).is_file():
            raise AdminError(f"--configfile {path} does not exist")
        cfg = cfgmod.deep_merge(cfg, cfgmod.read_yaml(path) or {})
    overrides: dict[str, Any] = {}
    if config:
        from snakemake.cli import parse_config

        try:
            overrides = parse_config(list(config))
        except ValueError as err:
            raise AdminError(f"--config: {err}") from None
    return cfgmod.load(cfg, locate=lambda p: REPO / p, schema=SCHEMA, overrides=overrides)


def target_datasets(cfg: Mapping[str, Any], target: str) -> tuple[str, ...]:
    datasets = NAMED_TARGETS.get(target, (target,))
    known = cfg["experiments"]
    for name in datasets:
        if name not in known:
            raise AdminError(
                f"target {target!r}: dataset {name!r} is not defined under experiments; "
                f"targets: {', '.join([*NAMED_TARGETS, *sorted(known)])}"
            )
    return datasets


# --------------------------------------------------------------------------- printing


def size(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n / 2**10:.3g} KiB"


def num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if value < 1 else f"{value:.{digits + 1}g}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def grouped(runs_: Sequence[Run], by_depth: bool) -> list[list[Run]]:
    """One group per run, or per dataset and depth (variants and seeds alike)."""
    if not by_depth:
        return [[r] for r in runs_]
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs_:
        groups.setdefault((r.dataset, r.depth), []).append(r)
    return list(groups.values())


def _who(group: Sequence[Run], by_depth: bool) -> list[str]:
    r = group[0]
    if not by_depth:
        return [r.dataset, r.variant, r.depth, str(r.seed)]
    variants, seeds = len({x.variant for x in group}), len({x.seed for x in group})
    plural = "s" if seeds > 1 else ""
    return [r.dataset, r.depth, f"{len(group)} ({variants} variants x {seeds} seed{plural})"]


def _who_header(by_depth: bool) -> list[str]:
    return ["dataset", "depth", "runs"] if by_depth else ["dataset", "variant", "depth", "seed"]


def _largest(group: Sequence[Run]) -> Run:
    """The run with the most parameters (Admin's omegas): each figure per run."""
    return max(group, key=lambda r: r.params)


def runs_table(runs_: Sequence[Run], hw: Hardware, by_depth: bool = False) -> str:
    rows = []
    for group in grouped(runs_, by_depth):
        r = _largest(group)
        p = r.plan
        rows.append([
            *_who(group, by_depth),
            f"{p.gpus}x{p.nodes}" if p.world else "CPU", f"{r.params / 1e6:.1f}",
            f"{p.flops_per_token / 1e9:.2f}" if p.flops_per_token else "—",
            num(p.tokens / 1e9 if p.tokens else None),
            str(r.epochs), num(p.gpu_hours(hw)), num(p.wall_hours(hw)),
            size(r.sizes.training), size(r.sizes.averaged),
        ])  # fmt: skip
    header = [*_who_header(by_depth), "GPUs x nodes", "params (M)", "GFLOPs per target token",
              "tokens trained (B)", "epochs", f"{hw.name}-hours", "wall hours",
              "training checkpoint", "checkpoint_avg.pt"]  # fmt: skip
    return table(header, rows)


def disk_table(runs_: Sequence[Run], by_depth: bool = False) -> str:
    rows = []
    for group in grouped(runs_, by_depth):
        r = _largest(group)
        rows.append([*_who(group, by_depth), size(r.before.peak), size(r.before.left),
                     size(r.after.peak), size(r.after.left)])  # fmt: skip
    header = [*_who_header(by_depth), "peak before", "left before", "peak now", "left now"]
    return table(header, rows)


def totals_table(groups: Mapping[str, Sequence[Run]], hw: Hardware) -> str:
    rows = []
    for name, group in groups.items():
        hours = [r.plan.gpu_hours(hw) for r in group]
        walls = [w for r in group if (w := r.plan.wall_hours(hw)) is not None]
        rows.append([
            name, str(len(group)),
            num(sum(hours)) if all(h is not None for h in hours) else "—",
            num(max(walls)) if walls else "—",
            size(sum(r.before.peak for r in group)), size(sum(r.after.peak for r in group)),
            size(sum(r.before.left for r in group)), size(sum(r.after.left for r in group)),
        ])  # fmt: skip
    header = ["target", "runs", f"{hw.name}-hours", "longest run, wall hours",
              "peak disk before", "peak disk now", "left at the end before",
              "left at the end now"]  # fmt: skip
    return table(header, rows)


def throughput_table(plans: Sequence[Plan], hw: Hardware) -> str:
    rows = []
    for p in plans:
        rate = hw.rate(p)
        hours = p.gpu_hours(hw)
        rows.append([
            p.dataset, p.depth, p.model.family if p.model else "—",
            f"{p.gpus}x{p.nodes}" if p.world else "CPU",
            f"{p.flops_per_token / 1e9:.2f}" if p.flops_per_token else "—",
            f"{rate.mfu:.1%}" if rate else "—",
            num(rate.tokens_per_second / 1e3 if rate else None), num(hours),
            rate.basis if rate else "no GPU or unknown corpus",
        ])  # fmt: skip
    header = ["dataset", "depth", "model", "GPUs x nodes", "GFLOPs per target token", "MFU",
              "k target tok/s per GPU", f"{hw.name}-hours per run", "rests on"]  # fmt: skip
    return table(header, rows)


def published_table() -> str:
    rows = [[
        p.key, f"{p.model.family} {p.model.encoder_layers}-{p.model.decoder_layers}",
        f"{p.gpus}x{GPUS[p.gpu][0]}", p.precision, p.batch,
        f"{p.tokens_per_second:,.0f}", f"{p.per_gpu:,.0f}",
        f"{p.model.flops_per_token() / 1e9:.2f}", f"{p.mfu:.1%}", p.code,
    ] for p in PUBLISHED]  # fmt: skip
    header = ["figure", "model", "GPUs", "precision", "tokens per GPU x update_freq",
              "target tok/s", "per GPU", "GFLOPs per target token", "MFU", "code"]  # fmt: skip
    return table(header, rows)


def throughput_section(plans: Sequence[Plan], hw: Hardware) -> list[str]:
    return [
        f"## Throughput on {hw.name} (what each estimate rests on)",
        "",
        throughput_table(plans, hw),
        "",
        "## Published training speeds (admin.throughput.PUBLISHED, sources there)",
        "",
        "MFU = counted GFLOPs per target token x target tok/s per GPU / the GPU's dense "
        "fp16/bf16 peak.  A run takes the lowest MFU of the stock-fairseq fp16 figures of "
        "its model on its GPU; else that of the nearest model with figures, carried to the "
        "GPU nearest in peak (tokens/s scaled by the peak ratio): derived.  NVIDIA's fork "
        "(code nvidia) only shows that the MFU carries from a V100 to an A100.  No "
        f"published figure: {'; '.join(missing_figures())}.",
        "",
        published_table(),
        "",
    ]


def saves_table(plans: Sequence[Plan], hw: Hardware) -> str:
    rows = []
    for p in plans:
        rate = p.updates_per_hour(hw)
        limit = p.max_save_interval(hw)
        per_epoch = p.updates_per_epoch()
        eph = p.epochs_per_hour(hw)
        # a kill loses what was trained since the last save: mid-epoch or epoch end
        spans = [60 / eph] if eph else []
        if rate is not None and p.save_interval:
            spans.append(60 * p.save_interval / rate)
        if rate is None:
            verdict = "—"
        else:
            ok = bool(p.save_interval) and p.save_interval <= (limit or 0)
            loss = f"{min(spans):.2g} / {2 * min(spans):.2g} min" if spans else "unknown"
            verdict = "ok" if ok else "NOT BOUNDED" if not p.save_interval else "TOO LONG"
            verdict += f": {loss}"
        short = eph is not None and eph * SAVE_EVERY_MINUTES / 60 >= 1
        rows.append([
            p.dataset, p.depth, f"{p.gpus}x{p.nodes}" if p.world else "CPU",
            num(tps / 1e3 if (tps := p.tokens_per_second(hw)) else None),
            f"{p.tokens_per_update:,}",
            num(per_epoch), num(60 / eph if eph else None), num(eph),
            f"{limit:,}" if limit is not None else "—",
            f"{readable_floor(limit):,}" if limit else "—",
            f"{p.save_interval:,}" if p.save_interval else "none",
            verdict + (" (an epoch < 15 min)" if short else ""),
        ])  # fmt: skip
    header = ["dataset", "depth", "GPUs x nodes", "k target tok/s", "tokens per update (max)",
              "updates per epoch (min)", "min per epoch", "epochs per hour",
              "updates in 15 min", "derived interval", "configured",
              "a kill loses at most: estimate / half speed"]  # fmt: skip
    return table(header, rows)


def report(
    cfg: Mapping[str, Any], target: str, hw: Hardware, resources: Path, by_depth: bool = False
) -> str:
    datasets = target_datasets(cfg, target)
    groups = {name: runs(cfg, name, resources) for name in datasets}
    everything = [r for group in groups.values() for r in group]
    for name, _ in hw.tokens_per_second:
        if name and name not in datasets:
            raise AdminError(f"--tokens-per-second {name}=...: {name!r} is not a dataset of "
                             f"{target} ({', '.join(datasets)})")  # fmt: skip
    plans = [p for n in datasets for p in depth_plans(cfg, n, resources)]
    out = [
        f"# {target}: {len(everything)} runs on {hw.name} ({GPUS[hw.gpu][1]:g} TFLOP/s dense "
        f"fp16/bf16 peak); throughput {hw.describe()}",
        "",
    ]
    for name in datasets:
        facts = data_facts(cfg, name, resources)
        corpus = facts.corpus
        last, upper = cfgmod.average_window(cfg, name)
        out.append(
            f"- {name}: vocabulary {facts.vocab[1]} ({facts.vocab_from}); "
            + (f"{corpus.tokens_per_epoch / 1e6:,.1f}M target tokens per epoch, mean length "
               f"{corpus.mean_length:.3g} ({corpus.source}); " if corpus else
               "corpus size unknown until its data-bin exists; ")
            + f"averaging window: last {last} epochs"
            + (f" up to epoch {upper}" if upper else "")
        )  # fmt: skip
    out.append(f"- checkpoints.keep: {cfg['checkpoints']['keep']}")
    per = " (figures per run; runs at one depth differ by a few thousand parameters)"
    out += ["", "## Runs" + (per if by_depth else ""), "", runs_table(everything, hw, by_depth), ""]
    out += throughput_section(plans, hw)
    out += [
        "## Disk per run",
        "",
        "Before: fairseq's defaults (every epoch checkpoint, checkpoint_best.pt, "
        "checkpoint_last.pt; checkpoint_avg.pt with the optimizer state; nothing deleted). "
        "Now: the averaging window, checkpoint_last.pt and the latest mid-epoch checkpoint "
        "while training (peak: N + 4 checkpoints, the moment after a save), then "
        "checkpoints.keep after scoring.",
        "",
        disk_table(everything, by_depth),
        "",
        "## Totals (peak: every run training at once)",
        "",
        totals_table({**groups, **({target: everything} if len(groups) > 1 else {})}, hw),
        "",
        f"## Mid-epoch saves (save_interval_updates), at {hw.name}",
        "",
        f"A kill loses at most one interval: {SAVE_EVERY_MINUTES:g} minutes at the estimate "
        f"keeps it under {MAX_LOSS_MINUTES:g} at half the estimated throughput.  The presets' "
        f"values are derived at {GPUS[SLOWEST_GPU][0]}, the slowest GPU here; 'derived "
        "interval' is the value at this estimate.",
        "",
        saves_table(plans, hw),
    ]
    return "\n".join(out)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``--configfile`` and ``--config`` as the workflow takes them (admin.status too)."""
    p.add_argument(
        "--configfile",
        nargs="+",
        type=Path,
        default=[],
        help="config files merged over config/config.yaml (as in Snakemake)",
    )
    p.add_argument(
        "--config",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config values (YAML), as Snakemake's --config",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin.budget", description=__doc__.split("\n")[0])
    p.add_argument("target", help=f"{', '.join(NAMED_TARGETS)} or a dataset of the config")
    add_config_arguments(p)
    p.add_argument("--gpu", choices=list(GPUS), default=SLOWEST_GPU)
    p.add_argument(
        "--mfu",
        type=float,
        help="one assumed model FLOP utilisation for every model, instead of the published "
        "figures (admin.throughput); the estimates before the calibration: 0.3",
    )
    p.add_argument(
        "--throughput-json",
        type=Path,
        metavar="FILE",
        help="the JSON of `python -m benchmarks.gpu_throughput --device cuda --json FILE` "
        "(scripts/gpu-check.sh keeps it as throughput.json), measured on the --gpu kind: "
        "its sustained FLOP/s replace the published figures",
    )
    p.add_argument(
        "--tokens-per-second",
        action="append",
        default=[],
        metavar="[DATASET=]N",
        help="a measured target tokens/s per GPU (fairseq-train's wps / GPUs) of the "
        "dataset's runs, or of every run without DATASET=; repeatable; wins over the rest",
    )
    p.add_argument(
        "--by-depth",
        action="store_true",
        help="one row per dataset and depth instead of one per run",
    )
    p.add_argument("--resources", type=Path, default=Path("resources"),
                   help="the workflow's resources folder, for prepared data-bins "
                   "(default: ./resources)")  # fmt: skip
    return p


def parse_tokens_per_second(values: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """``[DATASET=]N`` values as (dataset, N) pairs; dataset "" for every dataset."""
    out = []
    for value in values:
        name, _, number = value.rpartition("=")
        try:
            tokens = float(number)
        except ValueError:
            tokens = math.nan
        if not tokens > 0 or math.isinf(tokens):
            raise AdminError(f"--tokens-per-second {value}: expected [DATASET=]N with N > 0")
        out.append((name, tokens))
    return tuple(out)


def hardware(args: argparse.Namespace) -> Hardware:
    if args.mfu is not None and not 0 < args.mfu <= 1:
        raise AdminError(f"--mfu {args.mfu}: expected a fraction in (0, 1]")
    if args.mfu is not None and args.throughput_json is not None:
        raise AdminError("--mfu and --throughput-json both set the throughput: give one")
    measurement = read_measurement(args.throughput_json) if args.throughput_json else None
    return Hardware(args.gpu, args.mfu, measurement,
                    parse_tokens_per_second(args.tokens_per_second))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hw = hardware(args)
    cfg = load_config(args.configfile, args.config)
    print(report(cfg, args.target, hw, args.resources, args.by_depth))
    return 0


if __name__ == "__main__":
    run_cli(main)
