#!/usr/bin/env bash
# A Redis Cluster of three masters on loopback, from the same Debian redis-server:
#   start | stop | status | nodes     (ports: CRM_REDIS_CLUSTER_PORTS, default 17001-17003)
# Point the pipeline at it with CRM_REDIS_URL=redis://127.0.0.1:17001/0 CRM_REDIS_CLUSTER=true.
set -euo pipefail
source "$(dirname "$0")/env.sh"
PORTS=(${CRM_REDIS_CLUSTER_PORTS:-17001 17002 17003})
CDIR=$CRM_DATA_DIR/redis-cluster

up() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }
healthy() { redis-cli -p "${PORTS[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; }

start() {
  command -v redis-server >/dev/null || { log "redis-server missing: run infra/redis.sh start"; exit 1; }
  if healthy; then log "redis cluster already running on ${PORTS[*]}"; return 0; fi
  for port in "${PORTS[@]}"; do
    mkdir -p "$CDIR/$port"
    up "$port" && continue
    sed -e "s#@PORT@#$port#g; s#@DATA@#$CDIR/$port#g" "$INFRA_DIR/redis/redis.conf.in" \
      > "$CDIR/$port/redis.conf"
    printf 'cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 3000\n' \
      >> "$CDIR/$port/redis.conf"
    redis-server "$CDIR/$port/redis.conf"
  done
  for port in "${PORTS[@]}"; do
    for _ in $(seq 1 100); do up "$port" && break; sleep 0.1; done
    up "$port" || { log "redis $port did not start; see $CDIR/$port/redis.log"; exit 1; }
  done
  if ! redis-cli -p "${PORTS[0]}" cluster info | grep -q 'cluster_slots_assigned:16384'; then
    log "creating the cluster on ${PORTS[*]}"
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${PORTS[@]}") \
      --cluster-replicas 0 --cluster-yes >/dev/null
  fi
  for _ in $(seq 1 100); do healthy && { log "redis cluster ok on ${PORTS[*]}"; return 0; }; sleep 0.1; done
  log "redis cluster did not become ok"; exit 1
}

stop() {
  for port in "${PORTS[@]}"; do
    up "$port" && redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$CDIR"
}

case ${1:-status} in
  start) start ;;
  stop) stop ;;
  nodes) redis-cli -p "${PORTS[0]}" cluster nodes ;;
  status) if healthy; then echo "redis cluster ok on ${PORTS[*]}"; else echo "redis cluster down"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|status|nodes" >&2; exit 2 ;;
esac
