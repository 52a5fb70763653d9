# Quimbi Support Backend. `make run` starts everything with demo data; `make test` runs every test.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3.11
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
INFRA := deploy/local/infra.sh

.PHONY: help setup infra infra-stop run stop test test-unit test-service test-faults test-e2e test-contract lint format catalogue bench images up down test-e2e-containers test-e2e-up

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup: ## install uv (from PyPI) and the workspace's packages into .venv
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

infra: ## install (if missing) and start PostgreSQL, Redis and Kafka on loopback
	@$(INFRA) start

infra-stop: ## stop PostgreSQL, Redis and Kafka
	@$(INFRA) stop

run: setup infra ## start the whole suite with demo data (gateway on :8001); TRACING=1: and Jaeger
	@$(UV) run python -m deploy.local.launcher --split $(if $(TRACING),--tracing)

test: setup infra ## run unit, service and end-to-end tests
	@$(UV) run pytest --durations=25

test-unit: setup ## fast loop: pure logic only
	@$(UV) run pytest -m unit -q

test-service: setup infra ## one service at a time against real infrastructure
	@$(UV) run pytest -m service

test-faults: setup infra ## the fault tier alone (its own servers; kills everything under load, ~5 min)
	@$(UV) run pytest tests/faults

test-e2e: setup infra ## the whole suite through the gateway
	@$(UV) run pytest -m e2e

test-contract: setup infra ## schemathesis fuzzes the merged OpenAPI of a suite of its own
	@$(UV) run pytest -m contract

lint: setup ## ruff (lint + format) and mypy
	@$(UV) run ruff check .
	@$(UV) run ruff format --check .
	@$(UV) run mypy libs/common/src services/*/src

format: setup
	@$(UV) run ruff format .
	@$(UV) run ruff check --fix .

catalogue: setup ## regenerate docs/events from the event contracts
	@$(UV) run python -m quimbi_common.catalogue

BENCH_SCRIPTS := $(filter-out bench/_shared.py bench/report.py,$(wildcard bench/*.py))
BENCH_FIGURES := $(CURDIR)/.local/bench/figures.jsonl

bench: setup infra ## run every benchmark under bench/, then print one table (bench/results/latest.md)
	@mkdir -p $(dir $(BENCH_FIGURES)) && rm -f $(BENCH_FIGURES)
	@for script in $(BENCH_SCRIPTS); do echo "== $$script"; BENCH_FIGURES=$(BENCH_FIGURES) $(UV) run python $$script || exit 1; done
	@BENCH_FIGURES=$(BENCH_FIGURES) $(UV) run python bench/report.py

images: ## build the container images (here with podman, plus local stand-ins for postgres/redis/kafka)
	@deploy/containers/images.sh

up: images ## the whole suite in containers (docker-compose.yml on podman); waits until all are healthy
	@deploy/containers/compose.sh up

down: ## stop and remove the containers of `make up` (data volumes are kept)
	@deploy/containers/compose.sh down

PODMAN_ENV := DOCKER_HOST=unix:///run/podman/podman.sock TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_CONNECTION_MODE=docker_host

test-e2e-containers: setup ## the e2e suite with PostgreSQL, Redis and Kafka from testcontainers (podman here)
	@deploy/containers/setup.sh
	@$(PODMAN_ENV) $(UV) run pytest tests/e2e tests/deploy/test_containers.py

test-e2e-up: setup ## the e2e suite against the stack `make up` runs
	@$(PODMAN_ENV) E2E_GATEWAY_URL=http://127.0.0.1:8001 E2E_KAFKA=127.0.0.1:19092 $(UV) run pytest tests/e2e
