"""A run's recipe: what it trains, apart from when it stops and how it is run.

    python -m admin.recipe --data-bin DIR --spec JSON --out RUN/recipe.json

A run is a function of its recipe.  The config's fairseq options fall in three groups:

* **identity**: everything that changes the model, the data or the optimisation (the
  architecture and its sizes, the optimizer and its schedule, dropout, precision and
  loss scaling, the batch per process and the batches per update).  With the variant,
  the depth, the seed, the plugin's model-code version, Admin's profiling options and
  the data-bin's identity (hashes of its dictionaries and index files) it makes the
  recipe; its hash is the recipe id.  Checkpoints of another recipe are never resumed.
* **stop conditions** (:data:`STOP_CONDITIONS`): raising ``max_epoch`` or ``max_update``
  extends a run, which continues from its checkpoint; they stay out of the identity as
  long as the learning-rate schedule does not read them.
* **runtime**: logging, data loading, checkpoint cadence, validation cadence and device
  plumbing.  Changing them reruns nothing.

The batch: ``update_freq`` is per process, so the identity holds the number of
per-process batches in one update (``update_freq`` x the recipe's process count), and
the training step derives ``update_freq`` from its own world size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from admin.common import config as cfgmod
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.common.fairseq_args import precision
from admin.common.fairseq_command import check_training_options
from admin.common.run_folder import Recipe, RunKey, parse_depth, write_recipe
from admin.common.variants import MODEL_CODE_VERSION, VARIANTS, needs_profile

STOP_CONDITIONS = frozenset(
    {"max_epoch", "max_update", "stop_time_hours", "stop_min_lr", "patience"}
)

# Options that never change what a run computes, by group.
RUNTIME_OPTIONS = frozenset(
    {
        # logging
        "log_interval", "log_format", "log_file", "no_progress_bar", "tensorboard_logdir",
        "wandb_project", "azureml_logging", "aim_repo", "aim_run_hash", "quiet",
        # data loading
        "num_workers", "data_buffer_size",
        # checkpoint cadence (the training step sets what it keeps)
        "save_interval", "save_interval_updates", "keep_interval_updates", "keep_last_epochs",
        "keep_best_checkpoints", "no_epoch_checkpoints", "no_last_checkpoints",
        "best_checkpoint_metric", "maximize_best_checkpoint_metric",
        "write_checkpoints_asynchronously", "no_save",
        # validation cadence (validation never changes the weights; fairseq seeds each
        # update from seed + update number)
        "validate_interval", "validate_interval_updates", "validate_after_updates",
        # device and distributed plumbing
        "cpu", "ddp_backend", "bucket_cap_mb", "fix_batches_to_gpus", "find_unused_parameters",
        "heartbeat_timeout", "empty_cache_freq", "all_gather_list_size",
    }
)  # fmt: skip

# Runtime options that name a path: a relative one belongs to the run (its folder), so
# that concurrent runs of one dataset never write into the same event files or log.
RUN_RELATIVE_PATHS = ("tensorboard_logdir", "log_file")


def in_run_folder(runtime: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """``runtime`` with its relative paths (:data:`RUN_RELATIVE_PATHS`) resolved in the
    run's ``folder``; absolute paths are the user's and stay as given."""
    resolved = dict(runtime)
    for key in RUN_RELATIVE_PATHS:
        value = resolved.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            resolved[key] = str(folder.resolve() / value)
    return resolved


# Learning-rate schedules whose shape reads max_update (then it is part of the identity).
SCHEDULES_READING_MAX_UPDATE = frozenset({"cosine", "tri_stage"})


def split_hparams(
    hparams: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(identity, stop, runtime) options of a recipe's hparams; nulls are dropped
    (a null option is left out of fairseq's command line)."""
    identity: dict[str, Any] = {}
    stop: dict[str, Any] = {}
    runtime: dict[str, Any] = {}
    schedule_reads_max_update = hparams.get("lr_scheduler") in SCHEDULES_READING_MAX_UPDATE
    for key, value in hparams.items():
        if value is None or value is False:
            continue
        if key in RUNTIME_OPTIONS:
            runtime[key] = value
        elif key in STOP_CONDITIONS and not (key == "max_update" and schedule_reads_max_update):
            stop[key] = value
        else:
            identity[key] = value
    return identity, stop, runtime


def batches_per_update(hparams: Mapping[str, Any], world: int) -> int:
    """Per-process batches in one update: update_freq x the recipe's process count."""
    return int(hparams.get("update_freq") or 1) * world


def update_freq(batches: int, world_size: int) -> int:
    """The ``update_freq`` that makes ``world_size`` processes take ``batches`` per update."""
    if world_size < 1 or batches % world_size:
        raise AdminError(
            f"the recipe accumulates {batches} batches per update, which {world_size} "
            "processes cannot share evenly; change the GPUs (resources.train gpus x nodes) "
            "or batch_gpus"
        )
    return batches // world_size


