"""The workflow for real, on the embedded demo shrunk by config (a few minutes on 2 cores).

Each test runs Snakemake in its own temporary folder with the project's config plus an
overlay, so the user's results/ and resources/ are never touched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from admin import recipe as recipes
from admin.common import run_folder as rf
from admin.common.run_folder import RunKey
from tests.conftest import REPO, VENV_BIN
from tests.steps_support import step_env
from tests.workflow_support import snakemake, snakemake_cmd

pytestmark = pytest.mark.slow

# The demo, small: 6000 training pairs, 64-dim models at 1-1 and 2-2, 3 epochs.
SMALL: dict[str, Any] = {
    "datasets": ["demo"],
    "experiments": {
        "demo": {
            "data": {"corpus": {"seed": 1, "train": 6000, "valid": 60, "test": 60},
                     "bpe_merges": 1000},
            "matrix": {"variants": ["postln", "admin"], "depths": ["1-1", "2-2"],
                       "seeds": [1]},
            "hparams": {"max_tokens": 1024, "lr": 0.005, "warmup_updates": 100,
                        "max_epoch": 3, "log_interval": 10},
            "generate": {"beam": 2, "batch_size": 60},
            "average": {"last": 2},
        }
    },
}  # fmt: skip


def _overlay(tmp: Path, data: dict[str, Any]) -> list[str]:
    path = tmp / "overlay.yaml"
    path.write_text(yaml.safe_dump(data))
    return ["--configfile", str(REPO / "config" / "config.yaml"), str(path)]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def _run(workdir: Path, config: dict[str, Any], *extra: str, timeout: float = 900):
    proc = snakemake(
        "--cores", "2", *_overlay(workdir, config), *extra, cwd=workdir, timeout=timeout
    )
    return proc


@dataclass
class Demo:
    workdir: Path
    killed_run: Path  # the run whose training the first Snakemake was killed in
    killed_at: int  # its newest update then
    survivors: set[int]  # processes of the killed workflow still alive after it


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """SMALL through Snakemake, killed with SIGKILL (its whole process group) once the
    first run to train (Post-LN 2-2: the deep runs start first) has two epoch
    checkpoints; then what a user does: unlock, rerun the incomplete jobs."""
    workdir = tmp_path_factory.mktemp("demo")
    args, env = snakemake_cmd("--cores", "2", *_overlay(workdir, SMALL))
    run = workdir / "results" / "demo" / "postln" / "2-2" / "seed1"
    with open(workdir / "first.log", "w") as log:
        # a session of its own: the kill takes Snakemake and every job it started
        first = subprocess.Popen(args, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 900
            while not (run / "checkpoints" / "checkpoint2.pt").exists():
                assert first.poll() is None, (workdir / "first.log").read_text()[-4000:]
                assert time.monotonic() < deadline, "training never reached epoch 2"
                time.sleep(0.5)
            time.sleep(1.0)
            descendants = _children(first.pid)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(descendants) and time.monotonic() < deadline:
        time.sleep(0.5)
    killed_at = max(_updates((run / "checkpoints" / "train.log").read_text()), default=0)
    assert not (run / "status.json").exists()  # killed before its training ended

    unlock = _run(workdir, SMALL, "--unlock", timeout=120)
    assert unlock.returncode == 0, unlock.stderr[-4000:]
    second = _run(workdir, SMALL, "--rerun-incomplete")
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-8000:]
    return Demo(workdir, run, killed_at, _alive(descendants))


def test_demo_produces_table_plots_and_report(demo):
    workdir = demo.workdir
    out = workdir / "results" / "demo"
    for name in ("table.md", "table.csv", "table.json", "bleu_vs_depth.png",
                 "curves_1-1.png", "curves_2-2.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = workdir / "report.html"
    proc = snakemake(*_overlay(workdir, SMALL), "--report", str(report), cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert report.stat().st_size > 10_000
    # run folders hold what the README lists ("What every output is"); Admin has its profile
    for run in (out / "admin").glob("*/seed1"):
        assert (run / "profile.json").is_file()
    for run in out.glob("*/*/seed1"):
        for name in ("train.log", "status.json", "average.json", "generate.txt", "scores.json"):
            assert (run / name).is_file(), run / name
        # scored: the training checkpoints are gone (checkpoints.keep: none, the default),
        # the run's record and history stay
        kept = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert kept == ["attempts.jsonl", "run.json", "train.log"], (run, kept)


def test_table_numbers_are_the_scores_numbers(demo):
    out = demo.workdir / "results" / "demo"
    scores = {
        (run.parent.parent.name, run.parent.name): json.loads((run / "scores.json").read_text())
        for run in out.glob("*/*/seed1")
    }
    assert len(scores) == 4
    table_md = (out / "table.md").read_text()
    cells = json.loads((out / "table.json").read_text())["cells"]
    csv_text = (out / "table.csv").read_text()
    for (variant, depth), score in scores.items():
        cell = cells[variant][depth]
        if score["status"] == "diverged":
            assert cell["text"] == "diverged" and "diverged" in table_md
            continue
        bleu = score["bleu_tokenized"]
        assert cell["seeds"]["1"] == pytest.approx(bleu)
        assert cell["mean"] == pytest.approx(bleu)
        assert cell["text"] == f"{bleu:.2f}" and f"| {bleu:.2f}" in table_md
        assert f"{bleu:.2f}" in csv_text


def test_a_trained_cell_beats_an_untrained_model(demo, tmp_path):
    out = demo.workdir / "results" / "demo"
    trained = max(
        json.loads(p.read_text()).get("bleu_tokenized") or 0.0
        for p in out.glob("*/*/seed1/scores.json")
    )
    # The same model after one epoch at lr 1e-9: untrained, through the same steps.
    run = tmp_path / "results" / "demo" / "postln" / "2-2" / "seed1"
    demo_config = _merge(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), SMALL)
    hp = {**demo_config["experiments"]["demo"]["hparams"], "max_epoch": 1, "lr": 1e-9,
          "warmup_init_lr": 1e-10}  # fmt: skip
    py = str(VENV_BIN / "python")
    data = demo.workdir / "resources" / "demo" / "data-bin"
    key = RunKey("demo", "postln", "2-2", 1)
    rf.write_recipe(run / "recipe.json", recipes.build(data, recipes.make_spec(key, hp)))
    _, stop, runtime = recipes.split_hparams(hp)
    steps = [
        ["admin.train", "--data-bin", data, "--run-dir", str(run), "--recipe",
         run / "recipe.json", "--stop", json.dumps(stop), "--runtime", json.dumps(runtime),
         "--device", "cpu"],
        ["admin.average", "--checkpoints", str(run / "checkpoints"),
         "--status", str(run / "status.json"), "--last", "1", "--out", str(run / "average.json")],
        ["admin.evaluate", "--data-bin", data, "--average", str(run / "average.json"),
         "--hparams", json.dumps(SMALL["experiments"]["demo"]["generate"]), "--device", "cpu"],
    ]  # fmt: skip
    for step in steps:  # one CPU each, as the workflow's jobs (tests.steps_support)
        proc = subprocess.run([py, "-m", *step], capture_output=True, text=True, cwd=tmp_path,
                              env=step_env())  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    untrained = json.loads((run / "scores.json").read_text())["bleu_tokenized"]
    assert untrained < 1.0
    assert trained > untrained + 2.0, (trained, untrained)


def _updates(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"num_updates[ =](\d+)", text)]


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    """The processes of ``pids`` still running (zombies count as gone)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def test_sigkill_during_training_then_rerun_continues_the_update_count(demo):
    """The demo's fixture killed Snakemake with SIGKILL mid-training: no process of it
    survived, and the rerun continued the killed run from its checkpoint."""
    assert not demo.survivors, "processes of the killed workflow survive"
    assert demo.killed_at > 0
    run = demo.killed_run
    attempts = (run / "checkpoints" / "train.log").read_text().split("==== admin.train attempt")
    assert len(attempts) == 3  # "" before the first marker, then two attempts
    resumed = _updates(attempts[2])
    assert resumed and resumed[0] > 1, "the second attempt restarted from update 1"
    assert re.search(r"Loaded checkpoint \S+checkpoint_last\.pt", attempts[2])
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["epochs"] == 3
    assert status["num_updates"] >= demo.killed_at
    assert (demo.workdir / "results" / "demo" / "table.md").is_file()


