"""The workflow's configuration: loading, validation, the matrix and per-rule resources.

Snakemake's ``common.smk`` calls these with its ``config``; ``python -m admin.budget``
calls them without Snakemake.  Every error is a :class:`ConfigError` whose message
starts with ``invalid configuration:`` and names the key at fault.  No fairseq or torch
import here: the workflow parses this on every start.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from admin.common.errors import AdminError

# Built-in fallbacks under resources.default.
RESOURCE_FALLBACK: dict[str, int] = {
    "cpus": 1,
    "mem_mb": 2000,
    "runtime": 60,
    "gpus": 0,
    "nodes": 1,
    "cpu_procs": 1,
}


class ConfigError(AdminError):
    """A configuration that cannot run; the message names every bad key."""

    def __init__(self, problems: list[str]):
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


# --------------------------------------------------------------------------- loading


def deep_merge(base: Any, override: Any) -> Any:
    """``override`` on top of ``base``: mappings merge key by key, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    merged = dict(base)
    for key, value in override.items():
        merged[key] = deep_merge(base[key], value) if key in base else value
    return merged


def read_yaml(path: str | Path) -> Any:
    return yaml.load(
        Path(path).read_text(encoding="utf-8"),
        Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader),
    )


def retyped(value: Any) -> Any:
    """--config values arrive as strings (Snakemake reads them with YAML's BaseLoader):
    read each again as YAML, so that seeds='[1111]' gives numbers and variants=null null.
    """
    if isinstance(value, dict):
        return {key: retyped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [retyped(item) for item in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, int | float | bool | type(None)) else value
    return value


def load(
    cfg: Mapping[str, Any],
    *,
    locate: Callable[[str], str | Path],
    schema: str | Path,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole configuration: ``presets`` under ``cfg`` (the config files),
    ``overrides`` (``--config``, retyped) on top; validated against ``schema`` with its
    defaults filled in, then checked for consistency.  ``locate`` turns a preset's path
    (relative to the workflow's repository root) into a readable file."""
    top = deep_merge(dict(cfg), retyped(dict(overrides or {})))
    presets = top.get("presets", [])
    if not isinstance(presets, list):
        raise ConfigError(["presets: expected a list of YAML files"])
    merged: dict[str, Any] = {}
    for preset in presets:
        path = Path(locate(preset))
        if not path.is_file():
            raise ConfigError([f"presets: {preset} does not exist"])
        merged = deep_merge(merged, read_yaml(path) or {})
    merged = copy.deepcopy(deep_merge(merged, top))
    check_schema(merged, read_yaml(schema))
    check_semantics(merged)
    return merged


def _key_path(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line per schema error: the key, the value and what is allowed."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    key = _key_path(error.absolute_path)
    if error.validator == "not" and "propertyNames" in error.schema_path:
        return (
            f"{key}: {error.instance!r} is set by the workflow (from the matrix or by the step), "
            "not by the config"
        )
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{key}: {error.instance!r} is not allowed; allowed values: {allowed}"
    if error.validator == "pattern":
        what = schema.get("description", f"a string matching {error.validator_value}")
        return f"{key}: {error.instance!r} is not valid; expected {what}"
    if error.validator == "propertyNames":
        # jsonschema reports the bad name in the context errors
        inner = error.context[0] if error.context else error
        inner_schema = inner.schema if isinstance(inner.schema, dict) else {}
        if inner.validator == "not":
            return f"{key}: {inner.instance!r} is set by the workflow, not by the config"
        if inner.validator == "enum":
            allowed = ", ".join(map(str, inner.validator_value))
            return f"{key}: key {inner.instance!r} is not allowed; allowed keys: {allowed}"
        what = inner_schema.get("description", inner.message)
        return f"{key}: key {inner.instance!r} is not valid; expected {what}"
    if error.validator == "additionalProperties" and isinstance(schema.get("properties"), dict):
        allowed = ", ".join(schema["properties"])
        return f"{key}: {error.message}; allowed keys: {allowed}"
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        what = schema.get("description", "")
        return f"{key}: {error.message}" + (f" ({what})" if what else "")
    return f"{key}: {error.message}"


def _with_defaults(validator_class: Any) -> Any:
    """A validator that fills in the schema's defaults (as snakemake.utils.validate does)."""
    properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, props: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def check_schema(cfg: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """JSON-schema validation of the whole config (in place: defaults are filled in)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError([_describe(e) for e in errors])
    _with_defaults(jsonschema.Draft202012Validator)(schema).validate(cfg)


def check_semantics(cfg: Mapping[str, Any]) -> None:
    problems = []
    experiments = cfg["experiments"]
    for i, name in enumerate(cfg["datasets"]):
        if name not in experiments:
            problems.append(
                f"datasets[{i}]: dataset {name!r} is not defined under experiments; "
                f"defined datasets: {', '.join(sorted(experiments))}"
            )
    for name, exp in experiments.items():
        data = exp["data"]
        if data["source"] == "demo" and not data.get("bpe_merges"):
            problems.append(f"experiments.{name}.data.bpe_merges: required for source 'demo'")
        if data["source"] != "demo" and (data.get("corpus") or data.get("tokenize")):
            problems.append(
                f"experiments.{name}.data: corpus and tokenize apply to source 'demo' only"
            )
    if problems:
        raise ConfigError(problems)


# --------------------------------------------------------------------------- matrix


def experiment(cfg: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    return cfg["experiments"][dataset]


def matrix(cfg: Mapping[str, Any], dataset: str) -> tuple[list[str], list[str], list[int]]:
    """(variants, depths, seeds) of a dataset; the top-level keys replace the preset's."""
    own = experiment(cfg, dataset)["matrix"]

    def pick(key: str) -> list[Any]:
        return cfg.get(key) or own[key]

    return pick("variants"), pick("depths"), [int(s) for s in pick("seeds")]


def cells(cfg: Mapping[str, Any], dataset: str) -> list[tuple[str, str, int]]:
    """Every (variant, depth, seed) of a dataset's matrix."""
    variants, depths, seeds = matrix(cfg, dataset)
    return [(v, d, s) for v in variants for d in depths for s in seeds]


def by_depth(cfg: Mapping[str, Any], dataset: str, depth: str) -> dict[str, Any]:
    """experiments.<dataset>.by_depth.<depth> (empty if none)."""
    return (experiment(cfg, dataset).get("by_depth") or {}).get(depth) or {}


# --------------------------------------------------------------------------- resources


def lookup_resources(
    cfg: Mapping[str, Any], rule: str, dataset: str | None = None, depth: str | None = None
) -> dict[str, int]:
    """The resources of ``rule``: fallbacks < resources.default < resources.<rule>, then the
    same two levels under experiments.<dataset>, then under its by_depth.<depth>."""
    layers = [cfg.get("resources") or {}]
    if dataset is not None and dataset in cfg["experiments"]:
        layers.append(experiment(cfg, dataset).get("resources") or {})
        if depth is not None:
            layers.append(by_depth(cfg, dataset, depth).get("resources") or {})
    res = dict(RESOURCE_FALLBACK)
    for layer in layers:
        res.update(layer.get("default") or {})
        res.update(layer.get(rule) or {})
    return res


def train_processes(resources: Mapping[str, int]) -> int:
    """Processes per node of a train job: one per GPU, or ``cpu_procs`` on the CPU."""
    return resources["gpus"] or resources["cpu_procs"]


# --------------------------------------------------------------------------- recipes


def recipe_hparams(cfg: Mapping[str, Any], dataset: str, depth: str) -> dict[str, Any]:
    """The dataset's fairseq options with the depth's overrides.  The steps add the
    layer counts, the seed, the variant's flags and the paths."""
    overrides = by_depth(cfg, dataset, depth).get("hparams") or {}
    return deep_merge(copy.deepcopy(experiment(cfg, dataset)["hparams"]), overrides)


def profile_hparams(cfg: Mapping[str, Any], dataset: str, depth: str) -> dict[str, Any]:
    """Admin's profiling run: the recipe with ``profile_hparams`` on top."""
    hp = recipe_hparams(cfg, dataset, depth)
    hp.update(experiment(cfg, dataset).get("profile_hparams") or {})
    return hp


def profile_seed(cfg: Mapping[str, Any], dataset: str, seed: int) -> int:
    """The seed whose profile an Admin run of ``seed`` trains from: its own, or, with
    ``profiling.per: depth`` (the paper presets, as Transformer-Clinic ran them), the
    dataset's one profiling seed, shared by every seed of a depth."""
    profiling = experiment(cfg, dataset).get("profiling") or {}
    if profiling.get("per", "run") == "depth":
        return int(profiling["seed"])
    return int(seed)


def batch_world(cfg: Mapping[str, Any], dataset: str, depth: str) -> int:
    """The process count the recipe's ``update_freq`` assumes: ``batch_gpus`` (per depth,
    then per dataset), or else the train job's own world size (nodes x processes)."""
    want = by_depth(cfg, dataset, depth).get("batch_gpus")
    want = want or experiment(cfg, dataset).get("batch_gpus")
    if want:
        return int(want)
    res = lookup_resources(cfg, "train", dataset, depth)
    return res["nodes"] * train_processes(res)


def average_window(cfg: Mapping[str, Any], dataset: str) -> tuple[int, int | None]:
    """(last N epochs, upper bound or None) of the dataset's checkpoint averaging."""
    avg = experiment(cfg, dataset)["average"]
    return int(avg["last"]), avg.get("upper_bound")


# --------------------------------------------------------------------------- rehearsal

# Width options a rehearsal shrinks (the depth, the arch preset and everything else stay).
_WIDTHS = {
    "encoder_embed_dim": "embed_dim", "decoder_embed_dim": "embed_dim",
    "encoder_ffn_embed_dim": "ffn_embed_dim", "decoder_ffn_embed_dim": "ffn_embed_dim",
    "encoder_attention_heads": "attention_heads", "decoder_attention_heads": "attention_heads",
}  # fmt: skip


def rehearse(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration of a rehearsal: the same datasets, matrix, rules, launchers and
    SLURM requests (resources), with every dataset's data replaced by a small sample of
    the embedded corpus, its models narrowed (same depths and arch), its training cut to
    a few updates per epoch for a few epochs, all of which its averaging reads, and its
    decoding small.  Failing to train is not judged (a few updates never leave the
    unigram plateau, let alone beat a bigram); non-finite losses and overflow storms
    still are."""
    settings = cfg["rehearsal_settings"]
    out = copy.deepcopy(dict(cfg))
    for exp in out["experiments"].values():
        # as many epochs as the averaging reads, at most settings["epochs"]
        last = min(int(exp["average"]["last"]), settings["epochs"])
        exp["data"] = {
            "source": "demo",
            "corpus": {"seed": 1, **settings["corpus"]},
            "tokenize": {
                "lowercase": False,
                "normalize_punct": False,
                "aggressive": False,
                "clean_train": None,
            },  # fmt: skip
            "bpe_merges": settings["bpe_merges"],
        }
        narrow = {opt: settings["model"][key] for opt, key in _WIDTHS.items()}
        short = {"max_tokens": settings["max_tokens"], "max_epoch": last, "max_update": None,
                 "stop_min_lr": None, "update_freq": 1,
                 "save_interval_updates": settings["save_interval_updates"],
                 "warmup_updates": settings["warmup_updates"], "log_interval": 1}  # fmt: skip
        exp["hparams"] = {**exp["hparams"], **narrow, **short}
        for depth in (exp.get("by_depth") or {}).values():
            if depth.get("hparams"):
                depth["hparams"] = {**depth["hparams"], **narrow, **short}
            depth.pop("batch_gpus", None)
        exp.pop("batch_gpus", None)  # update_freq 1 on whatever processes run it
        exp["average"] = {"last": last, "upper_bound": None}
        exp["generate"] = {**exp["generate"], "beam": 2, "batch_size": settings["corpus"]["test"]}
        exp.pop("profile_hparams", None)
        # the training rules are off in a rehearsal, whatever a dataset's own block says
        own = {k: v for k, v in (exp.get("divergence") or {}).items()
               if k not in ("unigram_margin", "bigram_margin")}  # fmt: skip
        exp["divergence"] = own
        if settings["device"] == "cpu":
            for layer in [exp, *(exp.get("by_depth") or {}).values()]:
                _gpus_as_cpu_processes(layer.get("resources") or {})
    if settings["device"] == "cpu":
        _gpus_as_cpu_processes(out.get("resources") or {})
    out["divergence"] = {**out.get("divergence", {}), "unigram_margin": None, "bigram_margin": None}
    return out


def _gpus_as_cpu_processes(resources: dict[str, Any]) -> None:
    """A cluster without GPUs: every job asks for none, and a train job runs its GPUs per
    node as CPU processes per node."""
    for rule, res in resources.items():
        if res.get("gpus"):
            if rule == "train":
                res["cpu_procs"] = res["gpus"]
            res["gpus"] = 0


# --------------------------------------------------------------------------- analyses


def analysis_dataset(cfg: Mapping[str, Any]) -> str:
    """analysis.dataset, checked when an analysis is planned (not at parse time: a preset
    alone may not define the demo)."""
    dataset = cfg["analysis"]["dataset"]
    if dataset not in cfg["experiments"]:
        raise ConfigError(
            [
                f"analysis.dataset: {dataset!r} is not defined under experiments; "
                f"defined datasets: {', '.join(sorted(cfg['experiments']))}"
            ]
        )
    return dataset


def dependency_depths(cfg: Mapping[str, Any]) -> list[str]:
    """analysis.dependency.depths, or the analysis dataset's matrix depths."""
    return cfg["analysis"]["dependency"]["depths"] or matrix(cfg, analysis_dataset(cfg))[1]


def dependency_seed(cfg: Mapping[str, Any]) -> int:
    seed = cfg["analysis"]["dependency"]["seed"]
    return matrix(cfg, analysis_dataset(cfg))[2][0] if seed is None else int(seed)
