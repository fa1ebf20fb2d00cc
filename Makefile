# Everything a developer or CI runs. `make test` sets itself up: venv, install, lint, types, tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install lock lock-upgrade sbom audit test lint fmt unit e2e faults bench demo dev clean

# Only what requirements/dev.txt pins, each file checked against its hash, nothing resolved afresh;
# then Deskgate itself, built by the locked hatchling (no build isolation: nothing unlocked).
$(BIN)/deskgate: pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

install: $(BIN)/deskgate

# Re-resolves both locks from pyproject.toml against the public index alone: this machine's pip
# config and local wheel folders are left out, so the hashes are the index's. `make lock` keeps
# every pin pyproject still allows (after a dependency edit); `make lock-upgrade` takes the newest
# versions its ranges allow. Commit both files; docs/operations.md, "Dependencies".
LOCK = env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	--build-deps-for wheel --build-deps-for editable $(LOCK_UPGRADE)
lock: install
	$(LOCK) -o requirements/runtime.txt pyproject.toml
	$(LOCK) --extra dev -c requirements/runtime.txt -o requirements/dev.txt pyproject.toml
	$(MAKE) install

lock-upgrade:
	$(MAKE) lock LOCK_UPGRADE=--upgrade

# A CycloneDX (JSON) bill of materials of what the image installs: the runtime lock.
SBOM ?= sbom.cdx.json
sbom: install
	$(BIN)/cyclonedx-py requirements --pyproject pyproject.toml --output-format JSON \
		--output-reproducible --output-file $(SBOM) requirements/runtime.txt

# pip-audit over the locks; skipped, saying so, where no vulnerability service answers.
audit: install
	BIN=$(BIN) .ci/audit

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
# (or throughput, ingest, cost, idp_cost). wrk (apt-get install wrk) is used by bench.ingest
# when present.
bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.throughput --tickets 1000 --profiles realistic \
		--concurrency 16,32,64,128,256 --section throughput-sweep
	$(BIN)/python -m bench.throughput --metrics-cost --rounds 5 --tickets 1000 --profiles none
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.cost
	$(BIN)/python -m bench.idp_cost

demo: install
	$(BIN)/deskgate demo

dev: install
	$(BIN)/deskgate dev

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
