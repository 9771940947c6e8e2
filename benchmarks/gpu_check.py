"""The Python half of ``scripts/gpu-check.sh``: the demo overlay it runs, and the report
that checks the figures and writes them down (docs/gpu-check.md).

    python -m benchmarks.gpu_check overlay --mode gpu|cpu-smoke --out FILE
    python -m benchmarks.gpu_check targets --mode gpu|cpu-smoke
    python -m benchmarks.gpu_check report --mode gpu|cpu-smoke --work DIR --seconds S --out FILE

``gpu``: Post-LN and Admin with the demo's recipe at 2-2 and 6-6 on one GPU, with the paper
presets' fp16 settings (read from config/paper_*.yaml).  ``cpu-smoke``: the same
sequence with a small corpus, one depth and two epochs, on the CPU and in fp32 (fairseq's
fp16 optimizer needs CUDA).

The report exits 1 when a check fails: a phase of the script failed or timed out; a run
is missing a file, did not complete (diverged), logged a non-finite loss or did not
lower its validation loss; an Admin profile is missing, does not fit or holds a
non-finite or non-positive omega; on the GPU, a run did not train on CUDA, fp16 was
not in effect (no loss scale logged), the loss scale fell below the threshold, or a 2-2
run scored below :data:`MIN_BLEU_2_2`; the throughput table is missing or empty.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.core import REPO, fmt

MODES = ("gpu", "cpu-smoke")
VARIANTS = ("postln", "admin")
DEPTHS = {"gpu": ("2-2", "6-6"), "cpu-smoke": ("2-2",)}
SEED = 1
FP16_KEYS = ("fp16", "fp16_scale_window", "threshold_loss_scale")
PRESETS = ("paper_iwslt14_de_en", "paper_wmt14_en_de", "paper_wmt14_en_fr")
# The CPU demo (fp32, 12 epochs) scores 70.8 (Admin) and 69.5 (Post-LN) at 2-2, seed 1
# (config/config.yaml); after the check's 3 epochs, a 2-2 run under 5 BLEU has not learned.
MIN_BLEU_2_2 = 5.0
# The fp16/CUDA path is what is checked, not the demo's numbers: 3 of the demo's 12 epochs
# (312 updates) keep the four runs, one at a time, inside the workflow phase's limit.
GPU_EPOCHS = 3
# The CPU smoke: the demo, small (about a minute of the workflow on 2 cores).
SMOKE = {
    "data": {"corpus": {"seed": 1, "train": 1000, "valid": 50, "test": 50}, "bpe_merges": 300},
    "hparams": {"max_epoch": 2, "warmup_updates": 10},
    "generate": {"beam": 2, "batch_size": 50},
}
RUNS = "run"  # the workflow's folder below the work folder


def fp16_settings(repo: Path = REPO) -> dict[str, Any]:
    """The presets' fp16 options; they must agree (one GPU path is checked for all)."""
    import yaml

    found: dict[str, dict[str, Any]] = {}
    for name in PRESETS:
        path = repo / "config" / f"{name}.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for dataset, exp in (doc.get("experiments") or {}).items():
            hparams = exp.get("hparams") or {}
            found[f"{path.name}: {dataset}"] = {k: hparams.get(k) for k in FP16_KEYS}
    settings = list(found.values())
    if not settings or any(s != settings[0] for s in settings) or not settings[0]["fp16"]:
        raise SystemExit(f"the presets' fp16 settings differ or are off: {found}")
    return settings[0]


