# Developer entry points (GNU make; recipes are POSIX sh).
#   make install   .venv with the project + dev tools (and PostgreSQL server binaries if missing)
#   make run       every service against a local broker and database, with a demo
#   make test      lint, then the whole test-suite (no fast fail)
#   make lint      ruff, mypy and the import-linter contracts
#   make clean     remove .venv and caches
SHELL := /bin/sh
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# extra arguments: make run ARGS=..., make test PYTEST_ARGS='-k returns'
ARGS ?=
PYTEST_ARGS ?=

.PHONY: help install run test lint clean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

install:
	@sh scripts/install.sh

run: install
	$(BIN)/aftersales dev $(ARGS)

# lint and pytest both run; the target fails when either failed.
test: install
	@status=0; \
	$(MAKE) --no-print-directory lint NO_INSTALL=1 || { status=1; echo "make test: lint FAILED (running the tests anyway)"; }; \
	$(BIN)/pytest -q --durations=10 $(PYTEST_ARGS) || { status=1; echo "make test: tests FAILED"; }; \
	exit $$status

lint: $(if $(NO_INSTALL),,install)
	@status=0; \
	echo "+ ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "+ mypy shared services"; $(BIN)/mypy shared services || status=1; \
	echo "+ lint-imports"; $(BIN)/lint-imports --no-logo --no-cache || status=1; \
	echo "+ aftersales asyncapi --check"; $(BIN)/aftersales asyncapi --check || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache \
		build dist *.egg-info .run
	find . -name .git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