# --- a run is a function of its recipe ----------------------------------------------

# All three variants at one tiny depth, one epoch: the smallest demo that has every rule.
TRIO: dict[str, Any] = _merge(SMALL, {
    "experiments": {"demo": {
        "data": {"corpus": {"seed": 1, "train": 1200, "valid": 60, "test": 60},
                 "bpe_merges": 300},
        "matrix": {"variants": ["postln", "preln", "admin"], "depths": ["1-1"]},
        "hparams": {"encoder_embed_dim": 32, "decoder_embed_dim": 32,
                    "encoder_ffn_embed_dim": 64, "decoder_ffn_embed_dim": 64,
                    "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                    "max_tokens": 2000, "max_epoch": 1, "warmup_updates": 6,
                    "log_interval": 1},
        "average": {"last": 1},
    }},
    # one epoch of ~20 updates never leaves the unigram plateau: not judged on training
    "divergence": {"unigram_margin": None, "bigram_margin": None},
})  # fmt: skip


def test_divergence_is_a_table_cell_and_the_workflow_succeeds(tmp_path):
    """Post-LN 2-2 with plain SGD at lr 1e8 diverges; 1-1 trains; the run exits 0 (on
    TRIO's small data: one epoch is enough)."""
    config = _merge(TRIO, {
        "experiments": {"demo": {
            "matrix": {"variants": ["postln"], "depths": ["1-1", "2-2"]},
            "by_depth": {"2-2": {"hparams": {
                "optimizer": "sgd", "lr": 1e8, "lr_scheduler": "fixed", "adam_betas": None,
                "warmup_updates": None, "warmup_init_lr": None}}},
        }},
    })  # fmt: skip
    proc = _run(tmp_path, config)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    out = tmp_path / "results" / "demo"
    diverged = json.loads((out / "postln" / "2-2" / "seed1" / "status.json").read_text())
    assert diverged["status"] == "diverged", diverged
    fine = json.loads((out / "postln" / "1-1" / "seed1" / "scores.json").read_text())
    assert fine["status"] == "completed" and fine["bleu_tokenized"] is not None
    table = (out / "table.md").read_text()
    assert "diverged" in table and f"{fine['bleu_tokenized']:.2f}" in table
    assert (out / "curves_2-2.png").is_file() and (out / "bleu_vs_depth.png").is_file()


