"""Training throughput of a translation Transformer on a GPU, from published fairseq
training speeds: the FLOP count, the GPUs' peaks, the published figures (each with its
source) and the rule that turns them into target tokens/s for the model of a run.

**Calibration.** Each published figure gives an effective model FLOP utilisation (MFU):
counted FLOPs per target token of its model (:func:`train_flops`) x its target tokens/s
per GPU / the GPU's dense fp16/bf16 peak.  A run's model takes the MFU of the
half-precision figures measured with stock fairseq (:data:`PUBLISHED`, ``code`` ``fairseq``)

1. of its own model family on the same GPU kind; several: the lowest (a budget should
   not come up short);
2. else of the nearest family that has figures (nearest in log width and log FFN width);
3. on the GPU kind with figures nearest in peak: the MFU is carried over, so tokens/s
   scale with the peak FLOP/s.  NVIDIA's fork of fairseq, the one model published on
   both a V100 and an A100, keeps its MFU from one to the other (its rows below).

Steps 2 and 3 make a figure *derived*, and the budget says so beside it.  Its tokens/s
per GPU are then that MFU x the peak / the run's counted FLOPs per target token.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from admin.common.errors import AdminError

# Dense fp16/bf16 tensor-core peak, TFLOP/s (vendor data sheets; SXM parts).
GPUS: dict[str, tuple[str, float]] = {
    "v100": ("V100", 125.0),
    "a100": ("A100", 312.0),
    "h200": ("H200", 989.0),
}


def train_flops(
    sentences: int,
    src_len: int | float,
    tgt_len: int | float,
    *,
    dim: int,
    ffn: int,
    vocab: int,
    encoder_layers: int,
    decoder_layers: int,
) -> float:
    """Counted FLOPs of one training step: 3 x the forward pass (backward = 2x forward),
    2 FLOPs per multiply-add.  For B sentences of S source and T target tokens, width
    d, FFN f, vocabulary V:

        encoder layer: B*S*(8d^2 + 4df) + 4*B*S^2*d
        decoder layer: B*T*(12d^2 + 4df) + 4*B*S*d^2 + 4*B*T^2*d + 4*B*T*S*d
        output projection: 2*B*T*d*V

    (projections, attention scores and their weighted sums; the decoder's cross
    attention projects the S encoder states to keys and values).  Embedding lookups,
    LayerNorm, softmax, dropout and the optimizer are not counted: a few percent."""
    b, s, t, d, f = sentences, src_len, tgt_len, dim, ffn
    encoder = b * s * (8 * d * d + 4 * d * f) + 4 * b * s * s * d
    decoder = (
        b * t * (12 * d * d + 4 * d * f) + 4 * b * s * d * d + 4 * b * t * t * d + 4 * b * t * s * d
    )
    forward = encoder_layers * encoder + decoder_layers * decoder + 2 * b * t * d * vocab
    return 3.0 * forward


# (width, FFN width) of fairseq's presets: what sets a model's MFU besides its depth.
FAMILIES: dict[tuple[int, int], str] = {
    (512, 1024): "transformer_iwslt_de_en",
    (512, 2048): "transformer_wmt_en_de",
    (1024, 4096): "transformer_wmt_en_de_big",
}


@dataclass(frozen=True)
class Model:
    """What fixes the counted FLOPs per target token."""

    dim: int
    ffn: int
    encoder_layers: int
    decoder_layers: int
    vocab: int
    length: float  # source length = target length, tokens

    @property
    def family(self) -> str:
        return FAMILIES.get((self.dim, self.ffn), f"width {self.dim}, FFN {self.ffn}")

    def flops_per_token(self) -> float:
        return train_flops(1, self.length, self.length, dim=self.dim, ffn=self.ffn,
                           vocab=self.vocab, encoder_layers=self.encoder_layers,
                           decoder_layers=self.decoder_layers) / self.length  # fmt: skip


def peak(gpu: str) -> float:
    """Dense fp16/bf16 peak of a GPU kind, FLOP/s."""
    return GPUS[gpu][1] * 1e12


@dataclass(frozen=True)
class Published:
    """One published training speed.  ``tokens_per_second``: target tokens/s of all
    ``gpus`` together, as fairseq's ``wps`` (and NVIDIA's ``tokens/s``) count them."""

    key: str
    model: Model
    gpu: str
    gpus: int
    precision: str  # fp16 (fairseq --fp16, NVIDIA's AMP) or fp32
    batch: str  # tokens per GPU x update_freq, as published
    tokens_per_second: float
    code: str  # "fairseq": stock fairseq; "nvidia": NVIDIA's optimised fork
    quote: str
    source: str
    assumed: str = ""  # inputs of the FLOP count the source does not state

    @property
    def per_gpu(self) -> float:
        return self.tokens_per_second / self.gpus

    @property
    def mfu(self) -> float:
        return self.model.flops_per_token() * self.per_gpu / peak(self.gpu)


_BASE = {"dim": 512, "ffn": 2048, "encoder_layers": 6, "decoder_layers": 6}
_BIG = {"dim": 1024, "ffn": 4096, "encoder_layers": 6, "decoder_layers": 6}
_NVIDIA = (
    "https://github.com/NVIDIA/DeepLearningExamples/blob/"
    "d666f14553125df590224ac11f12ba43fffbf1dc/PyTorch/Translation/Transformer/README.md"
)
_NVIDIA_MODEL = Model(**_BIG, vocab=33712, length=30)
_NVIDIA_ASSUMED = ("vocabulary 33,708 + 4 special symbols (README); mean length 30 "
                   "(WMT'14 En-De, as admin.budget's corpus table)")  # fmt: skip
_NVIDIA_V100 = (
    "'Training performance: NVIDIA DGX-1 (8x V100 16GB)', pytorch-22.06-py3, "
    "'averaged over an entire training epoch', transformer_wmt_en_de_big_t2t; columns GPUs, "
    "batch size / GPU, FP32, mixed precision: "
)
_NVIDIA_A100 = (
    "'Training performance: NVIDIA DGX A100 (8x A100 40GB)', pytorch-22.06-py3, "
    "'averaged over an entire training epoch', transformer_wmt_en_de_big_t2t; columns GPUs, "
    "batch size / GPU, TF32, mixed precision: "
)

# Published training speeds of fairseq Transformers.  No figure was found for
# transformer_iwslt_de_en on any GPU, nor for transformer_wmt_en_de on an A100 or for
# any model on an H200 (searched: fairseq's issues, its examples' READMEs, NVIDIA's
# DeepLearningExamples, Transformer-Clinic's recipes and README).
PUBLISHED: tuple[Published, ...] = (
    Published(
        "fairseq#940", Model(**_BASE, vocab=30000, length=30), "v100", 4, "fp16",
        "not stated (advised: --max-tokens 3500-4000)", 160e3, "fairseq",
        "At least 160k wps on 4 x V100 with `--fp16` [...] This is with the "
        "transformer_wmt_en_de architecture and a vocabulary size of 30K, so I have only "
        "61M parameters",
        "https://github.com/facebookresearch/fairseq/issues/940 (myleott, 2019-07-31)",
        "mean length 30 (WMT En-De, as admin.budget's corpus table)",
    ),
    Published(
        "fairseq#940-fp32", Model(**_BASE, vocab=30000, length=30), "v100", 4, "fp32",
        "not stated", 73e3, "fairseq",
        "more than ~73k wps without `--fp16`",
        "https://github.com/facebookresearch/fairseq/issues/940 (myleott, 2019-07-31)",
        "mean length 30 (WMT En-De, as admin.budget's corpus table)",
    ),
    Published(
        "fairseq#233", Model(**_BIG, vocab=40008, length=32), "v100", 128, "fp16",
        "5120 x 1 (wpb 617154 on 128 GPUs)", 1671182, "fairseq",
        '{"epoch": 10, ..., "wps": 1671182, "ups": "2.7", "wpb": 617154, ...} '
        "(transformer_vaswani_wmt_en_de_big, WMT'14 En-Fr, distributed_world_size=128, "
        "fp16=True, max_tokens=5120)",
        "https://github.com/facebookresearch/fairseq/issues/233 (myleott, 2018-07-30; the "
        "Scaling NMT runs were on 16 GB V100s: myleott in "
        "https://github.com/facebookresearch/fairseq/issues/486)",
        "vocabulary 40,008 and mean length 32 (this project's En-Fr preparation; the log "
        "does not show them)",
    ),
    Published(
        "fairseq#2506", Model(**_BIG, vocab=50000, length=30), "v100", 4, "fp16",
        "5000 x 1 (dummy_mt: 30-token sentences)", 57e3, "fairseq",
        "4 x V100 (in principle comparable to a v3-8 TPU) gives 57k wps: "
        "[...] --task dummy_mt --arch transformer_vaswani_wmt_en_de_big [...] "
        "--max-tokens 5000 [...] --fp16",
        "https://github.com/facebookresearch/fairseq/issues/2506 (myleott, 2020-08-31)",
        "dummy_mt's defaults: 49,996 words + 4 special symbols, 30 tokens per sentence "
        "(fairseq/benchmark/dummy_mt.py)",
    ),
    Published("nvidia-1xV100", _NVIDIA_MODEL, "v100", 1, "fp16", "5120 x 1", 32942, "nvidia",
              _NVIDIA_V100 + "'| 1 | 5120/2560 | 8742 | 32942 |'", _NVIDIA, _NVIDIA_ASSUMED),
    Published("nvidia-8xV100", _NVIDIA_MODEL, "v100", 8, "fp16", "5120 x 1", 214656, "nvidia",
              _NVIDIA_V100 + "'| 8 | 5120/2560 | 59316 | 214656 |'", _NVIDIA, _NVIDIA_ASSUMED),
    Published("nvidia-1xA100", _NVIDIA_MODEL, "a100", 1, "fp16", "10240 x 1", 82059, "nvidia",
              _NVIDIA_A100 + "'| 1 | 10240 | 51057 | 82059 |'", _NVIDIA, _NVIDIA_ASSUMED),
    Published("nvidia-8xA100", _NVIDIA_MODEL, "a100", 8, "fp16", "10240 x 1", 551599, "nvidia",
              _NVIDIA_A100 + "'| 8 | 10240 | 347936 | 551599 |'", _NVIDIA, _NVIDIA_ASSUMED),
)  # fmt: skip


@dataclass(frozen=True)
class Rate:
    """The throughput a run is priced at."""

    tokens_per_second: float  # target tokens/s per GPU
    mfu: float  # of the GPU's dense fp16/bf16 peak
    basis: str  # what the figure rests on, printed beside it
    derived: bool = False


def _calibration_rows() -> list[Published]:
    return [p for p in PUBLISHED if p.code == "fairseq" and p.precision == "fp16"]


def _log_distance(a: tuple[int, int], b: tuple[int, int]) -> float:
    return abs(math.log(a[0] / b[0])) + abs(math.log(a[1] / b[1]))


def calibrated(model: Model, gpu: str) -> Rate:
    """The published figure a run's model is priced at on ``gpu`` (the module's rule)."""
    rows = _calibration_rows()
    shape = (model.dim, model.ffn)
    family = min({(p.model.dim, p.model.ffn) for p in rows}, key=lambda s: _log_distance(s, shape))
    rows = [p for p in rows if (p.model.dim, p.model.ffn) == family]
    near = min({p.gpu for p in rows},
               key=lambda g: abs(math.log(GPUS[g][1] / GPUS[gpu][1])))  # fmt: skip
    basis = min((p for p in rows if p.gpu == near), key=lambda p: p.mfu)
    notes = []
    if family != shape:
        notes.append(f"{model.family} has no published figure: MFU of {basis.model.family}")
    if near != gpu:
        notes.append(f"no {basis.model.family} figure on {GPUS[gpu][0]}: MFU carried over "
                     f"from {GPUS[near][0]} (tokens/s x {GPUS[gpu][1] / GPUS[near][1]:.3g}, "
                     "the peak ratio)")  # fmt: skip
    text = (f"{basis.key} ({basis.model.family}, {basis.gpus}x{GPUS[basis.gpu][0]} fp16: "
            f"{basis.per_gpu / 1e3:.1f}k tok/s per GPU, MFU {basis.mfu:.1%})")  # fmt: skip
    if notes:
        text = "derived: " + "; ".join(notes) + f"; {text}"
    return Rate(basis.mfu * peak(gpu) / model.flops_per_token(), basis.mfu, text, bool(notes))


def at_mfu(model: Model, gpu: str, mfu: float) -> Rate:
    """One assumed MFU for every model (``--mfu``)."""
    return Rate(mfu * peak(gpu) / model.flops_per_token(), mfu, f"--mfu {mfu:g} (assumed)")


def at_tokens_per_second(model: Model, gpu: str, tokens: float, source: str) -> Rate:
    """A measured target tokens/s per GPU of this very run's model (``--tokens-per-second``)."""
    return Rate(tokens, model.flops_per_token() * tokens / peak(gpu), f"measured: {source}")


