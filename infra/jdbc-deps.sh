#!/usr/bin/env bash
# Installs what the JDBC test needs (tests/integration/test_bi_clients.py): the ClickHouse
# JDBC driver (com.clickhouse:clickhouse-jdbc, classifier all) and slf4j-nop from Maven
# Central, resolved by tests/bi/jdbc/pom.xml into ~/.m2; the classpath goes to
# tests/bi/jdbc/classpath.txt. Idempotent: resolves again only when the pom is newer.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/tests/bi/jdbc"
CP="$DIR/classpath.txt"
for tool in java mvn; do
  if ! command -v "$tool" >/dev/null; then
    echo "jdbc-deps: $tool not found (install OpenJDK 17 and Maven)" >&2
    exit 1
  fi
done
if [[ ! -s "$CP" || "$DIR/pom.xml" -nt "$CP" ]]; then
  echo "jdbc-deps: resolving the ClickHouse JDBC driver from Maven Central"
  mvn -q -B -f "$DIR/pom.xml" dependency:build-classpath -Dmdep.outputFile="$CP" \
    -Dmdep.includeScope=runtime >&2
fi
