# Developer entry points (GNU make; recipes are POSIX sh).
#   make install   .venv with the project + dev tools (and PostgreSQL server binaries if missing)
#   make run       every service against a local broker and database, with a demo
#   make test      lint, then the whole test-suite (no fast fail)
#   make test-kafka  the end-to-end suite against Apache Kafka in a container (needs Docker)
#   make lint      ruff, mypy, the import-linter contracts, generated docs up to date
#   make faults    fault injection: services killed, PostgreSQL restarted, broker connections cut
#                  while thousands of flows run; reconciled (docs/results/faults.md; ARGS=--quick)
#   make bench     returns pipeline (returns alone, then with the refund ledger), complaints
#                  through compensation and the notifier: throughput and latency vs a minimal
#                  consumer (docs/results/bench*.md; BENCH_FLOWS=10000; ARGS="--only complaints")
#   make lock      regenerate constraints.txt from pyproject.toml (ARGS=--upgrade: newest allowed)
#   make clean     remove .venv and caches
SHELL := /bin/sh
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# extra arguments: make run ARGS=..., make test PYTEST_ARGS='-k returns'
ARGS ?=
PYTEST_ARGS ?=

.PHONY: help install run test test-kafka lint deploy-check clean faults bench lock

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

install:
	@sh scripts/install.sh

run: install
	$(BIN)/aftersales dev $(ARGS)

# Fault injection (faults/): 2000 return + 500 complaint flows by default; ARGS=--quick is CI's.
faults: install
	$(BIN)/python -m faults.run $(ARGS)

# Benchmark (bench/): BENCH_FLOWS flows (10000) of each part as a backlog (returns: 1 and 2
# instances); ARGS="--only returns,complaints,notifier" for a part. The policy simulation's
# speed (bench/simulate.py) is measured by a run of every part only, not with --only.
BENCH_FLOWS ?= 10000
bench: install
	$(BIN)/python -m bench.run --flows $(BENCH_FLOWS) $(ARGS)
	$(if $(findstring --only,$(ARGS)),@echo "make bench: --only: the simulation speed is not measured (docs/results/simulate.md unchanged)",$(BIN)/python -m bench.simulate)

# lint and pytest both run; the target fails when either failed.
test: install
	@status=0; \
	$(MAKE) --no-print-directory lint NO_INSTALL=1 || { status=1; echo "make test: lint FAILED (running the tests anyway)"; }; \
	$(BIN)/pytest -q --durations=10 $(PYTEST_ARGS) || { status=1; echo "make test: tests FAILED"; }; \
	exit $$status

# tests/e2e against Apache Kafka (testcontainers, KRaft; AFTERSALES_TEST_KAFKA_IMAGE to change it)
# instead of the embedded broker; without a Docker engine it says so and passes.
test-kafka: install
	@if $(BIN)/python -c "import docker; docker.from_env(timeout=3).ping()" >/dev/null 2>&1; then \
		AFTERSALES_TEST_KAFKA=testcontainers $(BIN)/pytest -q -rs $(PYTEST_ARGS) tests/e2e; \
	else echo "make test-kafka: skipped: no Docker engine reachable (start one, or set DOCKER_HOST)"; fi

lint: $(if $(NO_INSTALL),,install)
	@status=0; \
	echo "+ ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "+ ruff format --check ."; $(BIN)/ruff format --check . || status=1; \
	echo "+ mypy shared services aftersales aftersales_dev bench faults"; $(BIN)/mypy shared services aftersales aftersales_dev bench faults || status=1; \
	echo "+ lint-imports"; $(BIN)/lint-imports --no-logo --no-cache || status=1; \
	echo "+ aftersales asyncapi --check"; $(BIN)/aftersales asyncapi --check || status=1; \
	echo "+ aftersales openapi --check"; $(BIN)/aftersales openapi --check || status=1; \
	echo "+ python -m aftersales.contract_doc --check"; $(BIN)/python -m aftersales.contract_doc --check || status=1; \
	$(MAKE) --no-print-directory deploy-check NO_INSTALL=1 || status=1; \
	exit $$status

# The Dockerfile linted; both Kustomize overlays rendered and validated against the Kubernetes schemas;
# alert rules checked and unit-tested with promtool (one test file per group, deploy/prometheus/tests).
deploy-check: $(if $(NO_INSTALL),,install)
	@status=0; \
	echo "+ hadolint Dockerfile"; $(BIN)/hadolint Dockerfile || status=1; \
	if command -v promtool >/dev/null 2>&1; then \
		echo "+ promtool check rules deploy/prometheus/alerts.yaml"; \
		promtool check rules deploy/prometheus/alerts.yaml || status=1; \
		echo "+ promtool test rules deploy/prometheus/tests/*.test.yaml"; \
		promtool test rules deploy/prometheus/tests/*.test.yaml || status=1; \
	else echo "promtool not found: alert rules not checked (make install installs it where it can)"; fi; \
	if command -v kubectl >/dev/null 2>&1; then \
		for overlay in development production; do \
			echo "+ kubectl kustomize deploy/kubernetes/overlays/$$overlay | kubernetes-validate"; \
			kubectl kustomize deploy/kubernetes/overlays/$$overlay > .venv/rendered-$$overlay.yaml \
				&& $(BIN)/kubernetes-validate --strict --quiet --no-warn .venv/rendered-$$overlay.yaml \
				|| status=1; \
		done; \
	else echo "kubectl not found: Kustomize overlays not rendered"; fi; \
	exit $$status

# The pins every install uses: pyproject.toml's dev extra (every service, the tools) resolved by
# pip-tools (pinned in that extra). Existing pins are kept unless ARGS=--upgrade or
# ARGS='--upgrade-package NAME'; no index URL or local path is written into the file.
lock: install
	CUSTOM_COMPILE_COMMAND="make lock   (pip-compile of pyproject.toml's dev extra; ARGS=--upgrade moves every pin)" \
		$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-annotate --no-emit-index-url \
		--no-emit-find-links --no-emit-trusted-host -o constraints.txt $(ARGS) pyproject.toml
	@sed '/^aftersales @ /d' constraints.txt > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache \
		build dist *.egg-info .run
	find . -name .git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