# ---------------------------------------------------------------- benchmarks.gpu_throughput

STOCK_SERIES = "transformer"  # benchmarks.models.STOCK: fairseq's transformer, full step


@dataclass(frozen=True)
class Measurement:
    """``python -m benchmarks.gpu_throughput --device cuda --json FILE``: per depth, the
    counted FLOP/s the stock model sustained (median over rounds, optimizer step
    included).  Its model runs alone on fixed-length random batches (no data loader, no
    padding): an upper bound on what fairseq-train reaches with the same model."""

    path: Path
    flops: dict[int, float]  # layers per stack -> counted FLOP/s of one GPU
    dims: tuple[int, int]

    def rate(self, model: Model, gpu: str) -> Rate:
        depth = (model.encoder_layers + model.decoder_layers) / 2
        layers = min(self.flops, key=lambda n: (abs(n - depth), n))
        sustained = self.flops[layers]
        return Rate(
            sustained / model.flops_per_token(), sustained / peak(gpu),
            f"measured: {self.path} ({STOCK_SERIES} {layers}-{layers}, width "
            f"{self.dims[0]}/{self.dims[1]}: {sustained / 1e12:.1f} TFLOP/s, taken as "
            f"{GPUS[gpu][0]}'s)",
            derived=(model.dim, model.ffn) != self.dims,
        )  # fmt: skip


