#!/usr/bin/env bash
# Three Apache Kafka nodes in KRaft mode on loopback, each broker + controller (a
# three-voter quorum), from the same Maven classpath as infra/kafka.sh.
#
#   start [N...]   start all nodes (or the given ones); formats storage on first start
#   stop [N...]    stop gracefully, all named nodes at once (SIGTERM, SIGKILL after 30 s)
#   kill N         SIGKILL node N (a crash: no controlled shutdown)
#   restart N      stop (if running) and start node N again with its data
#   status         which nodes run; exit 3 if any is down
#   bootstrap      print the bootstrap servers (for CRM_KAFKA_BOOTSTRAP)
#   clean          SIGKILL every node and delete the cluster's data directory
#
# Node N (1..3) listens on 127.0.0.1:$((CRM_KAFKA_CLUSTER_PORT + 2(N-1))) and its controller
# on the next port: 29092/29093, 29094/29095, 29096/29097 by default, apart from the single
# dev broker (9092) and the test broker (19092). Data: $CRM_KAFKA_CLUSTER_DIR/node-N.
set -euo pipefail
source "$(dirname "$0")/env.sh"
CDIR=${CRM_KAFKA_CLUSTER_DIR:-$CRM_DATA_DIR/kafka-cluster}
BASE=${CRM_KAFKA_CLUSTER_PORT:-29092}
NODES=(1 2 3)

port() { echo $((BASE + 2 * ($1 - 1))); }
controller_port() { echo $(($(port "$1") + 1)); }
pidfile() { echo "$CDIR/node-$1/kafka.pid"; }
running() { [[ -f $(pidfile "$1") ]] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }
port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

bootstrap() {
  local out=() n
  for n in "${NODES[@]}"; do out+=("127.0.0.1:$(port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

voters() {
  local out=() n
  for n in "${NODES[@]}"; do out+=("$n@127.0.0.1:$(controller_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

check_node() {
  [[ $1 =~ ^[123]$ ]] || { log "no node '$1': nodes are 1, 2 and 3"; exit 2; }
}

start_node() {
  local n=$1 dir=$CDIR/node-$1 cp=$2
  mkdir -p "$dir/logs"
  if running "$n"; then log "kafka node $n already running (pid $(cat "$(pidfile "$n")"))"; return 0; fi
  for p in "$(port "$n")" "$(controller_port "$n")"; do
    for _ in $(seq 1 100); do port_open "$p" || break; sleep 0.3; done  # a stopping node frees it soon
    if port_open "$p"; then
      log "port $p is in use by another process; stop it or set CRM_KAFKA_CLUSTER_PORT"; exit 1
    fi
  done
  sed -e "s#@NODE@#$n#g; s#@VOTERS@#$(voters)#g" \
      -e "s#@PORT@#$(port "$n")#g; s#@CONTROLLER_PORT@#$(controller_port "$n")#g" \
      -e "s#@DATA@#$dir#g; s#@PARTITIONS@#$CRM_TOPIC_PARTITIONS#g" \
      "$INFRA_DIR/kafka/cluster.properties.in" > "$dir/server.properties"
  if [[ ! -f $dir/logs/meta.properties ]]; then
    java -cp "$cp" -Dlog4j.configuration="file:$INFRA_DIR/kafka/log4j.properties" -Dkafka.logs.dir="$dir" \
      kafka.tools.StorageTool format -t "$(cat "$CDIR/cluster.id")" -c "$dir/server.properties" \
      --ignore-formatted >/dev/null
  fi
  log "starting kafka node $n on 127.0.0.1:$(port "$n") (controller $(controller_port "$n"))"
  nohup java -Xms128m -Xmx"${CRM_KAFKA_HEAP:-512m}" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$INFRA_DIR/kafka/log4j.properties" -Dkafka.logs.dir="$dir" \
    -cp "$cp" kafka.Kafka "$dir/server.properties" >> "$dir/stdout.log" 2>&1 &
  echo $! > "$(pidfile "$n")"
}

start() {
  command -v java >/dev/null || { log "java not found: install OpenJDK 17"; exit 1; }
  local cp n
  cp=$("$INFRA_DIR/kafka.sh" classpath)
  mkdir -p "$CDIR"
  if [[ ! -s $CDIR/cluster.id ]]; then  # one cluster id for the three nodes' storage
    java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1 > "$CDIR/cluster.id"
    log "new KRaft cluster $(cat "$CDIR/cluster.id") in $CDIR"
  fi
  for n in "$@"; do check_node "$n"; start_node "$n" "$cp"; done
}

stop() {  # SIGTERM to every named node at once (a controlled shutdown), SIGKILL after 30 s
  local n pids=()
  for n in "$@"; do
    check_node "$n"
    if running "$n"; then
      pids+=("$(cat "$(pidfile "$n")")")
      log "stopping kafka node $n (pid ${pids[-1]})"
      kill "${pids[-1]}" 2>/dev/null || true
    fi
  done
  for _ in $(seq 1 150); do
    local alive=0 pid
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for n in "$@"; do rm -f "$(pidfile "$n")"; done
}

kill_node() {
  local n=$1
  if running "$n"; then
    log "SIGKILL kafka node $n (pid $(cat "$(pidfile "$n")"))"
    kill -9 "$(cat "$(pidfile "$n")")"
    while kill -0 "$(cat "$(pidfile "$n")")" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$(pidfile "$n")"
}

status() {
  local n down=0
  for n in "${NODES[@]}"; do
    if running "$n"; then
      echo "kafka node $n running on 127.0.0.1:$(port "$n") (pid $(cat "$(pidfile "$n")"))"
    else
      echo "kafka node $n stopped"; down=1
    fi
  done
  return $((down * 3))
}

cmd=${1:-status}
shift || true
(($#)) || set -- "${NODES[@]}"  # no node named: all of them (kill and restart need one)
case $cmd in
  start) start "$@" ;;
  stop) stop "$@" ;;
  kill) [[ $# -eq 1 ]] || { echo "usage: $0 kill N" >&2; exit 2; }; check_node "$1"; kill_node "$1" ;;
  restart)
    [[ $# -eq 1 ]] || { echo "usage: $0 restart N" >&2; exit 2; }
    check_node "$1"; stop "$1"; start "$1" ;;
  status) status ;;
  bootstrap) bootstrap ;;
  clean) for n in "${NODES[@]}"; do kill_node "$n"; done; rm -rf "$CDIR" ;;  # data goes anyway
  *) echo "usage: $0 start [N...]|stop [N...]|kill N|restart N|status|bootstrap|clean" >&2; exit 2 ;;
esac
