# Real-time customer data pipeline. `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "OpenJDK 17 is required (apt-get install -y openjdk-17-jre-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required (apt-get install -y maven)"; exit 1; }
	@command -v redis-server >/dev/null || { echo "installing redis-server"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install everything (Python, redis-server, web/dist/crm.js); idempotent
	@infra/web-build.sh --optional

up: setup ## Start Kafka (KRaft) and Redis on loopback, create topics
	infra/services.sh up

down: ## Stop Kafka and Redis
	infra/services.sh down

status: setup ## Overview of services, topics, Redis and ClickHouse
	$(BIN)/crm status

demo: setup ## Run the whole pipeline with simulated traffic and print a summary
	$(BIN)/crm demo

test-deps: setup ## What the SDK, browser and BI client tests need: npm packages, Go modules, Debian's chromium, the ClickHouse JDBC driver, Beam job servers
	infra/sdk-deps.sh
	infra/browser-deps.sh
	infra/jdbc-deps.sh
	infra/beam-runners.sh fetch --optional

test: setup lint test-deps ## Lint, then unit and integration tests (starts and stops its own services); the fault suite is make test-faults
	$(BIN)/crm schemas export --check
	$(BIN)/crm dashboards export --check
	$(BIN)/pytest -m "not faults"

test-unit: setup ## Unit tests only (no services)
	$(BIN)/pytest tests/unit

test-cluster: setup ## Only the tests marked cluster (three Kafka brokers, worker churn, Beam runners); make test runs them too
	$(BIN)/pytest -m cluster

test-faults: setup ## The fault suite: kills, poison records, a broker and a Redis outage under load, each ending in crm reconcile (.ci/run runs it after make test)
	$(BIN)/pytest -m faults

lint: setup ## ruff (lint + format check), mypy and the layering contracts (import-linter)
	$(BIN)/ruff check pipeline tests
	$(BIN)/ruff format --check pipeline tests
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup up ## Benchmarks; JSON results in bench-results/
	$(BIN)/crm bench

clean: down ## Stop services and delete local data
	rm -rf .crm-data .crm-test bench-results

.PHONY: help setup up down status demo test test-deps test-unit test-cluster test-faults lint bench clean
