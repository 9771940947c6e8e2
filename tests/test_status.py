"""``python -m admin.status`` against real run folders, written by the real steps.

One dataset, ``tiny`` (the tiny IWSLT'14 data-bin; 3 variants x 2 depths x seed 1):

* admin 2-2: profiled, trained 3 epochs, averaged and evaluated: ``scored: BLEU x``;
* postln 2-2: trained 3 epochs: ``completed, not scored``;
* postln 6-6: stopped on the unigram plateau: ``stopped: fails to train``; a copy of it
  averaged and scored with ``checkpoints.keep: none`` (nothing of it is deleted); then
  continued without ``stop_early`` to its 8 epochs from its checkpoint:
  ``flagged: fails to train``;
* preln 6-6: seen ``training (pid N)`` while admin.train runs, then killed:
  ``interrupted``;
* preln 2-2 and admin 6-6: never started: ``waiting``.

Numbers are checked against the run folders: BLEU against scores.json, epochs and
updates against status.json, the last validation, the recent tokens/s and the span of
each history against the history itself, the GPU-hours against admin.budget.  Then 155
run folders made of these files (one history of tens of MB shared by hard links) are
read, as a target of 155 jobs is: every state right, and the time printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from admin import budget
from admin.common.fairseq_log import ATTEMPT_MARKER, parse
from admin.status import load
from tests.conftest import REPO
from tests.steps_support import (
    HPARAMS,
    ok,
    run_step,
    step_cmd,
    step_env,
    train_args,
    trained_admin_run,
)

pytestmark = pytest.mark.slow

GPUS = 2  # the tiny runs' train jobs, as the config says (for the GPU-hours)
# Post-LN 6-6 at lr 0.03 on the tiny data learns the token frequencies and no more
# (tests/test_divergence.py): ~23 updates an epoch, judged from update 60 (2 warm-ups).
PLATEAU = {"lr": 0.03, "warmup_updates": 30, "max_tokens": 1000, "max_epoch": 8}
JUDGED = {"unigram_margin": 0.1, "bigram_margin": None}  # the tiny data's margin (see there)
GENERATE = json.dumps({"beam": 2, "max_len_b": 20, "batch_size": 20})
MATRIX = {"variants": ["postln", "preln", "admin"], "depths": ["2-2", "6-6"], "seeds": [1]}
LIVE = {**PLATEAU, "lr": 0.002}  # preln 6-6: trains normally, long enough to be watched


# --------------------------------------------------------------------------- helpers


def tiny_config(matrix: dict[str, Any] = MATRIX) -> dict[str, Any]:
    """The dataset ``tiny`` as a user's config file would define it."""
    return {
        "datasets": ["tiny"],
        "experiments": {"tiny": {
            "data": {"source": "iwslt14_de_en"},  # the tiny data-bin's languages, de-en
            "matrix": matrix,
            "hparams": dict(HPARAMS),
            "by_depth": {"6-6": {"hparams": dict(PLATEAU)}},
            "generate": {"beam": 2},
            "average": {"last": 3, "upper_bound": None},
            "resources": {"train": {"gpus": GPUS, "nodes": 1}},
        }},
    }  # fmt: skip


def status(*args: Any, workdir: Path, configfile: Path | Sequence[Path | str],
           config: Sequence[str] = ()) -> str:  # fmt: skip
    """``python -m admin.status ARGS`` of the workflow in ``workdir``, as a user runs it."""
    files = [configfile] if isinstance(configfile, Path) else list(configfile)
    proc = subprocess.run(
        [sys.executable, "-m", "admin.status", *map(str, args), "--directory", str(workdir),
         "--configfile", *map(str, files), *(["--config", *config] if config else [])],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table of the output, as rows keyed by the header."""
    out, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            out.append([])
        elif set(line) - set("|-"):
            out[-1].append(dict(zip(header, cells, strict=True)))
    return out


def run_rows(text: str) -> dict[str, dict[str, str]]:
    """The runs' rows by "variant depth seedN"."""
    return {row["run"]: row for table in tables(text) for row in table if "run" in row}


def hours_rows(text: str) -> dict[str, dict[str, str]]:
    return {row["target"]: row for table in tables(text) for row in table if "target" in row}


def history(run: Path) -> str:
    return (run / "checkpoints" / "train.log").read_text(encoding="utf-8")


def assert_recent_wps(printed: str, text: str) -> None:
    """The status printed the mean wps of the newest 5 train_inner lines, to the token:
    within rounding (a mean of exactly x.5 may round either way, by the order of the sum)."""
    values = [float(v) for v in re.findall(r"train_inner .*\bwps=([0-9.]+)", text)][-5:]
    mean = sum(values) / len(values)
    assert abs(float(printed.replace(",", "")) - mean) <= 0.5 + 1e-6, (printed, mean)


def spent_hours(text: str) -> float:
    """GPUs x each attempt's span (its first fairseq line to its last), summed."""
    seconds = 0.0
    for attempt in text.split(ATTEMPT_MARKER):
        stamps = re.findall(r"(?m)^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \|", attempt)
        if stamps:
            first, last = (datetime.fromisoformat(s) for s in (stamps[0], stamps[-1]))
            seconds += (last - first).total_seconds()
    return GPUS * seconds / 3600


def checkpoint_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("*.pt"))