def overlay(mode: str) -> dict[str, Any]:
    """The config overlay (on config/config.yaml) of the check's demo runs."""
    demo: dict[str, Any] = {
        "matrix": {"variants": list(VARIANTS), "depths": list(DEPTHS[mode]), "seeds": [SEED]},
        "hparams": {"log_interval": 10},
    }
    if mode == "gpu":
        demo["hparams"].update(fp16_settings(), max_epoch=GPU_EPOCHS)
        demo["resources"] = {rule: {"gpus": 1} for rule in ("profile", "train", "evaluate")}
    else:
        demo = _merge(demo, SMOKE)
        demo["hparams"]["log_interval"] = 5
    return {"datasets": ["demo"], "experiments": {"demo": demo}}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def run_folders(mode: str) -> list[Path]:
    """The run folders, relative to the workflow's folder."""
    from admin.common.run_folder import RunKey

    return [
        RunKey("demo", variant, depth, SEED).folder("results")
        for depth in DEPTHS[mode]
        for variant in VARIANTS
    ]


# --------------------------------------------------------------------------- reading

_INNER = re.compile(r"\| train_inner \| epoch \d+:\s+\d+ / \d+ (.*)$")
_KV = re.compile(r"(\w+)=([^,\s]+)")
_CUDA_NAME = re.compile(r"rank\s+\d+: capabilities = .*; name = (.+?)\s*$")
_OVERFLOW = "gradient overflow detected"


@dataclass
class RunFigures:
    """What one run's files say."""

    folder: Path
    variant: str
    depth: str
    problems: list[str] = field(default_factory=list)
    status: str = "missing"
    updates: int = 0
    ms_per_update: float = math.nan
    tokens_per_s: float = math.nan
    loss_scales: list[float] = field(default_factory=list)
    overflows: int = 0
    gpu: str | None = None
    valid_losses: list[float] = field(default_factory=list)
    bleu: float = math.nan
    sacrebleu: float = math.nan
    omegas: dict[str, list[float]] = field(default_factory=dict)
    profile_gpu: str | None = None
    profile_fp16: bool | None = None
    profile_dtype: str | None = None  # the profile's meta: the dtype its forward ran in
    job_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.variant} {self.depth}"


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def train_inner_fields(text: str) -> list[dict[str, float]]:
    """The ``key=value`` fields of fairseq's ``train_inner`` lines, as numbers."""
    rows = []
    for line in text.splitlines():
        if m := _INNER.search(line):
            row = {}
            for key, value in _KV.findall(m[1]):
                try:
                    row[key] = float(value)
                except ValueError:
                    row[key] = math.nan
            rows.append(row)
    return rows


