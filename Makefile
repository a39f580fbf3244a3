# The two commands of the README: `make run` (the whole pipeline on the embedded defaults) and
# `make test` (lint, format check, tests). Each sets up what it needs first: a .venv with
# everything from pyproject.toml, and git/DVC where a fresh copy lacks them.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint ui bench clean-outputs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)
	test -d .git || git init --quiet
	test -d .dvc || $(BIN)/dvc init --quiet

run: setup
	PATH="$(BIN):$$PATH" dvc repro

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers keep both cores busy (most tests wait on one single-threaded process). loadfile keeps a
# test file in one worker: the tests that read a session-built project share one file (or are mapped to
# it: SHARED_BUILD in tests/conftest.py), so it is built once. (loadgroup would be finer, but
# pytest-xdist 3.8's group suffix has no effect under pytest 9.)
TEST_WORKERS ?= 2

test: lint
	PATH="$(BIN):$$PATH" $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

ui: setup
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" --port 5000

bench: setup
	PATH="$(BIN):$$PATH" $(BIN)/python benchmarks/trackbed_embeddings_vs_notebook.py