def assert_finished_row(row: dict[str, str], run: Path, max_epoch: int) -> None:
    """Epochs and updates are status.json's; the validation, speed and hours the history's."""
    done = json.loads((run / "status.json").read_text())
    text = history(run)
    assert row["epoch"] == f"{done['epochs']}/{max_epoch}", row
    assert row["update"] == str(done["num_updates"]), row
    assert row["valid nll_loss"] == f"{parse(text.splitlines()).valid_curve()[-1].nll_loss:.3f}"
    assert_recent_wps(row["tokens/s"], text)
    assert row["ETA"] == "—", row
    assert row["GPU-hours"] == f"{spent_hours(text):.3g}", row


# --------------------------------------------------------------------------- the runs


class Tiny:
    """The workdir, its config file and the run folders, with what was seen on the way."""

    def __init__(self, base: Path, databin: Path):
        self.base = base
        self.workdir = base / "work"
        self.results = self.workdir / "results" / "tiny"
        self.databin = databin
        data_bin = self.workdir / "resources" / "tiny" / "data-bin"  # for admin.budget
        data_bin.parent.mkdir(parents=True)
        data_bin.symlink_to(databin)
        self.config = base / "tiny.yaml"
        self.config.write_text(yaml.safe_dump(tiny_config(), sort_keys=False))
        self.seconds: dict[str, float] = {}
        self.before = ""  # the status before the live run, the stopped run not yet continued
        self.stopped = base / "stopped"  # the stopped run's status and history, kept then
        self.stopped_files: list[str] = []  # and its checkpoints' names
        # a copy of the stopped run, scored (its key's folder layout, under another root)
        self.scored_stopped = base / "scored" / "results" / "tiny" / "postln" / "6-6" / "seed1"
        self.training_row: dict[str, str] = {}  # preln 6-6's row while it trained
        self.live: subprocess.Popen | None = None

    def run(self, variant: str, depth: str) -> Path:
        return self.results / variant / depth / "seed1"

    def status(self, *args: Any) -> str:
        return status("tiny", *args, workdir=self.workdir, configfile=self.config)

    def train(self, variant: str, depth: str, divergence: dict | None = None, **hp: Any) -> None:
        extra = ["--divergence", json.dumps(divergence)] if divergence else []
        t0 = time.monotonic()
        ok(run_step("train", *train_args(self.databin, self.run(variant, depth), variant,
                                         *extra, depth=depth, **hp)))  # fmt: skip
        self.seconds[f"{variant} {depth}"] = time.monotonic() - t0

    def keep_stopped(self) -> None:
        run = self.run("postln", "6-6")
        (self.stopped / "checkpoints").mkdir(parents=True)
        for name in ("status.json", "checkpoints/train.log"):
            shutil.copyfile(run / name, self.stopped / name)
        self.stopped_files = checkpoint_files(run)

    def score_stopped(self) -> None:
        """A copy of the stopped run, averaged and scored as the workflow would score it
        (``checkpoints.keep: none``), before the run itself is continued."""
        copy = self.scored_stopped
        shutil.copytree(self.run("postln", "6-6"), copy)
        ok(run_step("average", "--checkpoints", copy / "checkpoints", "--status",
                    copy / "status.json", "--last", 1, "--out", copy / "average.json"))  # fmt: skip
        ok(run_step(
            "evaluate", "--data-bin", self.databin, "--average", copy / "average.json",
            "--hparams", GENERATE, "--device", "cpu", "--keep-checkpoints", "none",
        ))  # fmt: skip

    def watch_training(self) -> None:
        """preln 6-6 trained by admin.train in the background, watched until the status
        shows it training at a measured speed, then killed as a time limit would."""
        args = train_args(self.databin, self.run("preln", "6-6"), "preln", depth="6-6", **LIVE)
        self.live = subprocess.Popen(
            step_cmd("train", *args),
            cwd=REPO,
            env=step_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline, row = time.monotonic() + 600, {}
            while not (row.get("state", "").startswith("training") and row["ETA"] != "—"):
                assert self.live.poll() is None, f"admin.train ended before it was seen: {row}"
                assert time.monotonic() < deadline, f"never seen training: {row}"
                row = run_rows(self.status())["preln 6-6 seed1"]
            self.training_row = row
        finally:
            self.live.send_signal(signal.SIGTERM)
            self.live.wait(timeout=120)


@pytest.fixture(scope="module")
def tiny(tiny_databin: Path, tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    t = Tiny(tmp_path_factory.mktemp("status"), tiny_databin)
    # admin 2-2: the session's trained Admin run, copied, then averaged and scored here
    scored = t.run("admin", "2-2")
    shutil.copytree(trained_admin_run(tiny_databin, tmp_path_factory), scored)
    ok(
        run_step(
            "average",
            "--checkpoints",
            scored / "checkpoints",
            "--status",
            scored / "status.json",
            "--last",
            3,
            "--out",
            scored / "average.json",
        )
    )
    ok(
        run_step(
            "evaluate",
            "--data-bin",
            tiny_databin,
            "--average",
            scored / "average.json",
            "--hparams",
            GENERATE,
            "--device",
            "cpu",
            "--keep-checkpoints",
            "all",
        )
    )
    t.train("postln", "2-2")
    t.train("postln", "6-6", JUDGED, **PLATEAU)  # stopped early on the plateau
    t.before = t.status()
    t.keep_stopped()
    t.score_stopped()
    t.watch_training()
    t.train("postln", "6-6", {**JUDGED, "stop_early": False}, **PLATEAU)  # to its end
    return t


def test_finished_stopped_and_never_started_runs(tiny: Tiny):
    out = tiny.before
    rows = run_rows(out)
    assert list(rows) == [f"{v} {d} seed1" for v in MATRIX["variants"] for d in MATRIX["depths"]]

    scored = tiny.run("admin", "2-2")
    bleu = json.loads((scored / "scores.json").read_text())["bleu_tokenized"]
    assert rows["admin 2-2 seed1"]["state"] == f"scored: BLEU {bleu:.2f}"
    assert_finished_row(rows["admin 2-2 seed1"], scored, 3)

    assert rows["postln 2-2 seed1"]["state"] == "completed, not scored"
    assert_finished_row(rows["postln 2-2 seed1"], tiny.run("postln", "2-2"), 3)
    # the hours are the history's span: within the time the step took, times the GPUs
    spent = float(rows["postln 2-2 seed1"]["GPU-hours"])
    assert 0 < spent <= GPUS * tiny.seconds["postln 2-2"] / 3600 * 1.01

    verdict = json.loads((tiny.stopped / "status.json").read_text())
    assert verdict["stopped_early"] is True
    assert rows["postln 6-6 seed1"]["state"] == "stopped: fails to train"
    assert_finished_row(rows["postln 6-6 seed1"], tiny.stopped, PLATEAU["max_epoch"])
    assert f"- postln 6-6 seed1: {verdict['reason']}" in out.splitlines()

    for never in ("preln 2-2 seed1", "admin 6-6 seed1", "preln 6-6 seed1"):
        assert rows[never]["state"] == "waiting"
        assert set(rows[never].values()) - {never, "waiting"} == {"—"}, rows[never]

    # the GPU-hours of the target: admin.budget's estimate, what was spent, what is left
    cfg, _ = load([tiny.config], [])
    priced = budget.runs(cfg, "tiny", tiny.workdir / "resources")
    estimate = sum(r.plan.gpu_hours(budget.Hardware()) for r in priced)
    hours = hours_rows(out)["tiny"]
    assert hours["runs"] == "6" and hours["finished"] == "3"
    assert hours["estimate"] == budget.num(estimate)
    used = sum(float(r["GPU-hours"]) for r in rows.values() if r["GPU-hours"] != "—")
    # the rows are rounded to 3 significant digits (0.5 % at most), the totals to 2
    near = (used * 0.995, used, used * 1.005)
    assert hours["spent"] in {budget.num(u) for u in near}, (hours, used)
    assert hours["left"] in {budget.num(estimate - u) for u in near}, (hours, used)


def test_a_training_run_then_killed(tiny: Tiny):
    """While admin.train ran: ``training (pid N)`` with its progress, speed and ETA;
    killed, the run is ``interrupted`` where its history ends."""
    row, live = tiny.training_row, tiny.run("preln", "6-6")
    assert tiny.live is not None and row["state"] == f"training (pid {tiny.live.pid})"
    progress = parse(history(live).splitlines())
    epoch, max_epoch = (int(x) for x in row["epoch"].split("/"))
    assert 1 <= epoch <= max_epoch == LIVE["max_epoch"]
    assert 1 <= int(row["update"]) <= progress.num_updates
    assert float(row["tokens/s"].replace(",", "")) > 0
    assert re.fullmatch(r"\d+s|\d+m|\d+h\d\dm|\d+d\d\dh", row["ETA"]), row

    assert tiny.live.returncode != 0 and not (live / "status.json").exists()
    row = run_rows(tiny.status())["preln 6-6 seed1"]
    assert row["state"] == "interrupted" and row["ETA"] == "—"
    assert row["update"] == str(progress.num_updates)
    assert row["epoch"] == f"{max(p.epoch for p in progress.train_inner)}/{max_epoch}"
    assert_recent_wps(row["tokens/s"], history(live))


def test_a_flagged_run(tiny: Tiny):
    """The stopped run, continued without stop_early to its 8 epochs: flagged there."""
    row = run_rows(tiny.status())["postln 6-6 seed1"]
    assert row["state"] == "flagged: fails to train"
    assert_finished_row(row, tiny.run("postln", "6-6"), PLATEAU["max_epoch"])
    assert row["epoch"] == "8/8"


def test_a_run_stopped_by_a_verdict_is_scored_kept_and_continued(tiny: Tiny):
    """A verdict through the real steps: admin.train stops the run on the plateau and leaves
    it resumable; admin.average and admin.evaluate score it and delete nothing of it; the
    same criterion without stop_early continues it from its checkpoint, not afresh."""
    # 1. Stopped early, on the third validation in a row on the plateau (update 115 of 184).
    stopped = json.loads((tiny.stopped / "status.json").read_text())
    assert stopped["status"] == "diverged" and stopped["rule"] == "fails to train", stopped
    assert stopped["stopped_early"] is True and stopped["num_updates"] == 115
    assert stopped["evidence"]["stall"]["plateau_since_update"] == 69
    text = history(tiny.stopped)
    assert "admin.train: stopped: fails to train" in text
    assert "done training" not in text  # fairseq was stopped, not finished
    assert "checkpoint_last.pt" in tiny.stopped_files, tiny.stopped_files

    # 2. Averaged and scored like any other run; checkpoints.keep none deletes nothing.
    copy = tiny.scored_stopped
    average = json.loads((copy / "average.json").read_text())
    assert average["status"] == "diverged" and average["checkpoint"] == "checkpoint_avg.pt"
    scores = json.loads((copy / "scores.json").read_text())
    assert scores["status"] == "diverged" and isinstance(scores["bleu_tokenized"], float)
    assert scores["num_sentences"] == 60
    assert checkpoint_files(copy) == tiny.stopped_files

    # 3. Continued without stop_early to its stop conditions (8 epochs) and judged there.
    run = tiny.run("postln", "6-6")
    done = json.loads((run / "status.json").read_text())
    assert done["num_updates"] == 8 * 23 and done["epochs"] == 8
    assert done["status"] == "diverged" and done["stopped_early"] is False
    second = history(run).split(ATTEMPT_MARKER)[-1]
    loaded = re.search(r"Loaded checkpoint \S+ \(epoch (\d+) @ (\d+) updates\)", second)
    assert loaded is not None, second[-3000:]
    assert int(loaded[2]) >= 92 and "No existing checkpoint found" not in second
    counts = [int(n) for n in re.findall(r"num_updates (\d+)", second)]
    assert min(counts) > int(loaded[2])  # continues after the checkpoint, not from update 1
    assert not list(run.glob("checkpoints.superseded-*"))  # nothing was moved aside


def test_watch_refreshes_until_interrupted(tiny: Tiny):
    proc = subprocess.Popen(
        [sys.executable, "-m", "admin.status", "tiny", "--directory", str(tiny.workdir),
         "--configfile", str(tiny.config), "--watch", "0.5"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []  # when each refresh's first line arrived
    for line in proc.stdout:
        if line.startswith("# tiny: 6 runs, "):
            seen.append(time.monotonic())
        if len(seen) == 2:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.5  # N seconds between refreshes
    bounded = tiny.status("--watch", "0.2", "--count", "3")
    assert bounded.count("# tiny: 6 runs, ") == 3


# --------------------------------------------------------------------------- 155 runs


VARIANTS = ["postln", "preln", "admin", "admin-logn", "deepnet"]


def test_155_run_folders_are_read_from_their_tails(tiny: Tiny, tmp_path: Path):
    """A target of 155 runs, each folder made of a real one's files: every state and
    number as in the real folder.  Every history is one file of tens of MB (hard
    links), so reading whole histories would show; the time is printed (the speed
    target is a benchmark's)."""
    templates = {  # run folder -> the real folder it copies
        "scored": tiny.run("admin", "2-2"), "completed": tiny.run("postln", "2-2"),
        "flagged": tiny.run("postln", "6-6"), "interrupted": tiny.run("preln", "6-6"),
        "waiting": None,
    }  # fmt: skip
    expected = run_rows(tiny.status())
    by_template = {name: expected[f"{p.parts[-3]} {p.parts[-2]} seed1"]
                   for name, p in templates.items() if p}  # fmt: skip
    # one long history: the real flagged run's, repeated to ~40 MB (its tail is unchanged)
    big = tmp_path / "big.log"
    text = history(templates["flagged"])
    big.write_text(text * (40 * 2**20 // len(text) + 1), encoding="utf-8")
    workdir = tmp_path / "work"
    names = list(templates)
    seeds = list(range(1, 32))
    want = {}
    for i, (variant, seed) in enumerate((v, s) for v in VARIANTS for s in seeds):
        name = names[i % len(names)]
        run = workdir / "results" / "tiny" / variant / "2-2" / f"seed{seed}"
        (run / "checkpoints").mkdir(parents=True)
        source = templates[name]
        if source is not None:
            for file in ("recipe.json", "status.json", "scores.json"):
                if (source / file).exists():
                    os.link(source / file, run / file)
            os.link(big if name == "flagged" else source / "checkpoints" / "train.log",
                    run / "checkpoints" / "train.log")  # fmt: skip
            # where each attempt starts: the long history begins with the real one
            os.link(
                source / "checkpoints" / "attempts.jsonl", run / "checkpoints" / "attempts.jsonl"
            )
        want[f"{variant} 2-2 seed{seed}"] = name
    config = tmp_path / "155.yaml"
    config.write_text(yaml.safe_dump(tiny_config(
        {"variants": VARIANTS, "depths": ["2-2"], "seeds": seeds})))  # fmt: skip
    t0 = time.monotonic()
    out = status("tiny", workdir=workdir, configfile=config)
    seconds = time.monotonic() - t0
    print(f"\nadmin.status read 155 run folders in {seconds:.2f} s (the whole command)")
    rows = run_rows(out)
    assert len(rows) == 155 == len(want)
    for run, name in want.items():
        row = rows[run]
        if name == "waiting":
            assert row["state"] == "waiting" and row["update"] == "—", row
            continue
        template = dict(by_template[name])  # the long history's ends are the real one's
        if name == "interrupted":  # unfinished: E is the config's, 3 at 2-2 (8 at 6-6)
            template["epoch"] = template["epoch"].replace("/8", "/3")
        assert {k: v for k, v in row.items() if k != "run"} == {
            k: v for k, v in template.items() if k != "run"}, (run, name)  # fmt: skip
    assert hours_rows(out)["tiny"]["finished"] == str(
        sum(n in ("scored", "completed", "flagged") for n in want.values()))  # fmt: skip


def test_bad_input_is_named(tiny: Tiny, tmp_path: Path):
    def fails(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "admin.status", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2, proc.stdout + proc.stderr
        return proc.stderr

    assert "target 'nope': dataset 'nope' is not defined under experiments" in fails("nope")
    assert fails("nope").rstrip().endswith(", or all")
    assert "--watch: expected a number of seconds > 0, got '0'" in fails("all", "--watch", "0")
    assert f"--directory {tmp_path / 'absent'} is not a folder" in fails(
        "all", "--directory", str(tmp_path / "absent"))  # fmt: skip
    assert "--configfile nowhere.yaml does not exist" in fails("all", "--configfile",
                                                               "nowhere.yaml")  # fmt: skip
    # a broken file in one run folder: that row says so, naming the file; the rest print
    broken = tmp_path / "work"
    shutil.copytree(tiny.workdir / "results", broken / "results", symlinks=True)
    status_file = broken / "results" / "tiny" / "postln" / "2-2" / "seed1" / "status.json"
    status_file.write_text("{not json")
    out = status("tiny", workdir=broken, configfile=tiny.config)
    row = run_rows(out)["postln 2-2 seed1"]
    assert row["state"] == "unreadable"
    assert f"- postln 2-2 seed1: the training status {status_file} is not valid JSON" in out
    assert run_rows(out)["admin 2-2 seed1"]["state"].startswith("scored: BLEU ")
