#!/usr/bin/env bash
# The main job end to end, on a fresh machine: set-up, then `batchflag demo`.
# With no --url/--env/BATCHFLAG_DATABASE_URL it runs on a throwaway local server
# process: no Docker engine needed, none installed or started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --no-docker
exec .venv/bin/batchflag "$@" demo
