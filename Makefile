# `make demo` and `make test` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lock docs template reliability bench bench-scale mutation clean

# Every dependency, direct and transitive, at the version and hash in requirements.txt; then
# talksync itself without its dependencies (nothing is resolved at install time).
LOCK := requirements.txt
WORKER_LOCK := dataflow/requirements.txt

$(STAMP): setup.py $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/talksync demo

# The suite runs in a shuffled order (pytest-randomly). TEST_SEED fixes the shuffle: CI runs the
# order last verified whole (docs/testing.md, "Random order"); `make test TEST_SEED=` draws a new
# one, printed at the end of the run.
TEST_SEED ?= 1207
TEST_ORDER := $(if $(TEST_SEED),-p randomly --randomly-seed=$(TEST_SEED),)

# Lint, import contracts and the types of the core and the connectors first (pyproject.toml),
# then the suite.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy core connectors
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25 $(TEST_ORDER) tests

# The full seeded fault campaign (100 seeds, ~30 min); `make test` runs a fast subset.
reliability: $(STAMP)
	$(BIN)/python -m tests.reliability.campaign --seeds 0-99

# Mutation testing (not part of `make test`; a clean run is ~6,300 mutants, about an hour on
# this machine's two shared cores, measured 2026-12-07): mutmut mutates the modules
# pyproject.toml's [tool.mutmut] names (the core and the write path) and runs their fast unit
# tests against each mutant, on at most two workers; then the score per module (the write
# path's functions only, see docs/testing.md) and each surviving mutant (`mutmut show NAME`
# shows one). Results are kept in mutants/, so a rerun tests only what changed.
mutation: $(STAMP)
	$(BIN)/mutmut run --max-children 2
	$(BIN)/python -m tests.mutation_report --survivors

# Performance benchmarks P1–P5 (~15 min; not part of `make test`): results into BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks --runs 3

# The P1 scaling curve at 10k, 100k and 1M, then P4 over 1M links (issue 18; see README.md for
# how long it takes; up to 12 GB of RAM at 1M): results into BENCHMARKS.md ("Scaling").
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale --ns 10000,100000,1000000 --runs 3 --big-runs 1 \
		--incremental-ns 1000000

docs: $(STAMP)
	$(BIN)/talksync docs --out docs/dataflows

# The Dataflow flex template's metadata.json, generated from the options (docs/dataflow.md).
template: $(STAMP)
	$(BIN)/talksync template metadata --out dataflow/metadata.json

# Refresh the lock to the newest releases setup.py's ranges admit (with uv, itself locked), and
# the Dataflow workers' requirements at the same versions; then run `make test`.
UV_COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --custom-compile-command "make lock"
lock: $(STAMP)
	$(UV_COMPILE) --upgrade --universal --python-version 3.11 \
		--extra gcp --extra sandbox --extra test setup.py requirements/tools.in -o $(LOCK)
	$(UV_COMPILE) --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--extra gcp --constraint $(LOCK) setup.py -o $(WORKER_LOCK)
	$(UV_COMPILE) --universal --python-version 3.11 --extra gcp --extra sandbox --extra test \
		--constraint $(LOCK) setup.py requirements/tools.in -o pylock.toml
	$(BIN)/uv lock --quiet --upgrade

clean:
	rm -rf $(VENV) .talksync *.egg-info mutants
