# Helpers and input functions shared by the rule files.  No rules here.
#
# Parse time stays light: no fairseq or torch import (admin.variants and
# admin.data.registry import neither).

import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError

from admin.data.registry import DATASETS as REGISTRY
from admin.variants import VARIANTS, needs_profile

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
RESULTS = "results"
RESOURCES = "resources"
LOGS = "logs"
BENCHMARKS = f"{LOGS}/benchmarks"
# One run folder (the results layout of DESIGN.md) and its logs, as rule patterns.
RUN = f"{RESULTS}/{{dataset}}/{{variant}}/{{depth}}/seed{{seed}}"
RUN_LOGS = f"{LOGS}/{{dataset}}/{{variant}}/{{depth}}/seed{{seed}}"
RUN_BENCHMARKS = f"{BENCHMARKS}/{{dataset}}/{{variant}}/{{depth}}/seed{{seed}}"

# The interpreter of the steps: the conda environment's with --sdm conda, otherwise the
# one running Snakemake (the project's .venv), whatever "python" is on PATH.
PYTHON = (
    "python"
    if "conda"
    in {str(m).lower() for m in workflow.deployment_settings.deployment_method}
    else sys.executable
)

# Built-in fallbacks under config["resources"]["default"].
RESOURCE_FALLBACK = {
    "cpus": 1,
    "mem_mb": 2000,
    "runtime": 60,
    "gpus": 0,
    "nodes": 1,
    "cpu_procs": 1,
}


# --------------------------------------------------------------------------- config


def deep_merge(base, override):
    """``override`` on top of ``base``: mappings merge key by key, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    merged = dict(base)
    for key, value in override.items():
        merged[key] = deep_merge(base[key], value) if key in base else value
    return merged


def _key_path(path):
    text = ""
    for part in path:
        text += (
            f"[{part}]"
            if isinstance(part, int)
            else (f".{part}" if text else str(part))
        )
    return text or "(top level)"


def _describe(error):
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
            return (
                f"{key}: {inner.instance!r} is set by the workflow, not by the config"
            )
        if inner.validator == "enum":
            allowed = ", ".join(map(str, inner.validator_value))
            return (
                f"{key}: key {inner.instance!r} is not allowed; allowed keys: {allowed}"
            )
        what = inner_schema.get("description", inner.message)
        return f"{key}: key {inner.instance!r} is not valid; expected {what}"
    if error.validator == "additionalProperties" and isinstance(
        schema.get("properties"), dict
    ):
        allowed = ", ".join(schema["properties"])
        return f"{key}: {error.message}; allowed keys: {allowed}"
    if error.validator in (
        "minimum",
        "exclusiveMinimum",
        "maximum",
        "exclusiveMaximum",
    ):
        what = schema.get("description", "")
        return f"{key}: {error.message}" + (f" ({what})" if what else "")
    return f"{key}: {error.message}"


def read_yaml(path):
    return yaml.load(
        Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )


def _with_defaults(validator_class):
    """A validator that fills in the schema's defaults (as snakemake.utils.validate does)."""
    properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub:
                    instance.setdefault(name, sub["default"])
        yield from properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def check_schema(cfg):
    """JSON-schema validation of the whole config; every error names its key."""
    schema = read_yaml(SCHEMA)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path))
    )
    if errors:
        lines = "\n".join(f"  {_describe(e)}" for e in errors)
        raise WorkflowError(f"invalid configuration:\n{lines}")
    _with_defaults(jsonschema.Draft202012Validator)(schema).validate(cfg)


def check_semantics(cfg):
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
            problems.append(
                f"experiments.{name}.data.bpe_merges: required for source 'demo'"
            )
        if data["source"] != "demo" and (data.get("corpus") or data.get("tokenize")):
            problems.append(
                f"experiments.{name}.data: corpus and tokenize apply to source 'demo' only"
            )
    if problems:
        raise WorkflowError(
            "invalid configuration:\n" + "\n".join(f"  {p}" for p in problems)
        )


def retyped(value):
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
        return parsed if isinstance(parsed, (int, float, bool, type(None))) else value
    return value


