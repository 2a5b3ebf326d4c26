# ai-med-extract: every set-up step a fresh machine needs is behind `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# llama-cpp-python has no prebuilt wheel on PyPI for Linux (sdist only), so it compiles during setup.
# Its multimodal library (mtmd: 51 of 178 compile units) is not used here; leaving it out shortens
# the compile. Set CMAKE_ARGS yourself to build it, or to add e.g. -DGGML_CUDA=on.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.DEFAULT_GOAL := help
.PHONY: help setup run test lint bench lock clean phi-model

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) ## Install system packages and the virtualenv (done once; redone when the lock changes)

$(STAMP): requirements.txt pyproject.toml apt-packages.txt apt-packages-test.txt
	scripts/install-system-packages.sh apt-packages.txt apt-packages-test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --no-deps -r requirements.txt
	$(BIN)/pip install --no-deps -e .
	touch $@

run: setup ## Start the service on embedded defaults (SQLite, in-process jobs, shipped models) at :8000
	$(BIN)/ai-med-extract db upgrade
	$(BIN)/ai-med-extract serve

test: setup ## Run the whole test suite (PostgreSQL and SQLite, Tesseract, real models, browser)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup ## ruff and mypy
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: setup ## Run every benchmark in bench/ (prints ratios against peers)
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

phi-model: setup ## Rebuild the learned PHI detector shipped in agents/phi/model (fixed seed, CPU, minutes)
	OMP_NUM_THREADS=1 nice -n 10 $(BIN)/python -m ai_med_extract.agents.phi.training

lock: ## Rewrite requirements.txt from the current virtualenv (after adding to requirements.in)
	$(BIN)/pip freeze --exclude-editable | sed '/^ai-med-extract/d' > requirements.txt

clean: ## Remove the virtualenv and local data
	rm -rf $(VENV) data .pytest_cache
