#!/usr/bin/env bash
# Builds web/dist (the /v1/crm.js tracking snippet and the browser test bundles) from
# web/'s pinned npm packages. Idempotent: `npm ci` runs only when web/package.json or
# web/package-lock.json changed since the last install, the build only when a source is
# newer than its output.
#   infra/web-build.sh            fail when node/npm are missing or the build fails
#   infra/web-build.sh --optional warn and go on instead (make setup: the collector then
#                                 answers 503 on /v1/crm.js, nothing else depends on it)
set -euo pipefail
if [ "${1:-}" = "--optional" ]; then
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "note: node/npm not found, web/dist/crm.js not built (/v1/crm.js answers 503)"
  elif ! "$0"; then
    echo "warning: web/dist/crm.js not built (/v1/crm.js answers 503); see the error above"
  fi
  exit 0
fi
cd "$(dirname "$0")/../web"

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "node and npm are required to build web/ (apt-get install -y nodejs npm)" >&2
  exit 1
fi

lock_sum="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
stamp=node_modules/.crm-lock-sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  echo "web: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" >"$stamp"
fi

built=dist/.built
if [ ! -f "$built" ] || [ -n "$(find src build.mjs package-lock.json -newer "$built" -print -quit)" ]; then
  node build.mjs
  touch "$built"
fi
