# Everything a developer or CI runs. `make test` sets itself up: venv, install, lint, types, tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install test lint unit e2e demo dev clean

$(BIN)/deskgate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/deskgate

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite: unit, simulator and end-to-end tests (real Redis, a real Celery worker).
test: lint
	$(BIN)/pytest

unit: install
	$(BIN)/pytest -m "not e2e"

e2e: install
	$(BIN)/pytest -m e2e

demo: install
	$(BIN)/deskgate demo

dev: install
	$(BIN)/deskgate dev

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
