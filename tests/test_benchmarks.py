"""The benchmark runner's mechanics: statistics, interleaving, the results file, the
parsers of Snakemake's outputs, the FLOP count, and the GPU script's code path on CPU.
No timing is asserted: figures belong in benchmarks/results, never in tests."""

from __future__ import annotations

import math
import re
import time
from datetime import date
from pathlib import Path

import pytest

import benchmarks.__main__ as runner
from benchmarks import BENCHMARKS, demo_wall_time, planning
from benchmarks.core import Figure, Result, Target, interleave, ratios, summarise
from benchmarks.gpu_throughput import Config, train_flops
from benchmarks.report import Run, render, results_path, write


def test_summary_median_spread_and_quartiles():
    s = summarise([5.0, 1.0, 3.0])
    assert (s.n, s.median, s.low, s.high) == (3, 3.0, 1.0, 5.0)
    assert s.q1 is None and s.q3 is None  # too few for quartiles
    s = summarise([4, 1, 3, 2, 100])
    assert s.median == 3 and (s.low, s.high) == (1, 100)
    assert (s.q1, s.q3) == (2, 4)  # the outlier moves max, not the IQR
    assert summarise([2.0]).median == 2.0
    with pytest.raises(ValueError):
        summarise([])
    with pytest.raises(ValueError):
        summarise([1.0, math.nan])


def test_target_is_judged_on_the_median():
    fig = Figure("b", "ratio", [0.90, 0.98, 0.99], target=Target(">=", 0.97))
    assert fig.met() == "yes"
    fig.samples = [0.90, 0.91, 0.99]
    assert fig.met() == "no"
    assert Figure("b", "wall", [700.0], "s", Target("<=", 600, "s")).met() == "no"
    assert Figure("b", "count", [3.0]).met() == "n.a."
    assert Target("<=", 3, "s").text() == "≤ 3 s"
    with pytest.raises(ValueError):
        Target("<", 3)


def test_interleave_rotates_the_order_and_respects_the_deadline():
    calls: list[str] = []

    def task(name: str):
        def run() -> float:
            calls.append(name)
            return float(len(calls))

        return run

    samples = interleave({n: task(n) for n in "ABC"}, rounds=3)
    assert "".join(calls) == "ABC" + "BCA" + "CAB"
    assert samples == {"A": [1, 6, 8], "B": [2, 4, 9], "C": [3, 5, 7]}
    calls.clear()
    past = time.monotonic() - 1
    samples = interleave({n: task(n) for n in "AB"}, rounds=5, deadline=past)
    assert calls == ["A", "B"]  # the first round always runs
    assert ratios([2.0, 6.0], [1.0, 3.0]) == [2.0, 2.0]
    with pytest.raises(ValueError):
        ratios([1.0], [1.0, 2.0])


def _run(results: dict[str, Result], errors: dict[str, str]) -> Run:
    machine = {"host": "box", "CPU": "Test CPU | 2 cores"}
    return Run(date(2026, 1, 2), "python -m benchmarks", machine, results, errors, 1.5, "0.1")


def test_markdown_table_rows_notes_details_and_failures(tmp_path):
    figs = [
        Figure("planning", "dry run, wall", [2.0, 1.0, 3.0, 2.5], "s", Target("<=", 3, "s")),
        Figure("planning", "jobs", [134.0]),
    ]
    run = _run(
        {"planning": Result(figs, ["in an empty folder"], "| job | s |")},
        {"demo_wall_time": "RuntimeError: the demo failed"},
    )
    text = render(run)
    assert text.startswith("# Benchmarks, 2026-01-02, box\n")
    assert "| CPU | Test CPU \\| 2 cores |" in text  # a pipe in a cell does not split it
    header = "| benchmark | figure | median | spread | repeats | target | met? |"
    assert header in text
    rows = [line for line in text.splitlines() if line.startswith("| planning |")]
    assert rows[0] == (
        "| planning | dry run, wall (s) | 2.25 | 1.00–3.00 (IQR 1.75–2.62) | 4 | ≤ 3 s | yes |"
    )
    assert rows[1] == "| planning | jobs | 134 | — | 1 | — | n.a. |"
    assert "| demo_wall_time | failed: RuntimeError: the demo failed | — | — | 0 | — | no |" in text
    assert "- **planning**: in an empty folder" in text
    assert "## Details: planning" in text
    out = tmp_path / "results" / "x.md"
    write(run, out)
    assert out.read_text(encoding="utf-8") == text
    assert [p.name for p in out.parent.iterdir()] == ["x.md"]  # no temporary left behind


def test_results_file_names():
    day = date(2026, 11, 29)
    assert results_path(day, "vm", False, []).name == "2026-11-29-vm.md"
    assert results_path(day, "vm", True, []).name == "2026-11-29-vm-quick.md"
    named = results_path(day, "vm", True, ["planning", "preprocessing"])
    assert named.name == "2026-11-29-vm-quick-only-planning-preprocessing.md"
    assert results_path(day, "vm", False, []).parent == Path(runner.__file__).parent / "results"


