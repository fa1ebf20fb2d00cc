FROM python:3.11-slim
# Deskgate only: the sandbox, benchmarks and tests stay in the source checkout (and the wheel
# built from it has none of them).
WORKDIR /app
# The locked dependencies first (their layer outlives code changes): exactly the pinned files,
# each checked against its hash, nothing resolved at build time (docs/operations.md).
COPY requirements/runtime.txt ./requirements/runtime.txt
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY config ./config
COPY connectors ./connectors
COPY worker ./worker
COPY webhooks ./webhooks
# Deskgate itself, built by the locked hatchling; `pip check` fails the build on a lock that
# misses a dependency.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && pip check \
    && useradd --system --no-create-home deskgate
USER deskgate
# One image, three roles: `deskgate web`, `deskgate worker`, `deskgate beat` (see docker-compose.yml).
CMD ["deskgate", "web", "--bind", "0.0.0.0:8000"]
