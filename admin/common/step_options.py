"""The command-line options and values the workflow's rules pass to the steps.

Each function takes the validated configuration (:func:`admin.common.config.load`) and
plain strings (a dataset name, a variant, a depth, a path) and returns what a rule's
``params`` hold: an argv list (``list[str]``, quoted by the rule's ``{params.x:q}``) or
a single value.  ``workflow/rules/common.smk`` adapts them to Snakemake (wildcards,
``input`` objects, output prefixes, ``WorkflowError``); the logic lives here, where it is
unit-tested (tests/test_step_options.py).  No Snakemake, fairseq or torch import: the
workflow parses this on every start.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from admin.common import config as admin_config
from admin.common.variants import needs_profile
from admin.data.registry import DATASETS as REGISTRY

# --------------------------------------------------------------------------- data


def source(cfg: Mapping[str, Any], dataset: str) -> str:
    """The dataset's data source: ``demo`` or a name of :mod:`admin.data.registry`."""
    return admin_config.experiment(cfg, dataset)["data"]["source"]


def languages(cfg: Mapping[str, Any], dataset: str) -> tuple[str, str]:
    """(source, target) language codes; the demo's synthetic pair is xs-xt."""
    if source(cfg, dataset) == "demo":
        return "xs", "xt"
    entry = REGISTRY[source(cfg, dataset)]
    return entry.src, entry.tgt


def datasets_by_source(cfg: Mapping[str, Any], demo: bool) -> list[str]:
    """The datasets built from the embedded demo corpus (``demo``) or from the registry."""
    return [n for n, e in cfg["experiments"].items() if (e["data"]["source"] == "demo") == demo]


def archive_names(cfg: Mapping[str, Any], dataset: str) -> list[str]:
    """The file names of a registry dataset's archives (the download rule's outputs)."""
    return [archive.filename for archive in REGISTRY[source(cfg, dataset)].archives]


def download_options(cfg: Mapping[str, Any]) -> list[str]:
    """admin.data.download's options from ``download``: lock file, retries, offline copy,
    mirrors."""
    opts = cfg["download"]
    argv = ["--lock", opts["lock"], "--retries", str(opts["retries"])]
    if opts.get("offline_dir"):
        argv += ["--offline-dir", opts["offline_dir"]]
    for mirror in opts.get("mirrors", []):
        argv += ["--mirror", mirror]
    if opts.get("mirrors_only"):
        argv.append("--mirrors-only")
    return argv


def corpus_options(cfg: Mapping[str, Any], dataset: str) -> list[str]:
    """admin.data.demo_corpus's options from ``data.corpus`` (the demo's synthetic corpus)."""
    corpus = admin_config.experiment(cfg, dataset)["data"].get("corpus") or {}
    return [
        "--seed", str(corpus.get("seed", 1)),
        "--train", str(corpus.get("train", 20000)),
        "--valid", str(corpus.get("valid", 1000)),
        "--test", str(corpus.get("test", 1000)),
    ]  # fmt: skip


def tokenize_options(cfg: Mapping[str, Any], dataset: str) -> list[str]:
    """admin.data.tokenize's options from ``data.tokenize`` (the demo's Moses steps)."""
    tok = admin_config.experiment(cfg, dataset)["data"].get("tokenize") or {}
    argv = []
    for key, flag in (
        ("lowercase", "--lowercase"),
        ("normalize_punct", "--normalize-punct"),
        ("aggressive", "--aggressive"),
    ):
        if tok.get(key):
            argv.append(flag)
    if tok.get("clean_train"):
        argv += ["--clean-train", *(str(v) for v in tok["clean_train"])]
    return argv


def bpe_options(cfg: Mapping[str, Any], dataset: str) -> list[str]:
    """admin.data.bpe's options: ``data.bpe_merges`` if set, else the registry's recipe."""
    data = admin_config.experiment(cfg, dataset)["data"]
    if data.get("bpe_merges"):
        return ["--merges", str(data["bpe_merges"])]
    return ["--dataset", data["source"]]


# --------------------------------------------------------------------------- jobs


def device(cfg: Mapping[str, Any], gpus: int) -> str:
    """A job's --device given the GPUs its resources ask for: a rehearsal with device
    ``auto`` decides on the node (admin.common.launch.resolve_device)."""
    if cfg["rehearsal"] and cfg["rehearsal_settings"]["device"] == "auto":
        return "auto"
    return "cuda" if gpus else "cpu"


def rehearsal_flag(cfg: Mapping[str, Any]) -> list[str]:
    return ["--rehearsal"] if cfg["rehearsal"] else []


# --------------------------------------------------------------------------- runs


def average_options(cfg: Mapping[str, Any], dataset: str) -> list[str]:
    """admin.average's averaging window (the epochs checkpoint averaging reads)."""
    last, upper = admin_config.average_window(cfg, dataset)
    return ["--last", str(last)] + (["--upper-bound", str(upper)] if upper else [])