def read_run(workflow: Path, folder: Path, mode: str) -> RunFigures:
    from admin.common import profiling
    from admin.common import run_folder as rf
    from admin.common.fairseq_log import parse

    key = rf.key_of(folder)
    run = RunFigures(folder, key.variant, key.depth)
    path = workflow / folder
    log_path = path / "train.log"
    if not log_path.is_file():
        run.problems.append(f"{folder}/train.log is missing")
        return run
    text = log_path.read_text(encoding="utf-8", errors="replace")
    rows = train_inner_fields(text)
    progress = parse(text.splitlines())
    run.updates = progress.num_updates
    run.valid_losses = [p.loss for p in progress.valid_curve()]
    # the median interval: robust to the ones that hold start-up, validation or saving
    ups = [r["ups"] for r in rows if r.get("ups", 0) > 0]
    run.ms_per_update = 1000 / _median(ups) if ups else math.nan
    run.tokens_per_s = _median([r["wps"] for r in rows if "wps" in r])
    run.loss_scales = [r["loss_scale"] for r in rows if "loss_scale" in r]
    run.overflows = text.count(_OVERFLOW)
    names = _CUDA_NAME.findall(text)
    run.gpu = names[-1] if names else None
    for point in (*progress.train_inner, *progress.train_epochs, *progress.valid):
        if not math.isfinite(point.loss):
            run.problems.append(f"{run.name}: loss {point.loss} at update {point.num_updates}")
            break

    status_path = path / "status.json"
    if status_path.is_file():
        status = rf.read_status(status_path)
        run.status = status.status
        if status.diverged:
            run.problems.append(f"{run.name} diverged: {status.reason}")
    else:
        run.problems.append(f"{folder}/status.json is missing")
    scores_path = path / "scores.json"
    if scores_path.is_file():
        scores = json.loads(scores_path.read_text(encoding="utf-8"))
        run.bleu = float(scores.get("bleu_tokenized", math.nan))
        run.sacrebleu = float(scores.get("sacrebleu", math.nan))
        if not (math.isfinite(run.bleu) and math.isfinite(run.sacrebleu)):
            run.problems.append(f"{run.name}: scores.json has no finite BLEU ({scores})")
    else:
        run.problems.append(f"{folder}/scores.json is missing")
    if len(run.valid_losses) < 2 or not run.valid_losses[-1] < run.valid_losses[0]:
        run.problems.append(
            f"{run.name}: the validation loss did not fall ({run.valid_losses}): it did not train"
        )

    if key.variant == "admin":
        try:
            prof = profiling.read_profile(path / "profile.json")
            enc, dec = rf.parse_depth(key.depth)
            profiling.check_fits(
                path / "profile.json", prof, encoder_layers=enc, decoder_layers=dec,
                encoder_embed_dim=prof.encoder.embed_dim, decoder_embed_dim=prof.decoder.embed_dim,
            )  # fmt: skip
            run.omegas = {"encoder": prof.encoder.omegas, "decoder": prof.decoder.omegas}
            run.profile_dtype = prof.meta.get("dtype")
        except Exception as err:  # the message names the file and what is wrong
            run.problems.append(f"{run.name}: {err}")
        profile_log = workflow / "logs" / folder.relative_to("results") / "profile.fairseq.log"
        if profile_log.is_file():
            ptext = profile_log.read_text(encoding="utf-8", errors="replace")
            pnames = _CUDA_NAME.findall(ptext)
            run.profile_gpu = pnames[-1] if pnames else None
            run.profile_fp16 = "'fp16': True" in ptext
        else:
            run.problems.append(f"{run.name}: the profiling log {profile_log} is missing")

    if mode == "gpu":
        if run.gpu is None:
            run.problems.append(
                f"{run.name}: train.log shows no CUDA device: it trained on the CPU"
            )
        if not run.loss_scales:
            run.problems.append(f"{run.name}: no loss_scale in train.log: fp16 was not in effect")
        threshold = fp16_settings()["threshold_loss_scale"]
        low = [s for s in run.loss_scales if not s >= threshold]
        if low:
            run.problems.append(
                f"{run.name}: the loss scale fell to {min(low)}, below the threshold {threshold}"
            )
        if key.variant == "admin" and (
            run.profile_gpu is None or not run.profile_fp16 or run.profile_dtype != "torch.float16"
        ):
            run.problems.append(
                f"{run.name}: the profiling run was not on CUDA with fp16 (device: "
                f"{run.profile_gpu}, fp16: {run.profile_fp16}, profiled in {run.profile_dtype})"
            )
        if key.depth == "2-2" and not run.bleu >= MIN_BLEU_2_2:
            run.problems.append(
                f"{run.name}: BLEU {run.bleu} is below {MIN_BLEU_2_2} (the CPU demo scores "
                "11.7-16.4 at 2-2): fp16 training did not learn"
            )
    return run


def job_times(workflow: Path) -> dict[str, float]:
    """Seconds of each job with a benchmark file, keyed by its path below logs/benchmarks."""
    from benchmarks.demo_wall_time import job_seconds

    folder = workflow / "logs" / "benchmarks"
    return job_seconds(folder) if folder.is_dir() else {}


def read_phases(work: Path) -> list[dict[str, str]]:
    path = work / "phases.tsv"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:] if line]


