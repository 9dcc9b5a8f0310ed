#!/usr/bin/env bash
# Installs what the browser SDK tests (tests/integration/test_browser_sdks.py) need:
# Debian's chromium, which Playwright for Python drives through executable_path (no
# browser download), and web/dist built from web/'s pinned npm packages. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "/usr/bin/chromium is missing: apt-get install -y chromium (as root)" >&2
    exit 1
  fi
  echo "installing Debian's chromium"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi

infra/web-build.sh
