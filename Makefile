# Two entry points for a fresh machine: `make demo` and `make test` (see README).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two test processes: most of the suite waits on sockets and timers, not the CPU (733 s -> 421 s).
JOBS ?= 2

.PHONY: demo test install install-test services lint bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

demo: install
	$(BIN)/cti demo

# Installs everything the suite needs (Chromium, the PostgreSQL server if it is down), lints, type-checks, tests.
test: install-test services lint
	$(BIN)/pytest -q -n $(JOBS) --dist worksteal
	PATH=$(CURDIR)/$(BIN):$$PATH ../shared/tools/check-replay ../shared/ami-traces || [ ! -d ../shared/ami-traces ]

services:
	./scripts/ensure-services

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every benchmark, one after the other (the lookup and routing ones seed 1,000,000 customers once
# and reuse them; the tracker one compares with cacofonisk, installed here for the benchmark only).
bench: install-test
	$(BIN)/pip install -q cacofonisk
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