def kept_window_options(cfg: Mapping[str, Any], dataset: str) -> list[str]:
    """The same window for admin.train, which keeps exactly those epoch checkpoints."""
    last, upper = admin_config.average_window(cfg, dataset)
    argv = ["--average-last", str(last)]
    return argv + (["--average-upper-bound", str(upper)] if upper else [])


def divergence_settings(cfg: Mapping[str, Any], dataset: str) -> str:
    """``divergence`` with ``experiments.<dataset>.divergence`` over it, as admin.train's
    --divergence JSON (keys sorted: a stable param)."""
    own = admin_config.experiment(cfg, dataset).get("divergence") or {}
    return json.dumps({**cfg["divergence"], **own}, sort_keys=True)


def keep_checkpoints(cfg: Mapping[str, Any]) -> str:
    return cfg["checkpoints"]["keep"]


def profile_options(variant: str, profile: str | Path | None) -> list[str]:
    """admin.train's --profile: Admin's run reads its profile; no other variant has one
    (``profile`` is then None and not read)."""
    return ["--profile", str(profile)] if needs_profile(variant) else []


# --------------------------------------------------------------------------- evaluation


def generate_hparams(cfg: Mapping[str, Any], dataset: str) -> str:
    """``generate`` as admin.evaluate's --hparams JSON."""
    return json.dumps(admin_config.experiment(cfg, dataset)["generate"])


def raw_text_folder(cfg: Mapping[str, Any], dataset: str) -> str:
    """The folder under the dataset's resources with the test set's raw references
    (sacreBLEU scores against them): the demo's ``raw`` text, or a registry dataset's
    ``prepared`` folder (test.raw.<tgt>, written by admin.data.prepare from the SGM / XML /
    raw test file)."""
    return "raw" if source(cfg, dataset) == "demo" else "prepared"


def detok_options(cfg: Mapping[str, Any], dataset: str, raw: str | Path) -> list[str]:
    """admin.evaluate's raw reference in folder ``raw`` and whether sacreBLEU lowercases:
    when the recipe lowercased the text (the demo's data.tokenize.lowercase, or the
    registry's ``lowercased``)."""
    tgt = languages(cfg, dataset)[1]
    if source(cfg, dataset) == "demo":
        ref = f"{raw}/test.{tgt}"
        tok = admin_config.experiment(cfg, dataset)["data"].get("tokenize") or {}
        lowercased = bool(tok.get("lowercase"))
    else:
        ref = f"{raw}/test.raw.{tgt}"
        lowercased = REGISTRY[source(cfg, dataset)].lowercased
    return ["--ref-raw", ref] + (["--sacrebleu-lowercase"] if lowercased else [])


def scoring_options(cfg: Mapping[str, Any], dataset: str) -> list[str]:
    """``scoring.compound_split``: also BLEU with compounds split (``##AT##``), the
    convention of other En-De papers; the Admin paper's number (Transformer-Clinic's
    ``eval_wmt_en-de.sh``) does not split them, and the table compares that one."""
    scoring = admin_config.experiment(cfg, dataset).get("scoring") or {}
    return ["--compound-split"] if scoring.get("compound_split") else []


# --------------------------------------------------------------------------- report


def run_folders(paths: Iterable[str | Path]) -> list[str]:
    """The run folders of files inside them, as --run arguments."""
    argv = []
    for path in paths:
        argv += ["--run", str(Path(path).parent)]
    return argv


# --------------------------------------------------------------------------- analyses


def batch_options(cfg: Mapping[str, Any]) -> list[str]:
    """The analyses' batch: ``analysis.batch`` (split and max tokens)."""
    batch = cfg["analysis"]["batch"]
    return ["--split", batch["split"], "--max-tokens", str(batch["max_tokens"])]


def output_change_options(cfg: Mapping[str, Any]) -> list[str]:
    """admin.analysis.output_change's options from ``analysis.output_change``."""
    opts = cfg["analysis"]["output_change"]
    return [
        *batch_options(cfg),
        "--variants", *opts["variants"],
        "--depths", *(str(d) for d in opts["depths"]),
        "--dim", str(opts["embed_dim"]),
        "--ffn-dim", str(opts["ffn_embed_dim"]),
        "--heads", str(opts["attention_heads"]),
        "--inits", *(str(s) for s in opts["inits"]),
        "--draws", str(opts["draws"]),
        "--scale", str(opts["scale"]),
        "--dtype", opts["dtype"],
    ]  # fmt: skip


def dependency_hparams(cfg: Mapping[str, Any], dataset: str, depth: str) -> str:
    """The analysis dataset's recipe at this depth as JSON: the heatmaps show the models it
    trains."""
    return json.dumps(admin_config.recipe_hparams(cfg, dataset, depth))


def dependency_options(
    cfg: Mapping[str, Any],
    seed: int,
    profile: str | Path | None = None,
    average: str | Path | None = None,
) -> list[str]:
    """admin.analysis.dependency's options: the batch, the seed, and a trained run's
    profile and average.json where there is one (None where not: the step then profiles
    itself, or shows initialisation only)."""
    argv = [*batch_options(cfg), "--seed", str(seed)]
    if profile:
        argv += ["--profile", str(profile)]
    if average:
        argv += ["--average", str(average)]
    return argv
