# `make demo` and `make test` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install docs clean

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

docs: $(STAMP)
	$(BIN)/talksync docs --out docs/dataflows

clean:
	rm -rf $(VENV) .talksync *.egg-info
