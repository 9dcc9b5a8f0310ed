#!/usr/bin/env bash
# Brings the whole local stack up or down: Kafka (KRaft), Redis, topics, ClickHouse schema.
# Idempotent: `up` twice is harmless; `down` stops only what these scripts started.
set -euo pipefail
source "$(dirname "$0")/env.sh"

case ${1:-status} in
  up)
    "$INFRA_DIR/redis.sh" start
    "$INFRA_DIR/kafka.sh" start
    "$PYTHON" -m pipeline.cli.main infra-ready
    ;;
  down)
    "$INFRA_DIR/kafka.sh" stop
    "$INFRA_DIR/redis.sh" stop
    ;;
  status)
    "$INFRA_DIR/kafka.sh" status || true
    "$INFRA_DIR/redis.sh" status || true
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
