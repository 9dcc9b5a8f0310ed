#!/usr/bin/env bash
# Installs what the browser SDK tests need (see tests/). Idempotent.
set -euo pipefail
