"""admin.budget: the parameter count against fairseq's real models, the checkpoint bytes
against real checkpoints written by fairseq-train, the disk accounting, the presets'
mid-epoch save intervals against the bound, and the CLI on the project's config."""

from __future__ import annotations

import json
import re
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
    kill's loss under 30 minutes at half the estimated throughput on the slowest GPU."""
    hw = budget.Hardware(budget.SLOWEST_GPU, budget.DEFAULT_MFU)
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


def test_compute_estimates_doc_is_the_budget_output(capsys):
    """docs/compute-estimates.md shows what `python -m admin.budget paper_all` prints."""
    doc = (REPO / "docs" / "compute-estimates.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- admin.budget (.+?) -->\n(.*?)<!-- /admin.budget -->", doc, re.S)
    assert blocks, "no generated block in docs/compute-estimates.md"
    for argv, text in blocks:
        out = budget_cli(*argv.split(), capsys=capsys)
        for table in re.findall(r"(?:^\|.*\|\n)+", text, re.M):
            assert table in out + "\n", f"{argv}: a table in the doc is not in the output"


def test_every_named_target_of_the_workflow_is_known_with_its_datasets(paper_config):
    rules = re.findall(
        r"^rule ((?:paper|mini)_\w+):", (REPO / "workflow" / "Snakefile").read_text(), re.M
    )
    assert sorted(rules) == sorted(budget.NAMED_TARGETS)
    assert budget.target_datasets(paper_config, "mini_multi30k_de_en") == ("multi30k_de_en",)
    assert budget.target_datasets(paper_config, "paper_all")[0] == "iwslt14_de_en"
