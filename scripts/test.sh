#!/usr/bin/env bash
# The whole test suite, on a fresh machine: set-up, then every test family on every
# server kind (mariadb-10.11 from the host, mariadb-11.8 and mysql-9.7 from cached Debian
# roots, built on first use). Extra arguments go to pytest, e.g.
#   BATCHFLAG_TEST_SERVER=mariadb-10.11 scripts/test.sh -n 2 -m quick   # one kind, the quick part
# (`quick` is every test that carries none of the slow markers: slow, stress, crash, galera, grouprepl, replica).
# BATCHFLAG_TEST_SERVER=KIND runs one kind; BATCHFLAG_TEST_SERVERS="K1 K2" a list of them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

if [ -n "${BATCHFLAG_TEST_SERVER:-}" ]; then
    kinds="$BATCHFLAG_TEST_SERVER"
else
    kinds="${BATCHFLAG_TEST_SERVERS:-mariadb-10.11 mariadb-11.8 mysql-9.7}"
fi
if [ -n "${BATCHFLAG_TEST_DATABASE_URL:-}" ]; then
    kinds="${kinds%% *}"  # a given server is one server: run once against it
fi

reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT
status=0
for kind in $kinds; do
    echo "=== batchflag-db tests on $kind ==="
    case "$kind" in
        mariadb-10.11) ;;
        *) [ -n "${BATCHFLAG_TEST_DATABASE_URL:-}" ] || .venv/bin/python -m batchflag_db.testing.debian_root "$kind" ;;
    esac
    set +e
    BATCHFLAG_TEST_SERVER="$kind" .venv/bin/python -m pytest --junitxml="$reports/$kind.xml" "$@"
    code=$?
    set -e
    case "$code" in
        0) ;;
        5) echo "no tests selected on $kind" ;;  # e.g. -m galera on a MySQL kind
        *) status=$code ;;
    esac
done
.venv/bin/python -m batchflag_db.testing.report "$reports"/*.xml || status=1
exit "$status"
