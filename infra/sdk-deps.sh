#!/usr/bin/env bash
# Installs what the sdk SDK tests need (see tests/). Idempotent.
set -euo pipefail
