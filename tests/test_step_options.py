"""The options the workflow's rules pass to the steps (admin.common.step_options), from the
project's real configuration (config/config.yaml and the three paper presets), loaded and
validated as workflow/rules/common.smk loads it, with small overrides."""

from __future__ import annotations

import json
from typing import Any

import pytest

from admin.common import config as cfgmod
from admin.common import step_options as so
from admin.common.errors import AdminError
from tests.workflow_support import project_config


def _load(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The workflow's configuration with ``overrides`` as --config would give them."""
    cfg = project_config(overrides)
    return cfgmod.rehearse(cfg) if cfg["rehearsal"] else cfg


@pytest.fixture(scope="module")
def cfg() -> dict[str, Any]:
    return _load()


@pytest.fixture(scope="module")
def rehearsal() -> dict[str, Any]:
    return _load({"rehearsal": True})


# --------------------------------------------------------------------------- data


def test_demo_data_options(cfg):
    assert so.source(cfg, "demo") == "demo"
    assert so.languages(cfg, "demo") == ("xs", "xt")
    assert so.corpus_options(cfg, "demo") == [
        "--seed", "1", "--train", "8000", "--valid", "200", "--test", "1000"
    ]  # fmt: skip
    assert so.tokenize_options(cfg, "demo") == []  # every Moses option is off in the demo
    assert so.bpe_options(cfg, "demo") == ["--merges", "2000"]


def test_registry_data_options(cfg):
    assert so.languages(cfg, "iwslt14_de_en") == ("de", "en")
    assert so.languages(cfg, "wmt14_en_fr") == ("en", "fr")
    # no bpe_merges in the presets: admin.data.bpe follows the registry's recipe
    assert so.bpe_options(cfg, "wmt14_en_de") == ["--dataset", "wmt14_en_de"]
    assert so.archive_names(cfg, "iwslt14_de_en") == ["de-en.tgz"]
    assert so.archive_names(cfg, "wmt14_en_de") == [
        "training-parallel-europarl-v7.tgz", "training-parallel-commoncrawl.tgz",
        "training-parallel-nc-v12.tgz", "dev.tgz", "test-full.tgz",
    ]  # fmt: skip
    assert sorted(so.datasets_by_source(cfg, demo=True)) == ["demo"]
    assert sorted(so.datasets_by_source(cfg, demo=False)) == [
        "iwslt14_de_en", "multi30k_de_en", "wmt14_en_de", "wmt14_en_fr"
    ]  # fmt: skip


def test_corpus_and_tokenize_overrides():
    cfg = _load({"experiments": {"demo": {"data": {
        "corpus": {"seed": 7, "train": 100},
        "tokenize": {"lowercase": True, "normalize_punct": True, "aggressive": True,
                     "clean_train": [1, 80, 1.5]},
    }}}})  # fmt: skip
    # what the override leaves out (valid, test) stays the config's
    assert so.corpus_options(cfg, "demo") == [
        "--seed", "7", "--train", "100", "--valid", "200", "--test", "1000"
    ]  # fmt: skip
    assert so.tokenize_options(cfg, "demo") == [
        "--lowercase", "--normalize-punct", "--aggressive", "--clean-train", "1", "80", "1.5"
    ]  # fmt: skip
    # a registry dataset's own merges replace its recipe's
    merges = _load({"experiments": {"wmt14_en_de": {"data": {"bpe_merges": 30000}}}})
    assert so.bpe_options(merges, "wmt14_en_de") == ["--merges", "30000"]


def test_download_options(cfg):
    assert so.download_options(cfg) == ["--lock", "config/checksums.lock.json", "--retries", "3"]
    mirrored = _load({"download": {
        "lock": "my lock.json", "offline_dir": "/srv/off line", "retries": 5,
        "mirrors": ["http://m1/", "https://m2/x"], "mirrors_only": True,
    }})  # fmt: skip
    assert so.download_options(mirrored) == [
        "--lock", "my lock.json", "--retries", "5", "--offline-dir", "/srv/off line",
        "--mirror", "http://m1/", "--mirror", "https://m2/x", "--mirrors-only",
    ]  # fmt: skip
    offline = _load({"download": {"offline_dir": "/srv/archives"}})
    assert so.download_options(offline) == [
        "--lock", "config/checksums.lock.json", "--retries", "3",
        "--offline-dir", "/srv/archives",
    ]  # fmt: skip


# --------------------------------------------------------------------------- jobs and runs


def test_device_and_rehearsal_flag(cfg, rehearsal):
    assert (so.device(cfg, 0), so.device(cfg, 1), so.device(cfg, 8)) == ("cpu", "cuda", "cuda")
    assert so.rehearsal_flag(cfg) == []
    # a rehearsal decides on the node (rehearsal_settings.device defaults to auto)
    assert (so.device(rehearsal, 0), so.device(rehearsal, 1)) == ("auto", "auto")
    assert so.rehearsal_flag(rehearsal) == ["--rehearsal"]
    on_cpu = _load({"rehearsal": True, "rehearsal_settings": {"device": "cpu"}})
    assert (so.device(on_cpu, 0), so.device(on_cpu, 1)) == ("cpu", "cuda")


def test_averaging_window(cfg, rehearsal):
    assert so.average_options(cfg, "demo") == ["--last", "1"]
    assert so.kept_window_options(cfg, "demo") == ["--average-last", "1"]
    assert so.average_options(cfg, "iwslt14_de_en") == ["--last", "10", "--upper-bound", "90"]
    assert so.average_options(cfg, "wmt14_en_de") == ["--last", "10", "--upper-bound", "100"]
    assert so.kept_window_options(cfg, "wmt14_en_fr") == [
        "--average-last", "10", "--average-upper-bound", "50"
    ]  # fmt: skip
    # a rehearsal averages its few epochs (rehearsal_settings.epochs = 2), with no bound
    assert so.average_options(rehearsal, "wmt14_en_fr") == ["--last", "2"]
    assert so.kept_window_options(rehearsal, "wmt14_en_fr") == ["--average-last", "2"]


def test_run_values(cfg):
    divergence = so.divergence_settings(cfg, "demo")
    assert json.loads(divergence) == cfg["divergence"]
    assert list(json.loads(divergence)) == sorted(cfg["divergence"])  # stable: keys sorted
    assert so.keep_checkpoints(cfg) == "none"
    assert so.keep_checkpoints(_load({"checkpoints": {"keep": "last"}})) == "last"
    assert so.profile_options("admin", "results/r/profile.json") == [
        "--profile", "results/r/profile.json"
    ]  # fmt: skip
    assert so.profile_options("postln", None) == []
    assert so.run_folders(["results/d/admin/6-6/seed1/scores.json", "r/scores.json"]) == [
        "--run", "results/d/admin/6-6/seed1", "--run", "r"
    ]  # fmt: skip


# --------------------------------------------------------------------------- evaluation


def test_evaluation_demo(cfg):
    assert so.generate_hparams(cfg, "demo") == (
        '{"beam": 4, "lenpen": 1.0, "batch_size": 200, "gen_subset": "test"}'
    )
    assert so.raw_text_folder(cfg, "demo") == "raw"
    assert so.detok_options(cfg, "demo", "resources/demo/raw") == [
        "--ref-raw", "resources/demo/raw/test.xt"
    ]  # fmt: skip
    assert so.scoring_options(cfg, "demo") == []
    lowercased = _load({"experiments": {"demo": {"data": {"tokenize": {"lowercase": True}}}}})
    assert so.detok_options(lowercased, "demo", "raw") == [
        "--ref-raw", "raw/test.xt", "--sacrebleu-lowercase"
    ]  # fmt: skip


def test_evaluation_registry(cfg, rehearsal):
    prepared = "resources/x/prepared"
    assert so.raw_text_folder(cfg, "iwslt14_de_en") == "prepared"
    # IWSLT'14 is lowercased by its recipe: sacreBLEU scores case-insensitively
    assert so.detok_options(cfg, "iwslt14_de_en", prepared) == [
        "--ref-raw", f"{prepared}/test.raw.en", "--sacrebleu-lowercase"
    ]  # fmt: skip
    # WMT'14 is cased; En-De also reports compound-split BLEU (not the paper's), En-Fr not
    assert so.detok_options(cfg, "wmt14_en_de", prepared) == [
        "--ref-raw", f"{prepared}/test.raw.de"
    ]  # fmt: skip
    assert so.scoring_options(cfg, "wmt14_en_de") == ["--compound-split"]
    assert so.scoring_options(cfg, "wmt14_en_fr") == []
    assert so.scoring_options(cfg, "iwslt14_de_en") == []
    assert json.loads(so.generate_hparams(cfg, "wmt14_en_de")) == {
        "beam": 4, "lenpen": 0.6, "batch_size": 128, "gen_subset": "test"
    }  # fmt: skip
    # a rehearsal replaces every dataset's data by the demo corpus, scored as the demo is
    assert so.raw_text_folder(rehearsal, "wmt14_en_de") == "raw"
    assert so.languages(rehearsal, "wmt14_en_de") == ("xs", "xt")
    assert so.detok_options(rehearsal, "iwslt14_de_en", "raw") == ["--ref-raw", "raw/test.xt"]
    assert so.scoring_options(rehearsal, "wmt14_en_de") == ["--compound-split"]
    assert so.bpe_options(rehearsal, "wmt14_en_de") == ["--merges", "200"]
    assert so.corpus_options(rehearsal, "wmt14_en_fr") == [
        "--seed", "1", "--train", "200", "--valid", "20", "--test", "20"
    ]  # fmt: skip


# --------------------------------------------------------------------------- analyses


def test_output_change_options(cfg):
    assert so.batch_options(cfg) == ["--split", "valid", "--max-tokens", "2000"]
    assert so.output_change_options(cfg) == [
        "--split", "valid", "--max-tokens", "2000",
        "--variants", "postln", "preln", "admin", "admin-logn", "deepnet",
        "--depths", "6", "12", "18", "24", "36", "48",
        "--dim", "64", "--ffn-dim", "256", "--heads", "4",
        "--inits", "1", "2", "3", "4", "5", "6", "--draws", "4",
        "--scale", "0.0001", "--dtype", "float32",
    ]  # fmt: skip
    small = _load({"analysis": {
        "batch": {"split": "test", "max_tokens": 500},
        "output_change": {"variants": ["admin"], "depths": [6, 12], "embed_dim": 32,
                          "ffn_embed_dim": 64, "attention_heads": 2, "inits": [1],
                          "draws": 2, "scale": 0.001, "dtype": "float64"},
    }})  # fmt: skip
    assert so.output_change_options(small) == [
        "--split", "test", "--max-tokens", "500", "--variants", "admin", "--depths", "6", "12",
        "--dim", "32", "--ffn-dim", "64", "--heads", "2", "--inits", "1", "--draws", "2",
        "--scale", "0.001", "--dtype", "float64",
    ]  # fmt: skip


def test_dependency_options(cfg):
    seed = cfgmod.dependency_seed(cfg)
    assert seed == 1  # analysis.dependency.seed null: the demo's first matrix seed
    assert so.dependency_options(cfg, seed, "r/profile.json", "r/average.json") == [
        "--split", "valid", "--max-tokens", "2000", "--seed", "1",
        "--profile", "r/profile.json", "--average", "r/average.json",
    ]  # fmt: skip
    # no trained run: the step profiles itself at initialisation
    assert so.dependency_options(cfg, seed, None, None) == [
        "--split", "valid", "--max-tokens", "2000", "--seed", "1"
    ]  # fmt: skip
    assert so.dependency_options(cfg, 3, None, "r/average.json") == [
        "--split", "valid", "--max-tokens", "2000", "--seed", "3", "--average", "r/average.json"
    ]  # fmt: skip
    hparams = so.dependency_hparams(cfg, "demo", "6-6")
    assert json.loads(hparams) == cfgmod.recipe_hparams(cfg, "demo", "6-6")
    assert list(json.loads(hparams))[:2] == ["arch", "encoder_embed_dim"]  # the config's order


def test_a_datasets_divergence_block_overrides_the_global_one():
    own = {"experiments": {"demo": {"divergence": {"plateau_patience": 5, "bigram_margin": None}}},
           "divergence": {"stuck_min_improvement": 0.2}}  # fmt: skip
    cfg = _load(own)
    demo = json.loads(so.divergence_settings(cfg, "demo"))
    iwslt = json.loads(so.divergence_settings(cfg, "iwslt14_de_en"))
    assert demo["plateau_patience"] == 5 and demo["bigram_margin"] is None
    assert demo["stuck_min_improvement"] == iwslt["stuck_min_improvement"] == 0.2
    assert iwslt["plateau_patience"] == 3 and iwslt["bigram_margin"] == 0.0  # the defaults
    assert {k: v for k, v in demo.items() if k not in ("plateau_patience", "bigram_margin")} == {
        k: v for k, v in iwslt.items() if k not in ("plateau_patience", "bigram_margin")
    }
    # The schema names a key that is not a divergence setting.
    with pytest.raises(AdminError, match="patience_plateau"):
        _load({"experiments": {"demo": {"divergence": {"patience_plateau": 5}}}})
    with pytest.raises(AdminError, match="plateau_patience"):
        _load({"experiments": {"demo": {"divergence": {"plateau_patience": 0}}}})
