# The two commands a new user needs: `make demo` and `make test`.
# `make bench` measures what they pay for (see "Benchmarks" in README.md).
# Both run the same installer first (`make install`), which creates .venv
# inside the checkout and installs the pinned stack into it.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp is newer than every file that decides what gets installed, so a
# second `make install` on an unchanged checkout does nothing.
STAMP := $(VENV)/.admin-installed
INSTALL_INPUTS := envs/requirements.txt envs/constraints.txt envs/requirements-fairseq.txt pyproject.toml
CORES ?= all
# make test runs the suite on two workers (tests/conftest.py says how it groups them)
TEST_WORKERS ?= 2

.PHONY: install demo test lint bench clean-venv

install: $(STAMP)

$(STAMP): $(INSTALL_INPUTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r envs/requirements.txt -c envs/constraints.txt
	@# fairseq-fixed: built against the torch above (no isolation) and without
	@# its own requirements (they would pull another torch); see envs/requirements-fairseq.txt.
	$(PY) -m pip install --no-build-isolation --no-deps -r envs/requirements-fairseq.txt
	$(PY) -m pip install --no-build-isolation --no-deps -e .
	$(PY) -c 'import fairseq, snakemake, admin'
	@touch $@

demo: install
	$(VENV)/bin/snakemake --cores $(CORES) --rerun-incomplete
	@# the table the demo wrote (results/ is where the README says every output is)
	@echo; cat results/demo/table.md

test: install
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=30

# Writes benchmarks/results/<date>-<host>.md (11 min on an idle 2-core machine);
# e.g. `make bench BENCH_ARGS="--only planning --quick"` reruns one benchmark.
bench: install
	$(PY) -m benchmarks $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check admin tests benchmarks
	$(VENV)/bin/ruff format --check admin tests benchmarks
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile workflow

clean-venv:
	rm -rf $(VENV)