def load_config(cfg):
    """Merge the presets under ``cfg`` (in place), then check it; bad configs stop here."""
    overrides = retyped(dict(workflow.config_settings.config or {}))  # --config only
    cfg.update(deep_merge(dict(cfg), overrides))
    if not isinstance(cfg.get("presets", []), list):
        raise WorkflowError(
            "invalid configuration:\n  presets: expected a list of YAML files"
        )
    merged = {}
    for preset in cfg.get("presets", []):
        path = Path(workflow.basedir) / preset
        if not path.is_file():
            raise WorkflowError(
                f"invalid configuration:\n  presets: {preset} does not exist"
            )
        merged = deep_merge(merged, read_yaml(path) or {})
    merged = deep_merge(merged, dict(cfg))
    cfg.clear()
    cfg.update(merged)
    check_schema(cfg)
    check_semantics(cfg)


# --------------------------------------------------------------------------- matrix


def experiment(dataset):
    return config["experiments"][dataset]


def matrix(dataset):
    """(variants, depths, seeds) of a dataset; the top-level keys replace the preset's."""
    own = experiment(dataset)["matrix"]
    pick = lambda key: config.get(key) or own[key]
    return pick("variants"), pick("depths"), [int(s) for s in pick("seeds")]


def run_dir(dataset, variant, depth, seed):
    return f"{RESULTS}/{dataset}/{variant}/{depth}/seed{seed}"


def runs(dataset):
    variants, depths, seeds = matrix(dataset)
    return [run_dir(dataset, v, d, s) for v in variants for d in depths for s in seeds]


def dataset_targets(dataset):
    _, depths, _ = matrix(dataset)
    return [
        *(f"{RESULTS}/{dataset}/table.{ext}" for ext in ("md", "csv", "json")),
        f"{RESULTS}/{dataset}/bleu_vs_depth.png",
        *(f"{RESULTS}/{dataset}/curves_{depth}.png" for depth in depths),
    ]


def targets(datasets):
    return [path for dataset in datasets for path in dataset_targets(dataset)]


def alternation(names):
    """A regex that matches exactly one of ``names`` (never anything if empty)."""
    names = sorted(names, key=len, reverse=True)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def datasets_by_source(demo):
    return [
        n
        for n, e in config["experiments"].items()
        if (e["data"]["source"] == "demo") == demo
    ]


# --------------------------------------------------------------------------- data


def source(dataset):
    return experiment(dataset)["data"]["source"]


def languages(dataset):
    if source(dataset) == "demo":
        return "xs", "xt"
    entry = REGISTRY[source(dataset)]
    return entry.src, entry.tgt


def archives(wildcards):
    entry = REGISTRY[source(wildcards.dataset)]
    return [
        f"{RESOURCES}/{wildcards.dataset}/archives/{a.filename}" for a in entry.archives
    ]


def download_options(wildcards):
    opts = config["download"]
    argv = ["--lock", opts["lock"], "--retries", str(opts["retries"])]
    if opts.get("offline_dir"):
        argv += ["--offline-dir", opts["offline_dir"]]
    for mirror in opts.get("mirrors", []):
        argv += ["--mirror", mirror]
    if opts.get("mirrors_only"):
        argv.append("--mirrors-only")
    return argv


def corpus_options(wildcards):
    corpus = experiment(wildcards.dataset)["data"].get("corpus") or {}
    return [
        "--seed", str(corpus.get("seed", 1)),
        "--train", str(corpus.get("train", 20000)),
        "--valid", str(corpus.get("valid", 1000)),
        "--test", str(corpus.get("test", 1000)),
    ]  # fmt: skip


def tokenize_options(wildcards):
    tok = experiment(wildcards.dataset)["data"].get("tokenize") or {}
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


def bpe_options(wildcards):
    data = experiment(wildcards.dataset)["data"]
    if data.get("bpe_merges"):
        return ["--merges", str(data["bpe_merges"])]
    return ["--dataset", data["source"]]


def data_bin(wildcards):
    return f"{RESOURCES}/{wildcards.dataset}/data-bin"


# --------------------------------------------------------------------------- resources


def lookup_resources(rule, wildcards):
    """The resources of ``rule``: fallbacks < resources.default < resources.<rule>, then the
    same two levels under experiments.<dataset>, then under its by_depth.<depth>."""
    layers = [config.get("resources") or {}]
    dataset = getattr(wildcards, "dataset", None)
    if dataset in config["experiments"]:
        exp = experiment(dataset)
        layers.append(exp.get("resources") or {})
        depth = getattr(wildcards, "depth", None)
        if depth is not None:
            layers.append(
                ((exp.get("by_depth") or {}).get(depth) or {}).get("resources") or {}
            )
    res = dict(RESOURCE_FALLBACK)
    for layer in layers:
        res.update(layer.get("default") or {})
        res.update(layer.get(rule) or {})
    return res


