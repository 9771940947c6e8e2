"""admin.budget: the parameter count against fairseq's real models, the checkpoint bytes
against real checkpoints written by fairseq-train, the disk accounting, the presets'
mid-epoch save intervals against the bound, and the CLI on the project's config."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch

from admin import budget
from admin.average import average
from admin.common.checkpoints import load_checkpoint, tensor_bytes
from admin.common.fairseq_args import to_argv
from admin.common.variants import VARIANTS, fairseq_flags
from tests import steps_support
from tests.conftest import REPO
from tests.plugin_support import fairseq_cli, train_cmd

# The residual variants that change what a model holds (admin = the profiled Admin).
VARIANT_NAMES = ["postln", "preln", "admin", "admin-logn", "deepnet", "rezero"]


@pytest.fixture(scope="session")
def trained_admin_run(tiny_databin, tmp_path_factory):
    return steps_support.trained_admin_run(tiny_databin, tmp_path_factory)


@pytest.fixture(scope="module")
def vocab(tiny_databin) -> int:
    size = budget.dictionary_size(tiny_databin / "dict.en.txt")
    assert size == budget.dictionary_size(tiny_databin / "dict.de.txt")  # joined
    return size


def build_model(databin: Path, hparams: dict[str, Any], depth: str, variant: str, tmp: Path):
    """The model fairseq-train builds for this recipe (Admin profiled first, for real)."""
    from fairseq import options, tasks

    from admin.common.fairseq_command import PLUGIN_DIR, load_plugin

    ProfilingFinished = load_plugin().model.ProfilingFinished  # noqa: N806

    enc, dec = depth.split("-")
    base = [str(databin), "--user-dir", str(PLUGIN_DIR), *to_argv(hparams),
            "--encoder-layers", enc, "--decoder-layers", dec,
            "--cpu", "--max-tokens", "500"]  # fmt: skip

    def parsed(flags: list[str]) -> Any:
        return options.parse_args_and_arch(options.get_training_parser(), [*base, *flags])

    profile = tmp / f"profile-{hparams['arch']}-{depth}.json"
    if VARIANTS[variant][0] == "adaptive" and not profile.exists():
        args = parsed(fairseq_flags(variant, profile, profiling=True))
        with pytest.raises(ProfilingFinished):
            tasks.setup_task(args).build_model(args)
    args = parsed(fairseq_flags(variant, profile))
    return tasks.setup_task(args).build_model(args)


def float_elements(state: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() for v in state.values() if v.is_floating_point())


ARCH_PRESETS = ["admin_transformer_iwslt_de_en", "admin_transformer_wmt_en_de",
                "admin_transformer_wmt_en_de_big", "admin_transformer"]  # fmt: skip


@pytest.mark.parametrize("arch", ARCH_PRESETS)
def test_parameter_count_is_that_of_the_real_models(arch, tiny_databin, vocab, tmp_path):
    """sum(p.numel()) of the plugin's models as fairseq builds them, for every variant,
    at an asymmetric depth (the encoder's and decoder's layers counted apart)."""
    hparams = {"arch": arch, "share_all_embeddings": True}
    for variant in VARIANT_NAMES:
        model = build_model(tiny_databin, hparams, "2-1", variant, tmp_path)
        shape = budget.model_shape(hparams, "2-1", variant, (vocab, vocab))
        assert sum(p.numel() for p in model.parameters()) == budget.parameter_count(shape), (
            arch, variant)  # fmt: skip
        # the state dict: every parameter, the buffers, and the shared embedding's aliases
        expected = (budget.parameter_count(shape) + budget.buffer_count(shape)
                    + budget.shared_aliases(shape))  # fmt: skip
        assert float_elements(model.state_dict()) == expected, (arch, variant)
    assert budget.ARCHS[arch][0] == model.encoder.embed_tokens.embedding_dim
    assert budget.ARCHS[arch][1] == model.encoder.layers[0].fc1.out_features


def test_parameter_count_follows_the_recipe_options(tiny_databin, vocab, tmp_path):
    """Widths, untied embeddings, learned positions, embedding LayerNorm and the
    Pre-LN final norm set by a recipe move the count as they move fairseq's."""
    cases = [
        {"encoder_embed_dim": 64, "decoder_embed_dim": 64, "encoder_ffn_embed_dim": 96,
         "decoder_ffn_embed_dim": 160, "share_all_embeddings": True},
        {"share_decoder_input_output_embed": True, "encoder_learned_pos": True,
         "max_source_positions": 300},
        {"layernorm_embedding": True, "decoder_learned_pos": True, "no_decoder_final_norm": True},
    ]  # fmt: skip
    for case in cases:
        hparams = {"arch": "admin_transformer_iwslt_de_en", **case}
        for variant in ("postln", "preln"):
            model = build_model(tiny_databin, hparams, "1-2", variant, tmp_path)
            shape = budget.model_shape(hparams, "1-2", variant, (vocab, vocab))
            assert sum(p.numel() for p in model.parameters()) == budget.parameter_count(shape)
            expected = (budget.parameter_count(shape) + budget.buffer_count(shape)
                        + budget.shared_aliases(shape))  # fmt: skip
            assert float_elements(model.state_dict()) == expected, (case, variant)


