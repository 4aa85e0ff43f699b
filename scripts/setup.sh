#!/usr/bin/env bash
# Set up perfcast for development: a virtual environment in .venv with the package,
# its test dependencies and PostgreSQL (Debian's package, for the store tests).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x scripts/postgres.sh ]; then
  bash scripts/postgres.sh || echo "setup: PostgreSQL could not be installed; its tests will be skipped" >&2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e '.[dev]'
