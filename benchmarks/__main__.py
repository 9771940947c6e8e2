"""Run the benchmarks and write ``benchmarks/results/<date>-<machine>.md``.

python -m benchmarks                      # all of them (about 15 min on 2 cores)
python -m benchmarks --only planning      # one (or several) by name
python -m benchmarks --quick              # fewer repeats, smaller sizes
python -m benchmarks --list
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from benchmarks import BENCHMARKS
from benchmarks.core import Context, Result
from benchmarks.report import Run, machine_info, machine_tag, results_path, write


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME", choices=list(BENCHMARKS), default=[])
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of in-process benchmarks (default 1: steadier on a shared machine)",
    )
    p.add_argument("--tag", help="machine name in the results file name (default: host name)")
    p.add_argument("--out", type=Path, help="results file (default: benchmarks/results/...)")
    return p


def run_one(name: str, ctx: Context) -> Result:
    module = importlib.import_module(BENCHMARKS[name][0])
    return module.run(ctx)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for name, (_, what) in BENCHMARKS.items():
            print(f"{name:<22} {what}")
        return 0
    names = [n for n in BENCHMARKS if n in args.only] if args.only else list(BENCHMARKS)
    day = date.today()
    out = args.out or results_path(day, machine_tag(args.tag), args.quick, args.only)
    words = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m benchmarks", *([shlex.join(words)] if words else [])])
    machine = machine_info(args.threads)
    start = time.monotonic()
    results: dict[str, Result] = {}
    errors: dict[str, str] = {}
    workdir = Path(tempfile.mkdtemp(prefix="admin-bench-"))
    try:
        ctx = Context(quick=args.quick, threads=args.threads, workdir=workdir)
        for name in names:
            print(f"== {name}: {BENCHMARKS[name][1]}", flush=True)
            began = time.monotonic()
            try:
                results[name] = run_one(name, ctx)
            except Exception as err:  # one failure must not lose the other figures
                traceback.print_exc()
                errors[name] = f"{type(err).__name__}: {err}"[:300]
                continue
            for fig in results[name].figures:
                s = fig.summary
                print(f"   {fig.name}: {s.median:.4g} {fig.unit} (n={s.n}) {fig.met()}")
            print(f"   ({time.monotonic() - began:.0f} s)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    run = Run(day, command, machine, results, errors, (time.monotonic() - start) / 60, load)
    write(run, out)
    print(f"wrote {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
