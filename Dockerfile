FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY connectors ./connectors
COPY worker ./worker
COPY webhooks ./webhooks
COPY sandbox ./sandbox
RUN pip install --no-cache-dir . && useradd --system --no-create-home deskgate
USER deskgate
# One image, three roles: `deskgate web`, `deskgate worker`, `deskgate beat` (see docker-compose.yml).
CMD ["deskgate", "web", "--bind", "0.0.0.0:8000"]
