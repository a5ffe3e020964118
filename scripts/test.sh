#!/usr/bin/env bash
# The whole test suite, on a fresh machine: set-up, then every test family on every
# server kind (mariadb-10.11, mariadb-11.8, mysql-9.7). Each kind runs in a container of
# the kind's image, built here from its Debian root and cached (batchflag_db/testing/images.py),
# where a Docker engine answers; else as a local server process. Extra arguments go to pytest, e.g.
#   BATCHFLAG_TEST_SERVER=mariadb-10.11 scripts/test.sh -n 2 -m quick   # one kind, the quick part
# (`quick` is every test that carries none of the slow markers: slow, stress, crash, galera, grouprepl, replica).
# BATCHFLAG_TEST_SERVER=KIND runs one kind; BATCHFLAG_TEST_SERVERS="K1 K2" a list of them.
# BATCHFLAG_TEST_IMAGE=IMAGE runs once, in a container of that image (any image that takes
# MYSQL_ROOT_PASSWORD like the official mariadb/mysql ones); BATCHFLAG_TEST_DATABASE_URL=URL
# runs once against that server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

if [ -n "${BATCHFLAG_TEST_SERVER:-}" ]; then
    kinds="$BATCHFLAG_TEST_SERVER"
else
    kinds="${BATCHFLAG_TEST_SERVERS:-mariadb-10.11 mariadb-11.8 mysql-9.7}"
fi
given="${BATCHFLAG_TEST_DATABASE_URL:-${BATCHFLAG_TEST_IMAGE:-}}"
if [ -n "$given" ]; then
    # A given server or image is one server: run once against it. Its kind is read off
    # its SELECT VERSION() unless BATCHFLAG_TEST_SERVER names one.
    kinds="${BATCHFLAG_TEST_SERVER:-given}"
fi

reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT
status=0
for kind in $kinds; do
    if [ "$kind" = given ]; then
        echo "=== batchflag-db tests on ${BATCHFLAG_TEST_IMAGE:-the server at BATCHFLAG_TEST_DATABASE_URL} ==="
        run=(env)
    else
        echo "=== batchflag-db tests on $kind ==="
        run=(env BATCHFLAG_TEST_SERVER="$kind")
        if [ -z "$given" ]; then
            if docker version >/dev/null 2>&1; then
                # The kind's image (cached; built from its Debian root on first use).
                .venv/bin/python -m batchflag_db.testing.images "$kind" \
                    || echo "no image of $kind here: the run falls back to a local server process" >&2
            elif [ "$kind" != mariadb-10.11 ]; then
                .venv/bin/python -m batchflag_db.testing.debian_root "$kind"
            fi
        fi
    fi
    set +e
    "${run[@]}" .venv/bin/python -m pytest --junitxml="$reports/$kind.xml" "$@"
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