def test_options_the_count_does_not_know_are_refused():
    with pytest.raises(budget.AdminError, match="adaptive_softmax_cutoff"):
        budget.model_shape({"arch": "transformer", "adaptive_softmax_cutoff": "5000"}, "6-6",
                           "postln", (100, 100))  # fmt: skip
    with pytest.raises(budget.AdminError, match="knows the presets"):
        budget.model_shape({"arch": "lstm"}, "6-6", "postln", (100, 100))
    with pytest.raises(budget.AdminError, match="joined dictionary"):
        budget.model_shape({"arch": "transformer", "share_all_embeddings": True}, "6-6",
                           "postln", (100, 104))  # fmt: skip


# The file adds the pickle: tensor names and records, the config, the training progress.
PICKLE_OVERHEAD = 160 * 1024


def test_checkpoint_bytes_are_those_fairseq_writes_on_the_cpu(trained_admin_run, vocab,
                                                              tmp_path):  # fmt: skip
    """A float32 CPU run (the steps' trained Admin run): the model once, the shared
    embedding stored once, RAdam's two float32 moments; checkpoint_avg.pt the model."""
    recipe = json.loads((trained_admin_run / "recipe.json").read_text())
    shape = budget.model_shape(recipe["identity"]["hparams"], recipe["depth"],
                               recipe["variant"], (vocab, vocab))  # fmt: skip
    sizes = budget.checkpoint_bytes(shape, tied=True)
    last = trained_admin_run / "checkpoints" / "checkpoint_last.pt"
    state = load_checkpoint(last)
    assert tensor_bytes(state["model"]) == sizes.model
    assert tensor_bytes(state["last_optimizer_state"]) == sizes.optimizer
    # besides: a few scalar tensors in the training progress (fairseq's loss meters)
    assert 0 <= tensor_bytes(state) - sizes.training < 1024
    assert 0 < last.stat().st_size - sizes.training < PICKLE_OVERHEAD

    epochs = sorted((trained_admin_run / "checkpoints").glob("checkpoint[0-9]*.pt"))
    out = tmp_path / "checkpoint_avg.pt"
    average(epochs, out)
    assert 0 < out.stat().st_size - sizes.averaged < PICKLE_OVERHEAD
    assert sizes.training == 3 * sizes.model - 2 * 4 * budget.buffer_count(shape)


