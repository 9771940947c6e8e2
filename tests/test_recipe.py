"""What makes a run's identity (admin.recipe), the run folder's files (admin.common.run_folder)
and the configuration module (admin.common.config), without Snakemake or fairseq."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from admin import recipe as recipes
from admin.common import config as cfgmod
from admin.common import run_folder as rf
from admin.common.errors import AdminError
from tests.conftest import REPO
from tests.workflow_support import SCHEMA, project_config


@pytest.fixture(scope="module")
def cfg() -> dict:
    """The project's whole configuration (demo + the three presets), as the workflow has it."""
    return project_config()


def _id(cfg: dict, dataset: str, variant: str, depth: str, seed: int, **hp) -> str:
    changed = cfgmod.deep_merge(cfg, {"experiments": {dataset: {"hparams": hp}}})
    spec = recipes.spec(changed, dataset, variant, depth, seed)
    return rf.recipe_id(spec["identity"])


def test_identity_changes_with_what_is_trained_only(cfg):
    base = _id(cfg, "iwslt14_de_en", "admin", "6-6", 1111)
    changes = [{"lr": 0.001}, {"dropout": 0.1}, {"max_tokens": 2048}, {"update_freq": 2},
               {"warmup_updates": 4000}, {"fp16": False}, {"param_init": "fairseq"}]  # fmt: skip
    for change in changes:
        assert _id(cfg, "iwslt14_de_en", "admin", "6-6", 1111, **change) != base, change
    same = [{"log_interval": 7}, {"num_workers": 4}, {"save_interval_updates": 500},
            {"max_epoch": 100}, {"max_update": 200000}, {"validate_interval": 2}]  # fmt: skip
    for change in same:
        assert _id(cfg, "iwslt14_de_en", "admin", "6-6", 1111, **change) == base, change
    assert _id(cfg, "iwslt14_de_en", "admin", "6-6", 2222) != base
    assert _id(cfg, "iwslt14_de_en", "preln", "6-6", 1111) != base


def test_max_update_is_identity_when_the_schedule_reads_it(cfg):
    cosine = {"lr_scheduler": "cosine", "warmup_updates": 100}
    a = _id(cfg, "iwslt14_de_en", "postln", "6-6", 1, **cosine, max_update=1000)
    b = _id(cfg, "iwslt14_de_en", "postln", "6-6", 1, **cosine, max_update=2000)
    assert a != b
    stop = recipes.stop_conditions(cfgmod.deep_merge(
        cfg, {"experiments": {"iwslt14_de_en": {"hparams": {**cosine, "max_update": 5}}}}
    ), "iwslt14_de_en", "6-6")  # fmt: skip
    assert "max_update" not in stop and stop["max_epoch"] == 90


def test_batch_is_per_update_not_per_gpu(cfg):
    """En-Fr 60-12: 5000 tokens x update-freq 16 on 16 GPUs; the recipe holds 256 batches
    per update, and a job on 8 GPUs accumulates 32 (the same effective batch)."""
    spec = recipes.spec(cfg, "wmt14_en_fr", "admin", "60-12", 1111)
    assert spec["identity"]["batches_per_update"] == 256
    assert spec["identity"]["hparams"]["max_tokens"] == 5000
    assert "update_freq" not in spec["identity"]["hparams"]
    assert recipes.update_freq(256, 16) == 16 and recipes.update_freq(256, 8) == 32
    with pytest.raises(AdminError, match="256 batches per update, which 24 processes"):
        recipes.update_freq(256, 24)
    # the demo has no batch_gpus: its processes are the recipe's (one by default)
    assert recipes.spec(cfg, "demo", "postln", "2-2", 1)["identity"]["batches_per_update"] == 1


def test_split_hparams(cfg):
    hp = cfgmod.recipe_hparams(cfg, "wmt14_en_fr", "6-6")
    identity, stop, runtime = recipes.split_hparams({**hp, "num_workers": 2, "bf16": False})
    assert stop == {"max_epoch": 50, "stop_min_lr": 1e-09}
    # logging, data loading and checkpoint cadence: none of them changes what is trained
    assert runtime == {"log_interval": 100, "save_interval_updates": hp["save_interval_updates"],
                       "num_workers": 2}  # fmt: skip
    assert identity["fp16"] is True and "bf16" not in identity  # false is left out
    assert set(identity) & (recipes.STOP_CONDITIONS | recipes.RUNTIME_OPTIONS) == set()