def read_measurement(path: Path) -> Measurement:
    """The JSON ``benchmarks.gpu_throughput --json`` writes (and scripts/gpu-check.sh
    keeps as ``throughput.json``)."""
    try:
        doc: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        cfg, results = doc["config"], doc["results"]
        tokens_per_step = cfg["sentences"] * cfg["tgt_len"]
        flops = {}
        for layers, series in results.items():
            n = int(layers)
            step = train_flops(cfg["sentences"], cfg["src_len"], cfg["tgt_len"], dim=cfg["dim"],
                               ffn=cfg["ffn"], vocab=cfg["vocab"], encoder_layers=n,
                               decoder_layers=n)  # fmt: skip
            flops[n] = step * statistics.median(series[STOCK_SERIES]) / tokens_per_step
    except (OSError, ValueError, KeyError, TypeError, statistics.StatisticsError) as err:
        raise AdminError(f"--throughput-json {path}: not a benchmarks.gpu_throughput "
                         f"--json file ({type(err).__name__}: {err})") from None  # fmt: skip
    if cfg.get("device") != "cuda":
        raise AdminError(f"--throughput-json {path}: measured on {cfg.get('device')!r}, not cuda")
    if not flops or min(flops.values()) <= 0:
        raise AdminError(f"--throughput-json {path}: no positive throughput")
    return Measurement(Path(path), flops, (cfg["dim"], cfg["ffn"]))


def missing_figures(gpus: Sequence[str] = tuple(GPUS)) -> list[str]:
    """Per preset family, the GPU kinds without a published stock-fairseq fp16 figure."""
    have = {(p.model.family, p.gpu) for p in _calibration_rows()}
    out = []
    for family in FAMILIES.values():
        kinds = [GPUS[g][0] for g in gpus if (family, g) not in have]
        if kinds:
            out.append(f"{family} on {', '.join(kinds)}")
    return out