def test_half_precision_checkpoints_hold_float32_and_untied_embeddings(tiny_databin, vocab,
                                                                      tmp_path):  # fmt: skip
    """fairseq-train --fp16 on the CPU (runs with --fp16-no-flatten-grads): the model is
    saved as float32 (utils.move_to_cpu upcasts it), the shared embedding once per name,
    and the moments are float32 without master weights: the layout of a GPU run."""
    save = tmp_path / "ckpt"
    flags = ["--max-update", "1", "--fp16", "--fp16-no-flatten-grads", "--disable-validation"]
    fairseq_cli("fairseq-train", *train_cmd(tiny_databin, save, *flags), cwd=tmp_path)
    state = load_checkpoint(save / "checkpoint_last.pt")
    assert {v.dtype for v in state["model"].values()} == {torch.float32}
    hparams = {"arch": "admin_transformer", "encoder_embed_dim": 64, "decoder_embed_dim": 64,
               "encoder_ffn_embed_dim": 128, "decoder_ffn_embed_dim": 128,
               "share_all_embeddings": True}  # fmt: skip
    shape = budget.model_shape(hparams, "3-3", "postln", (vocab, vocab))
    sizes = budget.checkpoint_bytes(shape, tied=False)
    assert tensor_bytes(state["model"]) == sizes.model
    assert tensor_bytes(state["last_optimizer_state"]) == sizes.optimizer
    assert sizes.model - budget.checkpoint_bytes(shape, tied=True).model == 4 * 2 * vocab * 64
    size = (save / "checkpoint_last.pt").stat().st_size
    assert 0 < size - sizes.training < PICKLE_OVERHEAD
    # averaged, the three copies of the shared embedding are stored once again
    from admin.average import average

    average([save / "checkpoint_last.pt"], save / "checkpoint_avg.pt")
    assert sizes.averaged == budget.checkpoint_bytes(shape, tied=True).model
    assert 0 < (save / "checkpoint_avg.pt").stat().st_size - sizes.averaged < PICKLE_OVERHEAD


def test_disk_accounting():
    # a training checkpoint: 300; the averaged one (its copies tied): 80
    sizes = budget.CheckpointBytes(model=100, optimizer=200, averaged=80)
    # 90 epochs, window of 10: the window, the new epoch, best, last and a mid-epoch one
    now = budget.disk_after(sizes, 90, (10, 90), 1000, "none")
    assert (now.peak, now.left) == (14 * 300, 80)
    assert budget.disk_after(sizes, 90, (10, 90), 1000, "last").left == 300 + 80
    assert budget.disk_after(sizes, 90, (10, 90), 1000, "all").left == 12 * 300 + 80
    assert budget.disk_after(sizes, 90, (10, 90), 0, "none").peak == 13 * 300  # no mid-epoch
    assert budget.disk_after(sizes, 3, (10, None), 0, "all").left == 4 * 300 + 80  # short run
    assert budget.disk_after(sizes, 60, (10, 50), 0, "all").left == 11 * 300 + 80
    before = budget.disk_before(sizes, 90)  # 90 epochs, best, last, avg with the optimizer
    assert before.peak == before.left == 93 * 300


def test_flops_count_the_encoder_and_decoder_apart():
    one = dict(dim=1, ffn=1, vocab=1)
    # encoder layer 8+4+4 = 16, decoder layer 12+4+4+4+4 = 28, output 2; training 3x
    assert budget.train_flops(1, 1, 1, **one, encoder_layers=1, decoder_layers=1) == 3 * 46
    assert budget.train_flops(1, 1, 1, **one, encoder_layers=3, decoder_layers=2) == 3 * 106
    base = dict(dim=512, ffn=2048, vocab=40008)
    enc = budget.train_flops(8, 32, 32, **base, encoder_layers=61, decoder_layers=12)
    assert enc - budget.train_flops(8, 32, 32, **base, encoder_layers=60, decoder_layers=12) == (
        3 * 8 * 32 * (8 * 512**2 + 4 * 512 * 2048 + 4 * 32 * 512))  # fmt: skip


def test_vocabulary_estimate_and_readable_intervals():
    assert budget.estimated_vocab(10000) == 10008
    assert budget.estimated_vocab(32764) == 32768
    pairs = {37073: 30000, 11188: 10000, 4560: 4000, 1079: 1000, 268: 250, 1: 1, 9.9: 8}
    assert {v: budget.readable_floor(v) for v in pairs} == pairs
    with pytest.raises(budget.AdminError):
        budget.readable_floor(0.5)