def throughput_table(path: Path) -> tuple[list[str], list[str]]:
    """(the gpu_throughput table as text lines, problems)."""
    from benchmarks import gpu_throughput as gt
    from benchmarks.core import summarise

    if not path.is_file():
        return [], [f"{path} is missing: the throughput phase wrote no figures"]
    doc = json.loads(path.read_text(encoding="utf-8"))
    cfg_doc = dict(doc["config"])
    cfg_doc["depths"] = tuple(cfg_doc["depths"])
    cfg_doc["variants"] = tuple(cfg_doc["variants"])
    cfg = gt.Config(**cfg_doc)
    results = {int(layers): series for layers, series in doc["results"].items()}
    problems = []
    for layers, series in results.items():
        for name, samples in series.items():
            if not samples or not summarise(samples).median > 0:
                problems.append(f"throughput {layers} layers {name}: no positive figure")
    if not results:
        problems.append(f"{path} holds no results")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        gt.print_table(cfg, results)
    return buffer.getvalue().splitlines(), problems


# --------------------------------------------------------------------------- the report


def default_results_path(day: date | None = None) -> Path:
    """``benchmarks/results/<date>-gpu-check-<gpu>.md`` (the GPU's name, file-name safe)."""
    from benchmarks.report import RESULTS, machine_tag

    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        gpu = None
    tag = machine_tag(gpu.lower() if gpu else None)
    return RESULTS / f"{(day or date.today()).isoformat()}-gpu-check-{tag}.md"


def _omega_text(omegas: list[float]) -> str:
    rising = all(b >= a * 0.99 for a, b in zip(omegas, omegas[1:], strict=False))
    return (
        f"{len(omegas)} omegas, {fmt(min(omegas))}–{fmt(max(omegas))}, "
        f"{'non-decreasing' if rising else 'not monotone'}"
    )


