#!/usr/bin/env bash
# Redis from Debian's redis-server (installed when missing): start | stop | status.
set -euo pipefail
source "$(dirname "$0")/env.sh"
RDIR=$CRM_DATA_DIR/redis

install() {
  command -v redis-server >/dev/null && return 0
  if [[ $(id -u) -ne 0 ]]; then log "redis-server missing: apt-get install -y redis-server"; exit 1; fi
  log "installing redis-server from Debian"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
}

ping() { redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start() {
  install
  mkdir -p "$RDIR"
  if ping; then log "redis already running on $REDIS_PORT"; return 0; fi
  sed -e "s#@PORT@#$REDIS_PORT#g; s#@DATA@#$RDIR#g" "$INFRA_DIR/redis/redis.conf.in" > "$RDIR/redis.conf"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server "$RDIR/redis.conf"
  # A large append-only file takes a while to load (PING answers LOADING meanwhile): wait
  # as long as the server is alive and loading, 10 s otherwise.
  local quiet=0 said=0
  while (( quiet < 100 )); do
    ping && return 0
    if redis-cli -p "$REDIS_PORT" ping 2>&1 | grep -q LOADING; then
      (( said )) || log "redis is loading its data set (see $RDIR/redis.log)"; said=1
    else
      quiet=$((quiet + 1))
    fi
    sleep 0.1
  done
  log "redis did not answer PING; see $RDIR/redis.log"; exit 1
}

stop() {
  ping || return 0
  log "stopping redis on $REDIS_PORT"
  redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do ping || return 0; sleep 0.1; done
}

case ${1:-status} in
  start) start ;;
  stop) stop ;;
  status) if ping; then echo "redis running on $REDIS_PORT"; else echo "redis stopped"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
