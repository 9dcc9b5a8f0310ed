#!/usr/bin/env bash
# Installs what the server SDK tests need (tests/integration/test_server_sdks.py):
# the npm SDKs in tests/sdk/node and the Go SDK's client binary in tests/sdk/go.
# Idempotent: each step runs only when its inputs are newer than its output.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

NODE_DIR="$ROOT/tests/sdk/node"
if ! command -v npm >/dev/null; then
  echo "sdk-deps: npm not found (install Node.js 18+)" >&2
  exit 1
fi
# npm writes node_modules/.package-lock.json on every install: newer than the lock = fresh.
if [[ ! -f "$NODE_DIR/node_modules/.package-lock.json" ||
  "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ||
  "$NODE_DIR/package.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]]; then
  echo "sdk-deps: npm ci in tests/sdk/node"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

GO_DIR="$ROOT/tests/sdk/go"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then
  echo "sdk-deps: go not found (looked for go on PATH and /usr/local/go/bin/go)" >&2
  exit 1
fi
BIN="$GO_DIR/sdk-go"
if [[ ! -x "$BIN" || "$GO_DIR/main.go" -nt "$BIN" || "$GO_DIR/go.mod" -nt "$BIN" ||
  "$GO_DIR/go.sum" -nt "$BIN" ]]; then
  echo "sdk-deps: go build tests/sdk/go"
  (cd "$GO_DIR" && GOFLAGS=-buildvcs=false "$GO" build -o sdk-go .)
fi