def make_spec(
    key: RunKey,
    hparams: Mapping[str, Any],
    batch_world: int = 1,
    profile_hparams: Mapping[str, Any] | None = None,
    profile_seed: int | None = None,
) -> dict[str, Any]:
    """A run's recipe, except the data-bin's identity (the recipe step adds it), from its
    fairseq options (stop and runtime options are left out), the process count its
    ``update_freq`` assumes and, for Admin, its profiling run's options and the seed of
    the profile it trains from (recorded only where it is not the run's own, so that the
    runs that profile themselves keep their recipe id)."""
    check_training_options(hparams, f"the hparams of {key.dataset}/{key.variant}/{key.depth}")
    identity, _, _ = split_hparams(hparams)
    identity.pop("update_freq", None)
    enc, dec = parse_depth(key.depth)
    profiling = None
    profile_precision = "fp32"
    if needs_profile(key.variant):
        prof, _, _ = split_hparams({**hparams, **(profile_hparams or {})})
        prof.pop("update_freq", None)
        profile_precision = precision(prof)
        # only what differs from the training options matters (None: left out)
        profiling = {
            k: prof.get(k)
            for k in sorted(set(prof) | set(identity))
            if identity.get(k) != prof.get(k)
        }
    own_profile = profiling is None or profile_seed is None or profile_seed == key.seed
    return {
        "key": key.as_dict(),
        "identity": {
            "variant": key.variant,
            "init_type": VARIANTS[key.variant][0],
            "pre_ln": VARIANTS[key.variant][1],
            "encoder_layers": enc,
            "decoder_layers": dec,
            "seed": key.seed,
            "hparams": dict(sorted(identity.items())),
            "batches_per_update": batches_per_update(hparams, batch_world),
            "profile_hparams": profiling,
            "model_code": MODEL_CODE_VERSION,
            **({} if own_profile else {"profile_seed": profile_seed}),
            # A half-precision run's profile is taken in that precision on a GPU (the
            # fairseq plugin); recorded only then, so that fp32 recipes keep their id.
            **({} if profile_precision == "fp32" else {"profile_precision": profile_precision}),
        },
    }


def spec(cfg: Mapping[str, Any], dataset: str, variant: str, depth: str, seed: int) -> dict:
    """The recipe spec of one cell of a dataset's matrix (what the workflow tracks)."""
    return make_spec(
        RunKey(dataset, variant, depth, int(seed)),
        cfgmod.recipe_hparams(cfg, dataset, depth),
        cfgmod.batch_world(cfg, dataset, depth),
        cfgmod.experiment(cfg, dataset).get("profile_hparams"),
        cfgmod.profile_seed(cfg, dataset, int(seed)),
    )


def stop_conditions(cfg: Mapping[str, Any], dataset: str, depth: str) -> dict[str, Any]:
    return split_hparams(cfgmod.recipe_hparams(cfg, dataset, depth))[1]


def runtime_options(cfg: Mapping[str, Any], dataset: str, depth: str) -> dict[str, Any]:
    return split_hparams(cfgmod.recipe_hparams(cfg, dataset, depth))[2]


def data_identity(data_bin: Path) -> dict[str, str]:
    """sha256 of the data-bin's dictionaries and index files (small files that change
    whenever the text, the BPE or the vocabulary does)."""
    files = sorted(
        p for p in data_bin.iterdir() if p.is_file() and (p.suffix == ".idx" or
                                                         p.name.startswith("dict."))
    )  # fmt: skip
    if not any(p.name.startswith("dict.") for p in files):
        raise AdminError(f"data-bin {data_bin} has no dict.<lang>.txt: is it a fairseq data-bin?")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def build(data_bin: Path, spec_doc: Mapping[str, Any]) -> Recipe:
    try:
        key = RunKey(**spec_doc["key"])
        identity = dict(spec_doc["identity"])
    except (KeyError, TypeError) as err:
        raise AdminError(f"--spec is not a recipe spec: {err}") from None
    if not data_bin.is_dir():
        raise AdminError(f"data-bin {data_bin} is not a folder")
    identity["data"] = data_identity(data_bin)
    return Recipe(key, identity)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin.recipe", description=__doc__.split("\n")[0])
    p.add_argument("--data-bin", required=True, type=Path, help="the run's fairseq data-bin")
    p.add_argument("--spec", required=True, help="JSON: the recipe without the data identity")
    p.add_argument("--out", required=True, type=Path, help="recipe.json to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec_doc = json.loads(args.spec)
    except json.JSONDecodeError as err:
        raise AdminError(f"--spec is not valid JSON: {err}") from None
    recipe = build(args.data_bin, spec_doc)
    write_recipe(args.out, recipe)
    print(f"wrote {args.out}: recipe {recipe.id}")
    return 0


if __name__ == "__main__":
    run_cli(main)
