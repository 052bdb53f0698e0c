# Amulet — the two commands a user needs are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test test-slow test-all lint format bench install system clean help

help:
	@echo "make run       set up .venv and run the main job"
	@echo "make test      set up .venv and run the default test suite (with the doctests in amulet/)"
	@echo "make test-slow run the slow tests";
	@echo "make lint      ruff (lint + format check), mypy and the import contracts (lint-imports)"
	@echo "make bench     run the benchmarks (not part of make test)"

# Re-installs only when pyproject.toml or the install script changed: a second `make` is quick.
$(STAMP): pyproject.toml scripts/install.sh
	@bash scripts/install.sh $(PYTHON) $(VENV)
	@touch $(STAMP)

install: $(STAMP)

system:
	@bash scripts/install_system.sh

run: install system
	$(BIN)/amulet serve --demo

test: install system
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: install system
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: install system
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check amulet backend worker dashboard tests benchmarks conftest.py
	$(BIN)/ruff format --check amulet backend worker dashboard tests benchmarks conftest.py
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff check --fix amulet backend worker dashboard tests benchmarks
	$(BIN)/ruff format amulet backend worker dashboard tests benchmarks

bench: install system
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