def test_admin_recipe_records_its_profiling_options(cfg):
    changed = cfgmod.deep_merge(cfg, {"experiments": {"iwslt14_de_en": {
        "profile_hparams": {"fp16": None, "max_tokens": 1000}}}})  # fmt: skip
    spec = recipes.spec(changed, "iwslt14_de_en", "admin", "6-6", 1111)
    assert spec["identity"]["profile_hparams"] == {"fp16": None, "max_tokens": 1000}
    assert recipes.spec(changed, "iwslt14_de_en", "preln", "6-6", 1111)["identity"][
        "profile_hparams"] is None  # fmt: skip


def test_a_half_precision_profile_is_part_of_the_admin_recipe(cfg):
    """IWSLT'14 trains in fp16, so its Admin profile is taken in fp16 on a GPU and the
    recipe says so; fp32 profiling (``profile_hparams: {fp16: null}``) is another recipe,
    the fp32 demo and the other variants carry no such key."""
    fp16 = recipes.spec(cfg, "iwslt14_de_en", "admin", "6-6", 1111)["identity"]
    assert fp16["hparams"]["fp16"] is True and fp16["profile_precision"] == "fp16"
    fp32 = recipes.spec(cfgmod.deep_merge(cfg, {"experiments": {"iwslt14_de_en": {
        "profile_hparams": {"fp16": None}}}}), "iwslt14_de_en", "admin", "6-6", 1111)[
        "identity"]  # fmt: skip
    assert "profile_precision" not in fp32 and fp32["profile_hparams"] == {"fp16": None}
    assert rf.recipe_id(fp16) != rf.recipe_id(fp32)
    assert "profile_precision" not in recipes.spec(
        cfg, "iwslt14_de_en", "postln", "6-6", 1111)["identity"]  # fmt: skip
    assert "profile_precision" not in recipes.spec(cfg, "demo", "admin", "2-2", 1)["identity"]


def test_a_shared_profile_changes_the_recipe_id_exactly_where_it_should(cfg):
    """profiling per depth (the presets): an Admin run of another seed than the profiling
    seed trains from another profile, so its recipe differs from the per-run one; the
    profiling seed's own run and every other variant keep theirs."""
    per_run = cfgmod.deep_merge(cfg, {"experiments": {"iwslt14_de_en": {
        "profiling": {"per": "run"}}}})  # fmt: skip
    assert cfgmod.experiment(cfg, "iwslt14_de_en")["profiling"] == {"per": "depth", "seed": 1111}

    def ident(config: dict, variant: str, seed: int) -> dict:
        return recipes.spec(config, "iwslt14_de_en", variant, "6-6", seed)["identity"]

    shared, own = ident(cfg, "admin", 2222), ident(per_run, "admin", 2222)
    assert shared["profile_seed"] == 1111 and "profile_seed" not in own
    assert {k: v for k, v in shared.items() if k != "profile_seed"} == own
    assert rf.recipe_id(shared) != rf.recipe_id(own)
    assert ident(cfg, "admin", 1111) == ident(per_run, "admin", 1111)  # its own profile
    for variant in ("postln", "preln"):
        assert ident(cfg, variant, 2222) == ident(per_run, variant, 2222)
    assert cfgmod.profile_seed(cfg, "iwslt14_de_en", 3333) == 1111
    assert cfgmod.profile_seed(per_run, "iwslt14_de_en", 3333) == 3333
    assert cfgmod.profile_seed(cfg, "demo", 7) == 7  # the demo profiles each run
    with pytest.raises(cfgmod.ConfigError, match="seed"):
        project_config({"experiments": {"demo": {"profiling": {"per": "depth"}}}})


