# The pipeline's processes in one image (used by docker-compose.yml; nothing in the tests
# depends on it). The same image runs `crm collector`, `crm worker`, `crm api`, the sinks.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY config ./config
COPY infra/clickhouse ./infra/clickhouse
RUN pip install --no-cache-dir '.[backfill]'
ENV CRM_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["crm"]