def test_runner_writes_the_file_and_reports_a_failing_benchmark(tmp_path, monkeypatch, capsys):
    def fake(name, ctx):
        assert ctx.quick and ctx.threads == 1 and ctx.workdir.is_dir()
        if name == "preprocessing":
            raise RuntimeError("no data")
        return Result([Figure(name, "dry run, wall", [1.0, 2.0], "s", Target("<=", 3, "s"))])

    monkeypatch.setattr(runner, "run_one", fake)
    out = tmp_path / "r.md"
    code = runner.main(["--only", "preprocessing", "planning", "--quick", "--out", str(out)])
    assert code == 1  # a failed benchmark fails the command, after writing the others
    text = out.read_text(encoding="utf-8")
    assert "| planning | dry run, wall (s) | 1.50 | 1.00–2.00 | 2 | ≤ 3 s | yes |" in text
    assert "| preprocessing | failed: RuntimeError: no data |" in text
    assert "`python -m benchmarks --only preprocessing planning --quick --out" in text
    assert runner.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(re.search(rf"^{name}\s", listed, re.M) for name in BENCHMARKS)


def test_dry_run_job_count_and_demo_stage_split(tmp_path):
    dry = "Job stats:\njob  count\n---  -----\ntrain  30\npaper_all 1\ntotal          134\n"
    assert planning.job_count(dry) == 134
    with pytest.raises(RuntimeError):
        planning.job_count("Building DAG of jobs...")
    bench = tmp_path / "logs" / "benchmarks"
    header = "s\th:m:s\tmax_rss\tmax_vms\n"
    for rel, seconds in {
        "demo/tokenize.tsv": 5.0,
        "demo/postln/2-2/seed1/train.tsv": 60.0,
        "demo/admin/2-2/seed1/train.tsv": 90.5,
        "demo/admin/2-2/seed1/profile.tsv": 20.0,
    }.items():
        (bench / rel).parent.mkdir(parents=True, exist_ok=True)
        (bench / rel).write_text(header + f"{seconds}\t0:00:{int(seconds)}\t100\t200\n")
    jobs = demo_wall_time.job_seconds(bench)
    assert jobs["demo/admin/2-2/seed1/train.tsv"] == 90.5
    stages = demo_wall_time.per_stage(jobs)
    assert stages == {"tokenize": (5.0, 1), "profile": (20.0, 1), "train": (150.5, 2)}
    assert list(stages) == ["tokenize", "profile", "train"]  # pipeline order


def test_flop_count_is_the_documented_formula():
    one = Config(dim=1, ffn=1, heads=1, vocab=1, sentences=1, src_len=1, tgt_len=1)
    # encoder 8+4+4 = 16, decoder 12+4+4+4+4 = 28, output 2: forward 46, training 3x
    assert train_flops(one, layers=1) == 138
    cfg = Config()  # 512 wide, FFN 2048, vocab 32768, 256 x 32 tokens
    per_layer = train_flops(cfg, 7) - train_flops(cfg, 6)
    assert train_flops(cfg, 18) == pytest.approx(train_flops(cfg, 6) + 12 * per_layer)
    assert cfg.peak() == 989.0 and Config(device="cpu").peak() is None


def test_gpu_script_runs_on_cpu(capsys):
    """The GPU script's whole code path (bf16 autocast, Admin's profile, the table) on a
    tiny CPU model: the only way to exercise it without a GPU."""
    from benchmarks import gpu_throughput

    argv = ["--device", "cpu", "--smoke", "--layers", "1", "--rounds", "1", "--steps", "1"]
    assert gpu_throughput.main([*argv, "--variants", "transformer", "admin"]) == 0
    out = capsys.readouterr().out
    rows = {m[1]: float(m[2]) for m in re.finditer(r"^\s+1 (.+?)\s{2,}(\d+) ", out, re.M)}
    assert set(rows) == {"transformer", "admin", "stock fwd+bwd"}
    assert all(v > 0 for v in rows.values())
    assert "peak not applied" in out


def test_padded_databin_has_the_requested_vocabulary(tmp_path):
    """checkpoint_sizes' data-bin: real sentences, the joined dictionary padded to a
    preset's size by fairseq-preprocess --srcdict, the same token ids as unpadded."""
    from fairseq.data import Dictionary, data_utils

    from benchmarks.core import Context
    from benchmarks.databin import iwslt_databin, padded_databin

    ctx = Context(quick=True, threads=1, workdir=tmp_path)
    padded = padded_databin(ctx, 50, 10008)
    base = iwslt_databin(ctx, 50)
    for lang in ("de", "en"):
        assert len(Dictionary.load(str(padded / f"dict.{lang}.txt"))) == 10008
        pair = f"train.de-en.{lang}"
        ids = [data_utils.load_indexed_dataset(str(b / pair)) for b in (base, padded)]
        assert len(ids[0]) == len(ids[1]) == 50
        assert all(ids[0][i].tolist() == ids[1][i].tolist() for i in range(50))
    assert padded_databin(ctx, 50, 10008) == padded  # made once per run


def test_the_wmt_sized_target_is_the_base_target_repeated_as_fairseq_reads_it(
    tiny_databin, tmp_path
):
    from fairseq.data import data_utils

    from admin.baselines import bigram_baseline
    from benchmarks.divergence_baselines import wmt_sized_databin

    dest = tmp_path / "big"
    tokens = wmt_sized_databin(tiny_databin, dest, 1500)  # 600 sentences, 3 times over
    base = data_utils.load_indexed_dataset(str(tiny_databin / "train.de-en.en"), None)
    big = data_utils.load_indexed_dataset(str(dest / "train.de-en.en"), None)
    assert len(base) == 600 and len(big) == 1800
    assert tokens == 3 * sum(len(base[i]) for i in range(600))
    assert all(big[k].tolist() == base[k % 600].tolist() for k in (0, 599, 600, 1234, 1799))
    # the valid target and the dictionaries are the base's: the baseline reads them
    assert bigram_baseline(dest).valid_tokens == bigram_baseline(tiny_databin).valid_tokens
    assert bigram_baseline(dest).train_total == tokens
