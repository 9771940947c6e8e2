"""Wall time of the embedded demo, end to end, as a user runs it (printed, not asserted).

    python benchmarks/bench_demo_workflow.py [--cores 2] [--keep DIR]

Runs ``snakemake --cores N`` (the default target: data generation, tokenization, BPE,
binarization, Admin profiling, training, averaging, decoding, scoring, table and plots)
in an empty temporary folder with the project's ``config/config.yaml``, then prints the
total wall time, the machine's load average, the time of each job (from the rules'
``benchmark:`` files) and the demo's table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", default="2")
    parser.add_argument("--keep", type=Path, help="run here (and keep it) instead of a temp dir")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="admin-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--cores", args.cores,
        "--configfile", str(REPO / "config" / "config.yaml"),
    ]  # fmt: skip
    load_before = os.getloadavg()
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
    print(f"demo wall time: {wall:.0f} s with --cores {args.cores} on {os.cpu_count()} CPUs")
    print(f"load average before: {load_before[0]:.1f}, after: {os.getloadavg()[0]:.1f}")
    print("\nper job (s):")
    for tsv in sorted((workdir / "logs" / "benchmarks").rglob("*.tsv")):
        seconds = tsv.read_text().splitlines()[1].split("\t")[0]
        print(f"  {float(seconds):7.1f}  {tsv.relative_to(workdir / 'logs' / 'benchmarks')}")
    print("\n" + (workdir / "results" / "demo" / "table.md").read_text())
    print(f"(outputs in {workdir})")


if __name__ == "__main__":
    main()
