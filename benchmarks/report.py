"""The results file: the machine the figures were measured on, and the Markdown table."""

from __future__ import annotations

import os
import platform
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path

from admin.common.atomic import atomic_write_text
from benchmarks.core import Figure, Result, fmt

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _gpu() -> str:
    import torch

    if not torch.cuda.is_available():
        return "none (CUDA not available): GPU figures not measured"
    return ", ".join(
        torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
    )  # fmt: skip


def machine_info(threads: int) -> dict[str, str]:
    """What a reader needs to compare these figures with theirs."""
    ram = _ram_gib()
    load = os.getloadavg()
    return {
        "host": socket.gethostname(),
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable by this run",
        "RAM": f"{ram:.1f} GiB" if ram is not None else "unknown",
        "GPU": _gpu(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "torch": _version("torch"),
        "fairseq": _version("fairseq-fixed"),
        "snakemake": _version("snakemake"),
        "torch threads (in-process benchmarks)": str(threads),
        "load average at start (1, 5, 15 min)": ", ".join(f"{v:.2f}" for v in load),
    }


def machine_tag(explicit: str | None = None) -> str:
    """A file-name-safe machine name: ``--tag`` if given, else the host name."""
    raw = explicit or socket.gethostname() or "machine"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-") or "machine"


def results_path(day: date, tag: str, quick: bool, only: Sequence[str]) -> Path:
    """``results/<date>-<tag>.md``; quick and partial runs get a suffix, so that a
    rerun of one benchmark never replaces the full run's file of the same day."""
    name = f"{day.isoformat()}-{tag}"
    if quick:
        name += "-quick"
    if only:
        name += "-only-" + "-".join(only)
    return RESULTS / f"{name}.md"


@dataclass
class Run:
    """One run of the runner, as written to the results file."""

    day: date
    command: str
    machine: dict[str, str]
    results: dict[str, Result]
    errors: dict[str, str]
    minutes: float
    load_after: str


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def figure_row(fig: Figure) -> str:
    s = fig.summary
    unit = f" ({fig.unit})" if fig.unit else ""
    spread = f"{fmt(s.low)}–{fmt(s.high)}" if s.n > 1 else "—"
    if s.q1 is not None and s.q3 is not None:
        spread += f" (IQR {fmt(s.q1)}–{fmt(s.q3)})"
    target = fig.target.text() if fig.target else "—"
    cells = [fig.benchmark, fig.name + unit, fmt(s.median), spread, str(s.n), target, fig.met()]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render(run: Run) -> str:
    lines = [
        f"# Benchmarks, {run.day.isoformat()}, {run.machine['host']}",
        "",
        f"`{run.command}`: {run.minutes:.1f} min in all; load average at the end {run.load_after}.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {_cell(k)} | {_cell(v)} |" for k, v in run.machine.items()),
        "",
        "## Figures",
        "",
        "Median over the repeats; spread = min–max (and the interquartile range from 4 "
        "repeats on). Ratios are per-round ratios of series measured side by side, "
        "interleaved in the same run. *met?* compares the median with the target.",
        "",
        "| benchmark | figure | median | spread | repeats | target | met? |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in run.results.values():
        lines += [figure_row(fig) for fig in result.figures]
    for name, error in run.errors.items():
        lines.append(f"| {name} | failed: {_cell(error)} | — | — | 0 | — | no |")
    notes = [(name, note) for name, result in run.results.items() for note in result.notes]
    if notes:
        lines += ["", "## Conditions and notes", ""]
        lines += [f"- **{name}**: {note}" for name, note in notes]
    for name, result in run.results.items():
        if result.details:
            lines += ["", f"## Details: {name}", "", result.details.rstrip()]
    return "\n".join(lines) + "\n"


def write(run: Run, path: Path) -> None:
    atomic_write_text(path, render(run))