def _jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts of a (dry) run's stats table; empty when nothing is to be done."""
    counts = {}
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return counts
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_recipe_changes_rerun_exactly_their_runs(tmp_path):
    proc = _run(tmp_path, TRIO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    runs = {v: tmp_path / "results" / "demo" / v / "1-1" / "seed1" for v in
            ("postln", "preln", "admin")}  # fmt: skip
    before = {v: json.loads((r / "status.json").read_text()) for v, r in runs.items()}

    # Logging, data loading and checkpoint cadence are not the recipe: nothing reruns.
    quiet = _merge(TRIO, {"experiments": {"demo": {"hparams": {
        "log_interval": 5, "num_workers": 1, "save_interval_updates": 3}}}})  # fmt: skip
    assert _jobs(_run(tmp_path, quiet, "-n")) == {}
    proc = _run(tmp_path, quiet)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr

    # A new learning rate is a new recipe for every run: each trains again from update 1.
    # (checkpoints.keep: last keeps checkpoint_last.pt once scored, for the extension below;
    # what is kept is no part of the recipe either)
    faster = _merge(TRIO, {"experiments": {"demo": {"hparams": {"lr": 0.003}}},
                           "checkpoints": {"keep": "last"}})  # fmt: skip
    dry = _run(tmp_path, faster, "-n")
    assert _jobs(dry) == {
        "recipe": 3,
        "profile": 1,
        "train": 3,
        "average": 3,
        "evaluate": 3,
        "table": 1,
        "curves": 1,
        "bleu_plot": 1,
        "default": 1,
    }, dry.stdout
    assert "Params have changed since last execution" in dry.stdout
    proc = _run(tmp_path, faster)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    for variant, run in runs.items():
        status = json.loads((run / "status.json").read_text())
        old_id = before[variant]["recipe_id"]
        assert status["recipe_id"] != old_id, variant
        log = (run / "train.log").read_text()
        assert log.startswith(f"admin.train: starting afresh for recipe {status['recipe_id']}")
        assert "Loaded checkpoint" not in log and _updates(log)[0] == 1, variant
        # the old run's history is kept aside, not resumed
        assert (run / f"checkpoints.superseded-{old_id}" / "train.log").is_file()
        assert json.loads((run / "recipe.json").read_text())["identity"]["hparams"]["lr"] == 0.003

    # Raising max_epoch extends: training reruns and continues from checkpoint_last.pt; the
    # recipe, and so the profile, stay.
    for run in runs.values():
        assert [p.name for p in (run / "checkpoints").glob("*.pt")] == ["checkpoint_last.pt"]
    longer = _merge(faster, {"experiments": {"demo": {"hparams": {"max_epoch": 2}}}})
    dry = _run(tmp_path, longer, "-n")
    assert _jobs(dry) == {"train": 3, "average": 3, "evaluate": 3, "table": 1, "curves": 1,
                          "bleu_plot": 1, "default": 1}, dry.stdout  # fmt: skip
    proc = _run(tmp_path, longer)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    for run in runs.values():
        status = json.loads((run / "status.json").read_text())
        assert status["epochs"] == 2
        last = (run / "train.log").read_text().split("==== admin.train attempt")[-1]
        assert re.search(r"Loaded checkpoint \S+checkpoint_last\.pt \(epoch 2 @", last)