def test_recipe_file_round_trip_and_data_identity(tmp_path, tiny_databin):
    spec = recipes.make_spec(rf.RunKey("tiny", "admin", "2-2", 3), {"arch": "admin_transformer",
                             "lr": 0.001, "log_interval": 5, "max_epoch": 2})  # fmt: skip
    recipe = recipes.build(tiny_databin, spec)
    assert set(recipe.identity["data"]) >= {"dict.de.txt", "dict.en.txt",
                                            "train.de-en.de.idx", "valid.de-en.en.idx"}  # fmt: skip
    path = tmp_path / "recipe.json"
    rf.write_recipe(path, recipe)
    back = rf.read_recipe(path)
    assert back.id == recipe.id and back.key == rf.RunKey("tiny", "admin", "2-2", 3)
    assert json.loads(path.read_text())["identity"]["hparams"] == {"arch": "admin_transformer",
                                                                   "lr": 0.001}  # fmt: skip
    # another data-bin (one more training pair) is another recipe
    other = tmp_path / "data-bin"
    other.mkdir()
    for f in tiny_databin.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    with open(other / "dict.de.txt", "a", encoding="utf-8") as handle:
        handle.write("neuwort 1\n")
    assert recipes.build(other, spec).id != recipe.id
    with pytest.raises(AdminError, match="no dict"):
        recipes.build(tmp_path, spec)


def test_status_file_names_its_run(tmp_path):
    key = rf.RunKey("demo", "postln", "6-6", 1)
    path = tmp_path / "status.json"
    rf.write_status(path, key, rf.DIVERGED, recipe_id="abc", num_updates=7, epochs=1,
                    reason="why", evidence={"x": 1})  # fmt: skip
    status = rf.read_status(path)
    assert status.key == key and status.diverged and status.evidence == {"x": 1}
    path.write_text(json.dumps({"status": "completed", "num_updates": 3}))
    with pytest.raises(AdminError, match="written before run folders recorded their identity"):
        rf.read_status(path)
    path.write_text(json.dumps({"status": "finished"}))
    with pytest.raises(AdminError, match="unknown status 'finished'"):
        rf.read_status(path)


def test_run_folder_layout():
    key = rf.key_of("results/wmt14_en_fr/admin/60-12/seed1111")
    assert key == rf.RunKey("wmt14_en_fr", "admin", "60-12", 1111)
    assert key.folder("results") == Path("results/wmt14_en_fr/admin/60-12/seed1111")
    assert rf.pattern("results") == "results/{dataset}/{variant}/{depth}/seed{seed}"
    with pytest.raises(AdminError, match="unknown variant"):
        rf.key_of("results/demo/postnorm/6-6/seed1")
    with pytest.raises(AdminError, match="not a run folder"):
        rf.key_of("results/demo/postln/6-6")


def test_averaging_window():
    assert rf.averaging_window(range(1, 91), 10, 90) == list(range(81, 91))
    assert rf.averaging_window(range(1, 101), 10, 90) == list(range(81, 91))
    assert rf.averaging_window([1, 2, 3], 10, 90) == [1, 2, 3]  # while still training
    assert rf.averaging_window([5, 1, 3], 2, None) == [3, 5]


def test_lock_names_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    folder = rf.RunFolder(tmp_path)
    with rf.TrainerLock(folder):
        holder = json.loads(folder.lock.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == os.uname().nodename
        with pytest.raises(rf.RunLocked, match=f"process {os.getpid()} on host"):
            rf.TrainerLock(folder).acquire()
    assert not folder.lock.exists()
    # a holder on another host inside a SLURM job that squeue no longer knows is stale
    folder.lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "slurm_job_id": "1",
                                       "started": "then"}))  # fmt: skip
    said: list[str] = []
    with rf.TrainerLock(folder, say=said.append):
        assert "SLURM job 1 is" in said[0]
    # on another host without SLURM nothing tells: the lock holds
    folder.lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "then"}))
    with pytest.raises(rf.RunLocked, match="state is unknown.*delete"):
        rf.TrainerLock(folder).acquire()


