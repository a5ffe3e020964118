#!/usr/bin/env bash
# The whole test suite, on a fresh machine: set-up, then every test family
# (fast, stress, crash, galera, grouprepl). Extra arguments go to pytest, e.g.
#   scripts/test.sh -m "not stress and not crash and not galera and not grouprepl"   # the fast part
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
