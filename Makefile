# clinrisk: every target installs what it needs into .venv from this project's own files.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UCI_ZIP ?= ../shared/data/uci_diabetes_130.zip
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install run test lint typecheck unit integration format bench-uci mlflow-ui clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "clinrisk needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,lambda]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install clinrisk with its dev and Lambda extras

run: $(STAMP) ## Make a synthetic cohort and run the retraining pipeline locally
	$(BIN)/clinrisk pipeline run

lint: $(STAMP) ## ruff (lint and format check)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy
	$(BIN)/mypy

unit: $(STAMP) ## Unit tests only
	$(BIN)/pytest -m "not integration" -q

integration: $(STAMP) ## Integration tests only (real MLflow, XGBoost, subprocess training)
	$(BIN)/pytest -m integration -q -n $(PYTEST_WORKERS)

test: lint typecheck $(STAMP) ## ruff, mypy and the whole test suite
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --durations=15

format: $(STAMP) ## Reformat and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-uci: $(STAMP) ## Benchmark the pipeline on the real UCI file (UCI_ZIP=path)
	$(BIN)/python benchmarks/pipeline_uci.py $(UCI_ZIP)

mlflow-ui: $(STAMP) ## MLflow UI over the local store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.clinrisk/mlflow.db --port 5000

clean: ## Remove the local store and caches (keeps .venv)
	rm -rf .clinrisk .pytest_cache .mypy_cache .ruff_cache
