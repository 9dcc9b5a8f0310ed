#!/usr/bin/env bash
# Beam job servers for `crm backfill --runner flink|prism --job-endpoint HOST:PORT`, at the
# version of apache-beam installed in .venv, cached under .crm-cache/beam/ (gitignored):
#   * Flink: org.apache.beam:beam-runners-flink-$CRM_FLINK_VERSION-job-server from Maven
#     Central (`mvn dependency:copy`), run with `java -jar` (an embedded Flink cluster when no
#     --flink-master is given);
#   * Prism: Beam's portable runner in Go, built with `go install` from the Go module proxy.
# Idempotent: each is fetched or built only when its file is missing.
#   infra/beam-runners.sh fetch [--optional]  both; --optional warns and exits 0 on a failure
#   infra/beam-runners.sh flink-jar|prism     print the path (exit 1 when not fetched)
#   infra/beam-runners.sh versions            Beam and Flink versions used
set -euo pipefail
source "$(dirname "$0")/env.sh"
CACHE=$REPO_ROOT/.crm-cache/beam
# Beam 2.77 publishes Flink job servers for 1.19, 1.20, 2.0, 2.1 and 2.2 (FlinkRunnerOptions.
# PUBLISHED_FLINK_VERSIONS); 1.20 (the 1.x line's last, long supported) runs on Java 11 and 17.
FLINK_VERSION=${CRM_FLINK_VERSION:-1.20}

beam_version() {
  "$PYTHON" -c 'import apache_beam; print(apache_beam.__version__)' 2>/dev/null | tail -1
}

flink_jar() {
  local beam; beam=$(beam_version)
  echo "$CACHE/beam-runners-flink-$FLINK_VERSION-job-server-$beam.jar"
}

prism_bin() { echo "$CACHE/prism-$(beam_version)/prism"; }

fetch_flink() {
  local jar beam; jar=$(flink_jar); beam=$(beam_version)
  [[ -s $jar ]] && return 0
  command -v mvn >/dev/null || { log "Maven is required (apt-get install -y maven)"; return 1; }
  log "fetching the Flink $FLINK_VERSION job server for Beam $beam from Maven Central"
  mkdir -p "$CACHE"
  if ! mvn -q -B -Dstyle.color=never dependency:copy \
    -Dartifact="org.apache.beam:beam-runners-flink-$FLINK_VERSION-job-server:$beam:jar" \
    -DoutputDirectory="$CACHE" > "$CACHE/flink-fetch.log" 2>&1; then
    log "$(grep -m1 -o '\[ERROR\].*' "$CACHE/flink-fetch.log" || true)"
    log "(full Maven output: $CACHE/flink-fetch.log)"
    return 1
  fi
  [[ -s $jar ]]
}

fetch_prism() {
  local bin beam go; bin=$(prism_bin); beam=$(beam_version)
  [[ -x $bin ]] && return 0
  go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
  [[ -x $go ]] || { log "Go is required to build Prism (https://go.dev/doc/install)"; return 1; }
  log "building Beam's Prism runner v$beam with go install (a few minutes, first run only)"
  mkdir -p "$(dirname "$bin")"
  GOBIN=$(dirname "$bin") GOFLAGS=-buildvcs=false \
    "$go" install "github.com/apache/beam/sdks/v2/go/cmd/prism@v$beam" >&2
}

fetch() {
  local optional=${1:-} failed=0
  for what in flink prism; do
    if ! "fetch_$what"; then
      failed=1
      if [[ $optional == --optional ]]; then
        log "warning: the $what job server is not available; its backfill test will be skipped"
      fi
    fi
  done
  [[ $optional == --optional ]] || return "$failed"
}

case ${1:-} in
  fetch) fetch "${2:-}" ;;
  flink-jar) jar=$(flink_jar); [[ -s $jar ]] || exit 1; echo "$jar" ;;
  prism) bin=$(prism_bin); [[ -x $bin ]] || exit 1; echo "$bin" ;;
  versions) echo "beam $(beam_version) flink $FLINK_VERSION" ;;
  *) echo "usage: $0 fetch [--optional] | flink-jar | prism | versions" >&2; exit 2 ;;
esac
