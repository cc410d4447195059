# anju: developer and CI entry points (GNU make).
#
#   make test     lint, then every test (unit, integration, scenario) against real servers
#   make demo     the whole system on this machine; DEMO_ARGS are passed to `anju demo`
#   make bench    the benchmarks
#   make lint     ruff format --check, ruff check, mypy --strict
#   make servers  install Mosquitto and VictoriaMetrics (Debian packages)
#   make venv     the virtual environment in .venv, with the project installed editable

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
DEMO_ARGS ?=

# The packages mypy checks: those that hold Python files yet (some are still empty).
PACKAGES = wire device_drivers edge_agent rules hub dashboards cli tests bench
MYPY_DIRS = $(foreach d,$(PACKAGES),$(if $(shell find $(d) -name '*.py' -print -quit 2>/dev/null),$(d)))

.PHONY: venv servers lint test demo bench clean distclean

venv: $(STAMP)

# Also redone when a package gains an __init__.py: an editable install made while a package
# folder was still empty maps it as a namespace package, and its __init__.py would never run.
$(STAMP): pyproject.toml $(wildcard */__init__.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

servers:
	bash scripts/install-servers.sh

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(if $(strip $(MYPY_DIRS)),$(BIN)/mypy $(strip $(MYPY_DIRS)),@echo "lint: no Python files for mypy yet")

test: venv servers
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest

# The demo prefers Mosquitto but falls back to its in-process Python broker without it.
demo: venv
	bash scripts/install-servers.sh || echo "demo: Mosquitto is not installed; using the built-in Python broker"
	$(BIN)/anju demo $(DEMO_ARGS)

bench: venv servers
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.ingest --store sqlite
	$(BIN)/python -m bench.ingest --batch 1 --readings 60000
	$(BIN)/python -m bench.alert_latency
	$(BIN)/python -m bench.replay
	$(BIN)/python -m bench.rules_eval
	$(BIN)/python -m bench.alert_latency --rules-load 500 --devices 10000
	$(BIN)/python -m bench.alert_latency --rules-load 500 --devices 10000 --rate 50000 --burst 100000
	$(BIN)/python -m bench.edge_footprint

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache ./*.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