@pytest.fixture(scope="module")
def paper_config() -> dict[str, Any]:
    return budget.load_config()


def test_presets_bound_what_a_kill_loses(paper_config):
    """Every paper preset and depth saves mid-epoch within the interval that keeps a
    kill's loss under 30 minutes at half the estimated throughput on the slowest GPU, at
    its calibrated throughput (published fairseq speeds)."""
    hw = budget.Hardware(budget.SLOWEST_GPU)
    checked = []
    for dataset in budget.NAMED_TARGETS["paper_all"]:
        for p in budget.depth_plans(paper_config, dataset, Path("/nonexistent")):
            limit = p.max_save_interval(hw)
            assert 0 < p.save_interval <= limit, (dataset, p.depth, p.save_interval, limit)
            minutes_at_half_speed = 2 * 60 * p.save_interval / p.updates_per_hour(hw)
            assert minutes_at_half_speed <= budget.MAX_LOSS_MINUTES
            checked.append((dataset, p.depth))
    assert len(checked) == 6  # IWSLT 6-6, En-De 6/12/18, En-Fr 6-6 and 60-12


def test_paper_estimates(paper_config):
    """The documented method on the presets: FLOPs per token, tokens, GPU-hours."""
    hw = budget.Hardware("v100", 0.3)
    runs = {(r.dataset, r.depth): r for r in budget.runs(paper_config, "wmt14_en_fr",
                                                         Path("/nonexistent"))}  # fmt: skip
    deep = runs[("wmt14_en_fr", "60-12")]
    per_token = budget.train_flops(1, 32, 32, dim=512, ffn=2048, vocab=40008,
                                   encoder_layers=60, decoder_layers=12) / 32  # fmt: skip
    assert deep.plan.flops_per_token == per_token
    assert deep.plan.tokens == 50 * 1.1e9 and deep.epochs == 50
    assert deep.plan.gpu_hours(hw) == pytest.approx(per_token * 55e9 / 37.5e12 / 3600)
    assert deep.plan.world == 16 and deep.plan.tokens_per_update == 5000 * 16 * 16
    assert deep.sizes.training == 4 * (3 * deep.params + 2 + 2 * 40008 * 512)


def test_a_run_costs_its_tokens_over_the_calibrated_tokens_per_second(paper_config):
    """IWSLT'14 on a V100: 90 epochs of its corpus at the tokens/s the base model's
    published figure gives (fairseq#940's MFU, carried to the IWSLT model's FLOPs)."""
    run = budget.runs(paper_config, "iwslt14_de_en", Path("/nonexistent"))[0]
    p940 = {p.key: p for p in budget.PUBLISHED}["fairseq#940"]
    mfu = p940.model.flops_per_token() * p940.tokens_per_second / p940.gpus / 125e12
    per_token = budget.train_flops(1, 25, 25, dim=512, ffn=1024, vocab=10008,
                                   encoder_layers=6, decoder_layers=6) / 25  # fmt: skip
    tokens = 90 * 3.9e6
    assert run.plan.tokens == tokens and run.plan.flops_per_token == per_token
    hw = budget.Hardware("v100")
    rate = hw.rate(run.plan)
    assert rate.derived and "fairseq#940" in rate.basis
    assert rate.tokens_per_second == pytest.approx(mfu * 125e12 / per_token)
    assert run.plan.gpu_hours(hw) == pytest.approx(tokens / (mfu * 125e12 / per_token) / 3600)
    # the published MFU is below the old assumption: the hours grow by their ratio
    old = run.plan.gpu_hours(budget.Hardware("v100", 0.3))
    assert run.plan.gpu_hours(hw) / old == pytest.approx(0.3 / mfu)


def budget_cli(*argv: str, capsys) -> str:
    assert budget.main(list(argv)) == 0
    return capsys.readouterr().out


