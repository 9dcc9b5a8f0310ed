#!/usr/bin/env bash
# Apache Kafka 3.9 in KRaft mode from Maven Central jars: start | stop | status.
# Classpath: `mvn dependency:build-classpath` over infra/kafka/pom.xml (cached in ~/.m2).
set -euo pipefail
source "$(dirname "$0")/env.sh"
KDIR=$CRM_DATA_DIR/kafka
PIDFILE=$KDIR/kafka.pid

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

classpath() {
  local cpfile=$KDIR/classpath.txt pom=$INFRA_DIR/kafka/pom.xml
  mkdir -p "$KDIR"
  if [[ ! -s $cpfile || $pom -nt $cpfile ]]; then
    log "resolving the Kafka classpath from Maven Central (first run only)"
    mvn -q -B -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cpfile" -Dmdep.includeScope=runtime >&2
  fi
  cat "$cpfile"
}

start() {
  mkdir -p "$KDIR/logs"
  if running; then log "kafka already running (pid $(cat "$PIDFILE"))"; return 0; fi
  command -v java >/dev/null || { log "java not found: install OpenJDK 17"; exit 1; }
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    for _ in $(seq 1 100); do  # a broker that is still shutting down frees its ports soon
      (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null || break
      sleep 0.3
    done
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
      log "port $port is in use by another process; stop it or set CRM_KAFKA_BOOTSTRAP"; exit 1
    fi
  done
  local cp; cp=$(classpath)
  sed -e "s#@PORT@#$KAFKA_PORT#g; s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
      -e "s#@DATA@#$KDIR#g; s#@PARTITIONS@#$CRM_TOPIC_PARTITIONS#g" \
      "$INFRA_DIR/kafka/server.properties.in" > "$KDIR/server.properties"
  if [[ ! -f $KDIR/logs/meta.properties ]]; then
    local id; id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    log "formatting KRaft storage (cluster $id)"
    java -cp "$cp" -Dlog4j.configuration="file:$INFRA_DIR/kafka/log4j.properties" -Dkafka.logs.dir="$KDIR" \
      kafka.tools.StorageTool format -t "$id" -c "$KDIR/server.properties" --ignore-formatted >&2
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms256m -Xmx${CRM_KAFKA_HEAP:-768m} -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$INFRA_DIR/kafka/log4j.properties" -Dkafka.logs.dir="$KDIR" \
    -cp "$cp" kafka.Kafka "$KDIR/server.properties" > "$KDIR/stdout.log" 2>&1 &
  echo $! > "$PIDFILE"
}

stop() {
  if ! running; then rm -f "$PIDFILE"; return 0; fi
  local pid; pid=$(cat "$PIDFILE")
  log "stopping kafka (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

case ${1:-status} in
  start) start ;;
  stop) stop ;;
  kill) running && kill -9 "$(cat "$PIDFILE")"; rm -f "$PIDFILE" ;;
  classpath) classpath ;;  # also used by kafka-cluster.sh
  status) if running; then echo "kafka running (pid $(cat "$PIDFILE"))"; else echo "kafka stopped"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|kill|status|classpath" >&2; exit 2 ;;
esac