def res(rule, key):
    """An input function for one resource of ``rule`` (for threads: and resources:)."""

    def get(wildcards):
        values = lookup_resources(rule, wildcards)
        # gpu: the GPUs of a one-node job (sbatch --gpus, --resources gpu=N);
        # gres: GPUs per node of a (multi-node) training job (sbatch --gres)
        if key == "gpu":
            return values["gpus"] * values["nodes"]
        if key == "gres":
            return f"gpu:{values['gpus']}" if values["gpus"] else ""
        return values[key]

    return get


# --------------------------------------------------------------------------- training


def depth_overrides(wildcards):
    """experiments.<dataset>.by_depth.<depth> (empty if none)."""
    by_depth = experiment(wildcards.dataset).get("by_depth") or {}
    return by_depth.get(wildcards.depth) or {}


def recipe_hparams(dataset, depth):
    """The dataset's fairseq options with the depth's overrides.  The steps add the
    layer counts (--depth), the seed (--seed), the variant's flags and the paths."""
    exp = experiment(dataset)
    overrides = (exp.get("by_depth") or {}).get(depth) or {}
    return deep_merge(exp["hparams"], overrides.get("hparams") or {})


def base_hparams(wildcards):
    return recipe_hparams(wildcards.dataset, wildcards.depth)


def scaled_update_freq(wildcards, hp, gpus):
    """Keep the recipe's effective batch when a job gets another GPU count than batch_gpus."""
    want = depth_overrides(wildcards).get("batch_gpus")
    want = want or experiment(wildcards.dataset).get("batch_gpus")
    if not want or gpus < 1 or gpus == want:
        return hp.get("update_freq", 1)
    total = hp.get("update_freq", 1) * want
    if total % gpus:
        raise WorkflowError(
            f"experiments.{wildcards.dataset}.batch_gpus: update_freq x batch_gpus "
            f"= {total} is not divisible by the {gpus} GPUs of this train job; "
            "change gpus/nodes or batch_gpus"
        )
    return total // gpus


def train_hparams(wildcards, resources):
    hp = base_hparams(wildcards)
    gpus = resources.gpus_per_node * resources.nodes
    hp["update_freq"] = scaled_update_freq(wildcards, hp, gpus)
    return json.dumps(hp)


def profile_hparams(wildcards):
    hp = base_hparams(wildcards)
    hp.update(experiment(wildcards.dataset).get("profile_hparams") or {})
    return json.dumps(hp)


def profile_input(wildcards):
    """Admin's train job reads the profile of its own run folder; no other variant has one."""
    if needs_profile(wildcards.variant):
        run = run_dir(
            wildcards.dataset, wildcards.variant, wildcards.depth, wildcards.seed
        )
        return f"{run}/profile.json"
    return []


def profile_options(wildcards, input):
    if needs_profile(wildcards.variant):
        return ["--profile", str(input.profile)]
    return []


# --------------------------------------------------------------------------- evaluation


def generate_hparams(wildcards):
    return json.dumps(experiment(wildcards.dataset)["generate"])


def average_options(wildcards):
    avg = experiment(wildcards.dataset)["average"]
    argv = ["--last", str(avg["last"])]
    if avg.get("upper_bound"):
        argv += ["--upper-bound", str(avg["upper_bound"])]
    return argv


def raw_text(wildcards):
    """The folder with the test set's raw references (sacreBLEU scores against them): the
    demo's raw text, or a registry dataset's prepared folder (test.raw.<tgt>, written by
    admin.data.prepare from the SGM / XML / raw test file)."""
    if source(wildcards.dataset) == "demo":
        return f"{RESOURCES}/{wildcards.dataset}/raw"
    return f"{RESOURCES}/{wildcards.dataset}/prepared"


def detok_options(wildcards, input):
    tgt = languages(wildcards.dataset)[1]
    if source(wildcards.dataset) == "demo":
        ref = f"{input.raw}/test.{tgt}"
        tok = experiment(wildcards.dataset)["data"].get("tokenize") or {}
        lowercased = bool(tok.get("lowercase"))
    else:
        ref = f"{input.raw}/test.raw.{tgt}"
        lowercased = REGISTRY[source(wildcards.dataset)].lowercased
    return ["--ref-raw", ref] + (["--sacrebleu-lowercase"] if lowercased else [])


def scoring_options(wildcards):
    scoring = experiment(wildcards.dataset).get("scoring") or {}
    return ["--compound-split"] if scoring.get("compound_split") else []


# --------------------------------------------------------------------------- report


