# `make run`: discovery, manager and edge in one process on the embedded bus.
# `make test`: the whole suite (needs the local RabbitMQ and PostgreSQL).
PY := .venv/bin/python

.PHONY: run test lint bench compose

run:
	.venv/bin/govbus up

test:
	$(PY) -m pytest

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench:
	$(PY) -m benchmarks

compose:
	docker compose -f compose/docker-compose.yml up --build