def test_cli_reads_the_config_as_snakemake_does(tmp_path, capsys):
    out = budget_cli("paper_wmt14_en_de", "--config", "depths=[6-6]", "seeds=[1, 2]",
                     capsys=capsys)  # fmt: skip
    rows = re.findall(r"^\| wmt14_en_de \| (\w+) \| (\S+) \| (\d+) \| 4x1 \|", out, re.M)
    assert sorted(rows) == sorted((v, "6-6", s) for v in ("postln", "preln", "admin")
                                  for s in ("1", "2"))  # fmt: skip
    mine = tmp_path / "mine.yaml"
    mine.write_text("checkpoints: {keep: last}\nexperiments:\n  wmt14_en_de:\n"
                    "    resources: {train: {gpus: 8}}\n")  # fmt: skip
    out = budget_cli("paper_wmt14_en_de", "--configfile", str(mine), "--gpu", "h200",
                     capsys=capsys)  # fmt: skip
    assert "checkpoints.keep: last" in out and "| 8x1 |" in out and "H200-hours" in out
    with pytest.raises(budget.AdminError, match="not defined under experiments"):
        budget.main(["paper_nothing"])
    with pytest.raises(budget.AdminError, match="--configfile"):
        budget.main(["demo", "--configfile", str(tmp_path / "missing.yaml")])


def test_cli_reads_a_prepared_data_bin(tiny_databin, tmp_path, capsys):
    (tmp_path / "iwslt14_de_en").mkdir()
    (tmp_path / "iwslt14_de_en" / "data-bin").symlink_to(tiny_databin)
    out = budget_cli("paper_iwslt14_de_en", "--resources", str(tmp_path), capsys=capsys)
    size = budget.dictionary_size(tiny_databin / "dict.en.txt")
    assert f"vocabulary {size} ({tmp_path}/iwslt14_de_en/data-bin/dict.en.txt)" in out
    log = (tiny_databin / "preprocess.log").read_text()
    tokens = re.search(r"\[en\] \S*train\.en: 600 sents, (\d+) tokens", log)[1]
    assert f"{int(tokens) / 1e6:,.1f}M target tokens per epoch" in out


def hours_column(out: str, dataset: str) -> float:
    """The GPU-hours of a dataset in the printed totals table."""
    totals = out.split("## Totals")[1]
    return float(re.search(rf"^\| {dataset} \| \d+ \| ([\d,.]+) \|", totals, re.M)[1]
                 .replace(",", ""))  # fmt: skip


def test_the_report_shows_each_estimate_beside_the_figure_it_rests_on(capsys):
    out = budget_cli("paper_wmt14_en_de", "--config", "depths=[6-6]", capsys=capsys)
    row = re.search(r"^\| wmt14_en_de \| 6-6 \| transformer_wmt_en_de \| 4x1 \| .*$", out, re.M)
    assert row and "| fairseq#940 (transformer_wmt_en_de, 4xV100 fp16" in row[0]
    for p in budget.PUBLISHED:  # every figure, with its MFU
        assert re.search(rf"^\| {re.escape(p.key)} \| .* \| {p.mfu:.1%} \| {p.code} \|$", out,
                         re.M), p.key  # fmt: skip
    assert "throughput per model, from published fairseq training speeds" in out
    a100 = budget_cli("paper_wmt14_en_de", "--config", "depths=[6-6]", "--gpu", "a100",
                      capsys=capsys)  # fmt: skip
    assert "derived: no transformer_wmt_en_de figure on A100" in a100
    # no figure on an A100: the V100's MFU, so the hours shrink by the peak ratio
    ratio = hours_column(out, "wmt14_en_de") / hours_column(a100, "wmt14_en_de")
    assert ratio == pytest.approx(312 / 125, rel=0.01)


