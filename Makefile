# govbus: set up, run, check, benchmark.
#
#   make run        discovery, manager and edge in one process on the embedded bus
#   make test       everything, from a fresh machine: venv, RabbitMQ + PostgreSQL, lint,
#                   type check, the whole test suite
#   make bench      the benchmarks against the local RabbitMQ (python -m benchmarks)
#
# The venv is (re)installed only when pyproject.toml changes (a stamp file in .venv).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_TEST := $(VENV)/.stamp-test
STAMP_BENCH := $(VENV)/.stamp-bench
# Only the directories that exist (some are written later than others).
LINT_DIRS := $(wildcard bus schemas discovery_worker manager_worker http_edge health_checker govbus tests benchmarks)

.PHONY: venv run services lint typecheck test bench compose clean

venv: $(STAMP_TEST)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(STAMP_BENCH): pyproject.toml $(STAMP_TEST)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

run: venv
	$(VENV)/bin/govbus up

services:
	bash scripts/ensure-services.sh

lint: venv
	$(VENV)/bin/ruff check $(LINT_DIRS)
	$(VENV)/bin/ruff format --check $(LINT_DIRS)

# mypy checks benchmarks/ too (pyproject), which imports faststream and matplotlib: the bench
# extra must be installed for a real check (without it mypy fails on a fresh venv).
typecheck: $(STAMP_BENCH)
	$(VENV)/bin/mypy

test: venv services lint typecheck
	$(PY) -m pytest -q

bench: $(STAMP_BENCH) services
	$(PY) -m benchmarks

# Docker users (not used by `make test`): the whole deployment in containers.
compose:
	docker compose -f compose/docker-compose.yml up --build

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