def render(mode: str, work: Path, seconds: float) -> tuple[str, list[str]]:
    """The results file's text and the failed checks."""
    from benchmarks.report import machine_info

    workflow = work / RUNS
    phases = read_phases(work)
    problems = [
        f"phase {p['phase']} {p['status']} (log {p['log']})" for p in phases if p["status"] != "ok"
    ]
    ran = {p["phase"] for p in phases}
    runs = [read_run(workflow, folder, mode) for folder in run_folders(mode)] \
        if "workflow" in ran else []  # fmt: skip
    for run in runs:
        problems += run.problems
    jobs = job_times(workflow)
    if "throughput" in ran:
        table, tp_problems = throughput_table(work / "throughput.json")
        problems += tp_problems
    else:
        table = []
    fp16 = fp16_settings() if mode == "gpu" else None
    title = "GPU check" if mode == "gpu" else "GPU check, CPU smoke run"
    lines = [
        f"# {title}, {date.today().isoformat()}",
        "",
        f"`bash scripts/gpu-check.sh{' --cpu-smoke' if mode != 'gpu' else ''}`: "
        f"{seconds / 60:.1f} min in all; "
        + ("**all checks passed**." if not problems else f"**{len(problems)} check(s) failed**."),
        "",
    ]
    if mode == "gpu":
        lines += [
            "The demo's Post-LN and Admin runs at "
            f"{' and '.join(DEPTHS[mode])} through Snakemake with `--device cuda` (the GPU "
            f"resources) and the presets' fp16 settings ({_kv(fp16 or {})}); one training job "
            "at a time. Then `python -m benchmarks.gpu_throughput --device cuda`.",
        ]
    else:
        lines += [
            "The same sequence on the CPU, small (config overlay "
            f"`{json.dumps(SMOKE, separators=(',', ':'))}`) and in fp32: fairseq's fp16 "
            "optimizer needs CUDA, so the fp16 loss scaling, the CUDA device checks and the "
            "BLEU floor are not checked; its figures say nothing about a GPU.",
        ]
    if problems:
        lines += ["", "## Failed checks", "", *(f"- {p}" for p in problems)]
    lines += ["", "## Phases", "", "| phase | s | status |", "| --- | --- | --- |"]
    lines += [f"| {p['phase']} | {p['seconds']} | {p['status']} |" for p in phases]
    if runs:
        lines += [
            "", "## Runs", "",
            "Per update: the median over fairseq's `train_inner` intervals (log interval 10) "
            "of 1/ups; tokens/s: the median `wps` (target tokens). Job seconds from "
            "Snakemake's benchmark files.",
            "",
            "| run | status | updates | ms/update | tokens/s | loss scale (first → last) | "
            "overflows skipped | valid loss (first → last) | BLEU | sacreBLEU | "
            "profile s | train s | average s | evaluate s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]  # fmt: skip
        for run in runs:
            scales = (
                f"{fmt(run.loss_scales[0])} → {fmt(run.loss_scales[-1])}"
                if run.loss_scales else "—"
            )  # fmt: skip
            valid = (
                f"{fmt(run.valid_losses[0])} → {fmt(run.valid_losses[-1])}"
                if run.valid_losses else "—"
            )  # fmt: skip
            times = [
                _job(jobs, run, stage) for stage in ("profile", "train", "average", "evaluate")
            ]
            lines.append(
                f"| {run.name} | {run.status} | {run.updates} | {fmt(run.ms_per_update)} | "
                f"{fmt(run.tokens_per_s)} | {scales} | {run.overflows} | {valid} | "
                f"{fmt(run.bleu)} | {fmt(run.sacrebleu)} | {' | '.join(times)} |"
            )
        lines += ["", "Admin profiles:", ""]
        for run in runs:
            if run.variant != "admin":
                continue
            where = f"on {run.profile_gpu}" if run.profile_gpu else "on the CPU"
            fp = "fp16" if run.profile_fp16 else "fp32"
            stacks = "; ".join(f"{k}: {_omega_text(v)}" for k, v in run.omegas.items())
            lines.append(f"- {run.name}: profiled {where}, {fp}; {stacks or 'no profile'}")
        devices = sorted({r.gpu for r in runs if r.gpu})
        lines += ["", f"Training device(s) named in the logs: {', '.join(devices) or 'CPU'}."]
        data = {k: v for k, v in jobs.items() if k.startswith("demo/") and k.count("/") == 1}
        if data:
            each = ", ".join(f"{Path(k).stem} {fmt(v)}" for k, v in sorted(data.items()))
            lines += ["", f"Data preparation jobs (s): {each}."]
    if table:
        lines += ["", "## Throughput (`benchmarks.gpu_throughput`)", "", "```", *table, "```"]
    lines += ["", "## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in machine_info(threads=1).items()]
    return "\n".join(lines) + "\n", problems


def _kv(doc: dict[str, Any]) -> str:
    return ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in doc.items())


def _job(jobs: dict[str, float], run: RunFigures, stage: str) -> str:
    folder = run.folder.relative_to("results").as_posix()
    seconds = jobs.get(f"{folder}/{stage}.tsv")
    return fmt(seconds) if seconds is not None else "—"


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    o = sub.add_parser("overlay", help="write the config overlay of the check's runs")
    o.add_argument("--mode", choices=MODES, required=True)
    o.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("targets", help="print the workflow targets, one a line")
    t.add_argument("--mode", choices=MODES, required=True)
    r = sub.add_parser("report", help="check the figures and write the results file")
    r.add_argument("--mode", choices=MODES, required=True)
    r.add_argument("--work", type=Path, required=True, help="the script's work folder")
    r.add_argument("--seconds", type=float, default=math.nan, help="the script's time so far")
    r.add_argument("--out", type=Path, required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "overlay":
        # JSON is YAML: Snakemake's --configfile reads it
        args.out.write_text(json.dumps(overlay(args.mode), indent=2) + "\n", encoding="utf-8")
        return 0
    if args.command == "targets":
        for folder in run_folders(args.mode):
            print((folder / "scores.json").as_posix())
        return 0
    from admin.common.atomic import atomic_write_text

    text, problems = render(args.mode, args.work, args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(text)
    for problem in problems:
        print(f"gpu-check: check failed: {problem}", file=sys.stderr)
    print(f"gpu-check: wrote {args.out}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
