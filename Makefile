# `make demo` and `make test` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install docs template reliability bench clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/talksync demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The full seeded fault campaign (100 seeds, ~30 min); `make test` runs a fast subset.
reliability: $(STAMP)
	$(BIN)/python -m tests.reliability.campaign --seeds 0-99

# Performance benchmarks P1–P5 (~15 min; not part of `make test`): results into BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks --runs 3

docs: $(STAMP)
	$(BIN)/talksync docs --out docs/dataflows

# The Dataflow flex template's metadata.json, generated from the options (docs/dataflow.md).
template: $(STAMP)
	$(BIN)/talksync template metadata --out dataflow/metadata.json

clean:
	rm -rf $(VENV) .talksync *.egg-info