def run_files(name):
    def get(wildcards):
        return [f"{run}/{name}" for run in runs(wildcards.dataset)]

    return get


def depth_run_files(name):
    """``name`` in every run folder of one depth (all variants and seeds)."""

    def get(wildcards):
        variants, _, seeds = matrix(wildcards.dataset)
        return [
            f"{run_dir(wildcards.dataset, v, wildcards.depth, s)}/{name}"
            for v in variants
            for s in seeds
        ]

    return get


def run_folders(paths):
    """The run folders of a list of files inside them, as --run arguments."""
    argv = []
    for path in paths:
        argv += ["--run", str(Path(path).parent)]
    return argv


def paper_targets(dataset):
    """Input function of a paper target (evaluated only when that target is requested)."""

    def get(wildcards):
        if dataset not in config["experiments"]:
            raise WorkflowError(
                f"experiments.{dataset} is not defined: add config/paper_{dataset}.yaml to presets"
            )
        return dataset_targets(dataset)

    return get


# --------------------------------------------------------------------------- analyses

ANALYSIS = f"{RESULTS}/analysis"
ANALYSIS_LOGS = f"{LOGS}/analysis"
ANALYSIS_BENCHMARKS = f"{BENCHMARKS}/analysis"


def analysis_dataset():
    """analysis.dataset, checked when an analysis is planned (not at parse time: a preset
    alone may not define the demo)."""
    dataset = config["analysis"]["dataset"]
    if dataset not in config["experiments"]:
        raise WorkflowError(
            f"invalid configuration:\n  analysis.dataset: {dataset!r} is not defined under "
            f"experiments; defined datasets: {', '.join(sorted(config['experiments']))}"
        )
    return dataset


def analysis_data_bin(wildcards):
    return f"{RESOURCES}/{analysis_dataset()}/data-bin"


def batch_options():
    batch = config["analysis"]["batch"]
    return ["--split", batch["split"], "--max-tokens", str(batch["max_tokens"])]


def output_change_targets():
    return [f"{ANALYSIS}/output_change.{ext}" for ext in ("csv", "png")]


def output_change_options(wildcards):
    opts = config["analysis"]["output_change"]
    return [
        *batch_options(),
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


def dependency_depths():
    """analysis.dependency.depths, or the analysis dataset's matrix depths."""
    return config["analysis"]["dependency"]["depths"] or matrix(analysis_dataset())[1]


def dependency_seed():
    seed = config["analysis"]["dependency"]["seed"]
    return matrix(analysis_dataset())[2][0] if seed is None else int(seed)


def dependency_targets(wildcards=None):
    return [
        f"{ANALYSIS}/dependency_{variant}_{depth}.{ext}"
        for variant in config["analysis"]["dependency"]["variants"]
        for depth in dependency_depths()
        for ext in ("png", "csv")
    ]


def trained_run(variant, depth):
    """The analysis dataset's run folder of this variant and depth at the dependency seed,
    if its matrix trains one; otherwise None."""
    dataset = analysis_dataset()
    variants, depths, seeds = matrix(dataset)
    seed = dependency_seed()
    if variant in variants and depth in depths and seed in seeds:
        return run_dir(dataset, variant, depth, seed)
    return None


def dependency_average(wildcards):
    """A trained run's average.json (it names the averaged checkpoint), if there is one."""
    run = trained_run(wildcards.variant, wildcards.depth)
    return f"{run}/average.json" if run else []


def dependency_profile(wildcards):
    """Admin with a trained run: the profile that run started from, so that the heatmap
    at initialisation is that run's start.  Without one the step profiles itself."""
    run = trained_run(wildcards.variant, wildcards.depth)
    return f"{run}/profile.json" if run and needs_profile(wildcards.variant) else []


def dependency_hparams(wildcards):
    """The analysis dataset's recipe at this depth: the heatmaps show the models it trains."""
    return json.dumps(recipe_hparams(analysis_dataset(), wildcards.depth))


def dependency_options(wildcards, input):
    argv = [*batch_options(), "--seed", str(dependency_seed())]
    if input.profile:
        argv += ["--profile", str(input.profile)]
    if input.average:
        argv += ["--average", str(input.average)]
    return argv


def built_analyses(wildcards):
    """The analyses' outputs that exist already.  The default target lists them, so that once
    built they are kept up to date and `snakemake --report` includes them."""
    if config["analysis"]["dataset"] not in config["experiments"]:
        return []
    wanted = output_change_targets() + dependency_targets()
    return [path for path in wanted if Path(path).exists()]
