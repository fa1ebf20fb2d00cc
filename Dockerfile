# The base image, to be pinned by digest: tags move, a digest is one exact image. No registry was
# reachable where this file was written, so the digest is not filled in here: resolve it with
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
# and build with --build-arg BASE_IMAGE=python:3.11-slim-bookworm@sha256:<digest> (compose:
# DESKGATE_BASE_IMAGE in .env), or write it into the default below (docs/operations.md).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
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
# misses a dependency. A numeric user: Kubernetes' runAsNonRoot can verify a UID, not a name.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && pip check \
    && groupadd --system --gid 10001 deskgate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home deskgate
USER 10001:10001
# One image, three roles: `deskgate web`, `deskgate worker`, `deskgate beat`, each with its
# health check and stop grace in docker-compose.yml.
CMD ["deskgate", "web", "--bind", "0.0.0.0:8000"]