def test_config_resources_and_batch_world(cfg):
    res = cfgmod.lookup_resources(cfg, "train", "wmt14_en_fr", "60-12")
    assert (res["gpus"], res["nodes"], res["cpus"]) == (8, 2, 64)
    assert cfgmod.lookup_resources(cfg, "train", "wmt14_en_fr", "6-6")["nodes"] == 1
    assert cfgmod.lookup_resources(cfg, "bpe")["cpus"] == 8  # the global default
    assert cfgmod.batch_world(cfg, "wmt14_en_fr", "60-12") == 16
    assert cfgmod.batch_world(cfg, "demo", "2-2") == 1
    assert cfgmod.matrix(cfg, "iwslt14_de_en")[2] == [1111, 2222, 3333, 4444, 5555]
    assert len(cfgmod.cells(cfg, "wmt14_en_de")) == 9


def test_config_errors_name_the_key(tmp_path):
    base = cfgmod.read_yaml(REPO / "config" / "config.yaml")
    with pytest.raises(cfgmod.ConfigError, match=r"presets: config/nope.yaml does not exist"):
        cfgmod.load({**base, "presets": ["config/nope.yaml"]}, locate=lambda p: REPO / p,
                    schema=SCHEMA)  # fmt: skip
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.load(
            base,
            locate=lambda p: REPO / p,
            schema=SCHEMA,
            overrides={"variants": ["postln", "postnorm"], "checkpoints": {"keep": "some"}},
        )
    text = str(err.value)
    assert text.startswith("invalid configuration:\n")
    assert "variants[1]: 'postnorm' is not allowed" in text
    assert "checkpoints.keep: 'some' is not allowed; allowed values: none, last, all" in text


def test_fairseq_logging_hooks_are_runtime_options(cfg):
    """tensorboard_logdir (and fairseq's other logging hooks) set in hparams reach the
    training and profiling steps' --runtime, never the recipe: no run's id changes, so
    setting or changing them reruns nothing (config/README.md, docs/status.md)."""
    hooks = {"tensorboard_logdir": "tensorboard/iwslt14", "wandb_project": "admin",
             "aim_repo": "aim", "azureml_logging": True}  # fmt: skip
    assert set(hooks) <= recipes.RUNTIME_OPTIONS
    for variant in ("postln", "admin"):
        base = _id(cfg, "iwslt14_de_en", variant, "6-6", 1111)
        for hook, value in hooks.items():
            assert _id(cfg, "iwslt14_de_en", variant, "6-6", 1111, **{hook: value}) == base
        assert _id(cfg, "iwslt14_de_en", variant, "6-6", 1111, **hooks) == base
    changed = cfgmod.deep_merge(cfg, {"experiments": {"iwslt14_de_en": {"hparams": hooks}}})
    runtime = recipes.runtime_options(changed, "iwslt14_de_en", "6-6")
    assert {k: runtime[k] for k in hooks} == hooks
    assert runtime["log_interval"] == 100  # the preset's own runtime options stay
    identity = recipes.spec(changed, "iwslt14_de_en", "admin", "6-6", 1111)["identity"]
    assert not set(hooks) & set(identity["hparams"]) and not set(hooks) & set(
        identity["profile_hparams"] or {})  # fmt: skip


def test_relative_logging_paths_are_the_run_folders(tmp_path):
    """A relative tensorboard_logdir or log_file lands in the run's folder, so concurrent
    runs of one dataset never share event files; an absolute one is the user's."""
    run = tmp_path / "results" / "iwslt14_de_en" / "admin" / "6-6" / "seed1"
    runtime = {"tensorboard_logdir": "tb", "log_file": "logs/fairseq.log",
               "aim_repo": "aim", "log_interval": 100}  # fmt: skip
    resolved = recipes.in_run_folder(runtime, run)
    assert resolved == {**runtime, "tensorboard_logdir": str(run / "tb"),
                        "log_file": str(run / "logs" / "fairseq.log")}  # fmt: skip
    assert runtime["tensorboard_logdir"] == "tb"  # the caller's options are not changed
    absolute = {"tensorboard_logdir": str(tmp_path / "shared-tb")}
    assert recipes.in_run_folder(absolute, run) == absolute
