# Shared by the infra scripts: where things live and which ports they use.
# Everything derives from the same CRM_ settings the Python code reads.
INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$INFRA_DIR")
CRM_DATA_DIR=${CRM_DATA_DIR:-$REPO_ROOT/.crm-data}
CRM_KAFKA_BOOTSTRAP=${CRM_KAFKA_BOOTSTRAP:-127.0.0.1:9092}
CRM_REDIS_URL=${CRM_REDIS_URL:-redis://127.0.0.1:6379/0}
CRM_TOPIC_PARTITIONS=${CRM_TOPIC_PARTITIONS:-6}
KAFKA_PORT=${CRM_KAFKA_BOOTSTRAP##*:}
KAFKA_CONTROLLER_PORT=${CRM_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
REDIS_HOSTPORT=${CRM_REDIS_URL#redis://}
REDIS_HOSTPORT=${REDIS_HOSTPORT%%/*}
REDIS_PORT=${REDIS_HOSTPORT##*:}
PYTHON=${PYTHON:-$REPO_ROOT/.venv/bin/python}
export CRM_DATA_DIR CRM_KAFKA_BOOTSTRAP CRM_REDIS_URL CRM_TOPIC_PARTITIONS
log() { printf '[infra] %s\n' "$*" >&2; }
