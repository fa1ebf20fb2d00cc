FROM python:3.11-slim
# Deskgate only: the sandbox, benchmarks and tests stay in the source checkout (and the wheel
# built from it has none of them).
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY connectors ./connectors
COPY worker ./worker
COPY webhooks ./webhooks
RUN pip install --no-cache-dir . && useradd --system --no-create-home deskgate
USER deskgate
# One image, three roles: `deskgate web`, `deskgate worker`, `deskgate beat` (see docker-compose.yml).
CMD ["deskgate", "web", "--bind", "0.0.0.0:8000"]
