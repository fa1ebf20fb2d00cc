# Everything a developer or CI runs. `make test` sets itself up: venv, install, lint, types, tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install test lint fmt unit e2e faults bench demo dev clean

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
	$(BIN)/lint-imports

# Fixes first: a fix can leave lines the formatter then lays out (the pre-commit hooks' order).
fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The whole suite: unit, simulator and end-to-end tests (real Redis, a real Celery worker).
# Coverage is this process's: the e2e tests' gunicorn and Celery children are left unmeasured.
test: lint
	$(BIN)/pytest --cov --cov-report=term

unit: install
	$(BIN)/pytest -m "not e2e and not faults"

e2e: install
	$(BIN)/pytest -m e2e

# Fault injection on the whole stack (tests/faults, Redis database 11): a few minutes; CI runs it
# after `make test`. The default pytest run leaves these out.
faults: install
	$(BIN)/pytest -m faults tests/faults

# Benchmarks: figures, not tests (Redis database 12, loopback only); about 30 minutes in all,
# each writes its table into docs/performance.md. One alone: `$(BIN)/python -m bench.latency`
# (or throughput, ingest, cost). wrk (apt-get install wrk) is used by bench.ingest when present.
bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.throughput --tickets 1000 --profiles realistic \
		--concurrency 16,32,64,128,256 --section throughput-sweep
	$(BIN)/python -m bench.throughput --metrics-cost --rounds 5 --tickets 1000 --profiles none
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.cost

demo: install
	$(BIN)/deskgate demo

dev: install
	$(BIN)/deskgate dev

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
