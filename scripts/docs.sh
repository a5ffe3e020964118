#!/usr/bin/env bash
# Build the docs site (mkdocs.yml, docs/) into site/ with warnings as errors.
# Sets up .venv with the docs extra first if it lacks mkdocs. Extra arguments go to
# `mkdocs build`, e.g. `scripts/docs.sh --site-dir /tmp/site`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/mkdocs ]; then
    PYTHON="${PYTHON:-python3}"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q -e '.[docs]'
fi
export NO_MKDOCS_2_WARNING=1  # the theme's banner about its successor, on every build
exec .venv/bin/mkdocs build --strict "$@"
