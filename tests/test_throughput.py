"""admin.throughput: the published training speeds (each with its source), the MFU each
gives by the counted FLOPs, the calibration rule that prices a model on a GPU kind, and
the measurement file of benchmarks.gpu_throughput that replaces the published figures."""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict
from pathlib import Path

import pytest

from admin import throughput as tp
from admin.common.errors import AdminError

BY_KEY = {p.key: p for p in tp.PUBLISHED}
IWSLT = tp.Model(512, 1024, 6, 6, 10008, 25)  # the paper_iwslt14_de_en preset's model
BASE = tp.Model(512, 2048, 6, 6, 32768, 30)  # paper_wmt14_en_de 6-6
BIG = tp.Model(1024, 4096, 6, 6, 32768, 30)


def test_every_published_figure_names_its_source_and_quotes_it():
    assert len(BY_KEY) == len(tp.PUBLISHED)  # keys are unique
    for p in tp.PUBLISHED:
        assert p.quote.strip() and p.source.startswith("https://github.com/"), p.key
        assert p.gpu in tp.GPUS and p.gpus >= 1 and p.tokens_per_second > 0, p.key
        assert p.precision in ("fp16", "fp32") and p.code in ("fairseq", "nvidia"), p.key
        assert p.batch.strip() and p.model.family in tp.FAMILIES.values(), p.key
        # the figure in the code is the one quoted (160e3 is quoted as "160k")
        quoted = {int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", p.quote)}
        thousands = {int(k) * 1000 for k in re.findall(r"(\d+)k wps", p.quote)}
        assert round(p.tokens_per_second) in quoted | thousands, p.key


def test_a_figures_mfu_is_its_counted_flops_per_gpu_over_the_peak():
    p = BY_KEY["fairseq#940"]  # 160k wps, 4 x V100, transformer_wmt_en_de, 30K vocabulary
    per_token = tp.train_flops(1, 30, 30, dim=512, ffn=2048, vocab=30000, encoder_layers=6,
                               decoder_layers=6) / 30  # fmt: skip
    assert p.per_gpu == 160e3 / 4
    assert p.mfu == pytest.approx(per_token * 160e3 / 4 / 125e12, rel=1e-12)
    assert 0.10 < p.mfu < 0.13  # the "about 12 %", by the counted FLOPs


def test_nvidias_pair_carries_its_mfu_from_a_v100_to_an_a100():
    """The rule's evidence: the one model published on both GPU kinds (same code, same
    precision) runs at the same MFU on each, so tokens/s scale with the peak."""
    for count in (1, 8):
        v100, a100 = BY_KEY[f"nvidia-{count}xV100"], BY_KEY[f"nvidia-{count}xA100"]
        assert v100.model == a100.model
        assert a100.mfu / v100.mfu == pytest.approx(1, abs=0.05)


def test_a_model_with_its_own_figure_takes_the_lowest_mfu_of_them():
    rows = [p for p in tp.PUBLISHED
            if (p.model.dim, p.model.ffn, p.gpu, p.code, p.precision)
            == (1024, 4096, "v100", "fairseq", "fp16")]  # fmt: skip
    assert {p.key for p in rows} == {"fairseq#233", "fairseq#2506"}  # NVIDIA's fork left out
    rate = tp.calibrated(BIG, "v100")
    lowest = min(rows, key=lambda p: p.mfu)
    assert not rate.derived and rate.mfu == lowest.mfu and rate.basis.startswith(lowest.key)
    assert rate.tokens_per_second == pytest.approx(lowest.mfu * 125e12 / BIG.flops_per_token())


def test_without_a_figure_the_nearest_model_and_gpu_are_carried_over():
    base_v100 = tp.calibrated(BASE, "v100")
    assert not base_v100.derived and base_v100.basis.startswith("fairseq#940")
    assert base_v100.mfu == BY_KEY["fairseq#940"].mfu
    for gpu, tflops in (("a100", 312.0), ("h200", 989.0)):  # no base figure on either
        rate = tp.calibrated(BASE, gpu)
        assert rate.derived and "the peak ratio" in rate.basis and "fairseq#940" in rate.basis
        assert rate.mfu == base_v100.mfu
        assert rate.tokens_per_second == pytest.approx(base_v100.tokens_per_second * tflops / 125)
    # IWSLT'14's model has none at all: the base model's MFU (same width, FFN 2048 vs 1024)
    iwslt = tp.calibrated(IWSLT, "v100")
    assert iwslt.derived and "transformer_iwslt_de_en has no published figure" in iwslt.basis
    assert iwslt.mfu == BY_KEY["fairseq#940"].mfu
    assert iwslt.tokens_per_second == pytest.approx(iwslt.mfu * 125e12 / IWSLT.flops_per_token())
    assert "transformer_iwslt_de_en on V100, A100, H200" in tp.missing_figures()


def test_the_assumed_mfu_and_a_measured_rate_override_the_figures():
    assumed = tp.at_mfu(IWSLT, "v100", 0.3)
    assert assumed.tokens_per_second == pytest.approx(0.3 * 125e12 / IWSLT.flops_per_token())
    measured = tp.at_tokens_per_second(IWSLT, "a100", 52000.0, "a log")
    assert measured.tokens_per_second == 52000.0
    assert measured.mfu == pytest.approx(IWSLT.flops_per_token() * 52000 / 312e12)


def gpu_throughput_json(path: Path, results: dict[int, dict[str, list[float]]],
                        device: str = "cuda") -> Path:  # fmt: skip
    """A file in the form `benchmarks.gpu_throughput --json` writes: its own Config."""
    from benchmarks.gpu_throughput import Config

    doc = {"config": asdict(Config(device=device)), "results": results}
    path.write_text(json.dumps(doc, indent=2))
    return path


def test_a_gpu_throughput_measurement_prices_each_model_at_its_sustained_flops(tmp_path):
    from benchmarks.gpu_throughput import Config, train_flops

    samples = {6: [200e3, 210e3, 190e3], 18: [90e3, 80e3, 85e3]}
    results = {n: {"transformer": s, "admin": [1.0, 1.0, 1.0]} for n, s in samples.items()}
    m = tp.read_measurement(gpu_throughput_json(tmp_path / "t.json", results))
    cfg = Config()
    for layers, values in samples.items():
        tokens_per_step = cfg.sentences * cfg.tgt_len
        flops = train_flops(cfg, layers) * statistics.median(values) / tokens_per_step
        assert m.flops[layers] == pytest.approx(flops)
    deep = tp.Model(512, 2048, 18, 18, 32768, 30)
    rate = m.rate(deep, "h200")  # 18 layers: the 18-layer measurement
    assert rate.tokens_per_second == pytest.approx(m.flops[18] / deep.flops_per_token())
    assert rate.mfu == pytest.approx(m.flops[18] / 989e12) and not rate.derived
    iwslt = m.rate(IWSLT, "h200")  # 6 layers, another FFN width: flagged
    assert iwslt.derived and iwslt.tokens_per_second == pytest.approx(
        m.flops[6] / IWSLT.flops_per_token())  # fmt: skip


def test_a_measurement_file_that_is_not_a_gpus_is_refused(tmp_path):
    with pytest.raises(AdminError, match="not cuda"):
        tp.read_measurement(gpu_throughput_json(tmp_path / "cpu.json", {1: {"transformer": [1.0]}},
                                                device="cpu"))  # fmt: skip
    (tmp_path / "other.json").write_text(json.dumps({"results": {}}))
    with pytest.raises(AdminError, match="not a benchmarks.gpu_throughput"):
        tp.read_measurement(tmp_path / "other.json")
    with pytest.raises(AdminError, match="no positive"):
        tp.read_measurement(gpu_throughput_json(tmp_path / "z.json", {6: {"transformer": [0.0]}}))