def test_a_measured_throughput_replaces_the_published_figures(tmp_path, capsys):
    """--tokens-per-second per dataset or for every run; --throughput-json, a GPU check's
    measurement; --mfu, one assumed MFU; each printed as what the estimate rests on."""
    config = ["--config", "depths=[6-6]"]
    out = budget_cli("paper_all", *config, "--tokens-per-second", "iwslt14_de_en=50000",
                     capsys=capsys)  # fmt: skip
    tokens = 90 * 3.9e6
    assert hours_column(out, "iwslt14_de_en") == pytest.approx(15 * tokens / 50000 / 3600,
                                                               rel=0.01)  # fmt: skip
    assert "| measured: --tokens-per-second 50000 |" in out
    assert out.count("fairseq#940 (transformer_wmt_en_de, 4xV100") >= 2  # the others
    every = budget_cli("paper_wmt14_en_de", *config, "--tokens-per-second", "20000",
                       capsys=capsys)  # fmt: skip
    # 3 runs of 100 epochs of 130M tokens at 4 GPUs x 20000 tokens/s, in GPU-hours
    assert hours_column(every, "wmt14_en_de") == pytest.approx(3 * 100 * 130e6 / 20000 / 3600,
                                                               rel=0.01)  # fmt: skip
    with pytest.raises(budget.AdminError, match="not a dataset of paper_wmt14_en_de"):
        budget.main(["paper_wmt14_en_de", "--tokens-per-second", "iwslt14_de_en=1000"])
    with pytest.raises(budget.AdminError, match="N > 0"):
        budget.main(["paper_wmt14_en_de", "--tokens-per-second", "fast"])

    from benchmarks.gpu_throughput import Config, train_flops

    measured = tmp_path / "throughput.json"
    results = {6: {"transformer": [120e3, 125e3, 130e3]}}
    measured.write_text(json.dumps({"config": asdict(Config()), "results": results}))
    out = budget_cli("paper_iwslt14_de_en", "--throughput-json", str(measured), capsys=capsys)
    cfg = Config()
    sustained = train_flops(cfg, 6) * 125e3 / (cfg.sentences * cfg.tgt_len)
    per_token = budget.train_flops(1, 25, 25, dim=512, ffn=1024, vocab=10008,
                                   encoder_layers=6, decoder_layers=6) / 25  # fmt: skip
    assert hours_column(out, "iwslt14_de_en") == pytest.approx(
        15 * tokens / (sustained / per_token) / 3600, rel=0.01)  # fmt: skip
    assert f"measured: {measured} (transformer 6-6" in out
    with pytest.raises(budget.AdminError, match="give one"):
        budget.main(["paper_iwslt14_de_en", "--throughput-json", str(measured), "--mfu", "0.3"])
    # --mfu still overrides the published figures: the estimates before the calibration
    old = budget_cli("paper_iwslt14_de_en", "--mfu", "0.3", capsys=capsys)
    assert hours_column(old, "iwslt14_de_en") == pytest.approx(
        15 * tokens * per_token / (0.3 * 125e12) / 3600, rel=0.01)  # fmt: skip
    assert "--mfu 30% for every model (assumed)" in old


def test_compute_estimates_doc_is_the_budget_output(capsys):
    """docs/compute-estimates.md shows what `python -m admin.budget paper_all` prints."""
    doc = (REPO / "docs" / "compute-estimates.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- admin.budget (.+?) -->\n(.*?)<!-- /admin.budget -->", doc, re.S)
    assert blocks, "no generated block in docs/compute-estimates.md"
    for argv, text in blocks:
        out = budget_cli(*argv.split(), capsys=capsys)
        for table in re.findall(r"(?:^\|.*\|\n)+", text, re.M):
            assert table in out + "\n", f"{argv}: a table in the doc is not in the output"


def test_the_doc_cites_every_published_figure():
    doc = (REPO / "docs" / "compute-estimates.md").read_text(encoding="utf-8")
    for p in budget.PUBLISHED:
        assert p.key in doc and p.source.split(" ")[0] in doc, p.key


def test_every_named_target_of_the_workflow_is_known_with_its_datasets(paper_config):
    rules = re.findall(
        r"^rule ((?:paper|mini)_\w+):", (REPO / "workflow" / "Snakefile").read_text(), re.M
    )
    assert sorted(rules) == sorted(budget.NAMED_TARGETS)
    assert budget.target_datasets(paper_config, "mini_multi30k_de_en") == ("multi30k_de_en",)
    assert budget.target_datasets(paper_config, "paper_all")[0] == "iwslt14_de_en"
