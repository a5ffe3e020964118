#!/usr/bin/env bash
# The whole test suite, on a fresh machine: set-up, then every test family on every
# server kind (mariadb-10.11, mariadb-11.8, mysql-9.7). Each kind runs in a container of
# the kind's image, built here from its Debian root and cached (batchflag_db/testing/images.py),
# where a Docker engine answers; else as a local server process. Extra arguments go to pytest, e.g.
#   BATCHFLAG_TEST_SERVER=mariadb-10.11 scripts/test.sh -n 2 -m quick   # one kind, the quick part
# (`quick` is every test that carries none of the slow markers: slow, stress, crash, galera, grouprepl, replica).
# BATCHFLAG_TEST_SERVER=KIND runs one kind; BATCHFLAG_TEST_SERVERS="K1 K2" a list of them,
# side by side (BATCHFLAG_TEST_SIDE_BY_SIDE=0: one after another).
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

# Set-up first, one kind after another: each kind's image (cached; built from its Debian
# root on first use), or its Debian root where no Docker engine answers.
for kind in $kinds; do
    [ "$kind" = given ] && continue
    [ -z "$given" ] || continue
    if docker version >/dev/null 2>&1; then
        .venv/bin/python -m batchflag_db.testing.images "$kind" \
            || echo "no image of $kind here: the run falls back to a local server process" >&2
    elif [ "$kind" != mariadb-10.11 ]; then
        .venv/bin/python -m batchflag_db.testing.debian_root "$kind"
    fi
done

# One pytest run per kind. Several kinds run side by side (they share no server and no
# port; most of a run is waiting on its servers), each printing its log when it ends;
# BATCHFLAG_TEST_SIDE_BY_SIDE=0 runs them one after another with live output.
run_kind() {  # run_kind KIND PYTEST-ARGS...
    local kind=$1
    shift
    local run=(env)
    [ "$kind" = given ] || run=(env BATCHFLAG_TEST_SERVER="$kind")
    "${run[@]}" .venv/bin/python -m pytest --junitxml="$reports/$kind.xml" "$@"
}
title() {
    if [ "$1" = given ]; then
        echo "${BATCHFLAG_TEST_IMAGE:-the server at BATCHFLAG_TEST_DATABASE_URL}"
    else
        echo "$1"
    fi
}
status=0
note_exit() {  # note_exit KIND CODE
    case "$2" in
        0) ;;
        5) echo "no tests selected on $1" ;;  # e.g. -m galera on a MySQL kind
        *) status=$2 ;;
    esac
}
set -- $kinds -- "$@"
count=0
for arg in "$@"; do [ "$arg" = -- ] && break; count=$((count + 1)); done
kind_list=("${@:1:count}")
shift "$((count + 1))"
if [ "${#kind_list[@]}" -gt 1 ] && [ "${BATCHFLAG_TEST_SIDE_BY_SIDE:-1}" != 0 ]; then
    declare -A pids started
    for kind in "${kind_list[@]}"; do
        echo "=== batchflag-db tests on $(title "$kind"): started $(date -u +%T) ==="
        started[$kind]=$SECONDS
        run_kind "$kind" "$@" >"$reports/$kind.log" 2>&1 &
        pids[$kind]=$!
    done
    for kind in "${kind_list[@]}"; do
        set +e
        wait "${pids[$kind]}"
        code=$?
        set -e
        echo "=== batchflag-db tests on $(title "$kind"): exit $code after $((SECONDS - started[$kind])) s ==="
        cat "$reports/$kind.log"
        note_exit "$kind" "$code"
    done
else
    for kind in "${kind_list[@]}"; do
        echo "=== batchflag-db tests on $(title "$kind") ==="
        began=$SECONDS
        set +e
        run_kind "$kind" "$@"
        code=$?
        set -e
        echo "=== batchflag-db tests on $(title "$kind"): exit $code after $((SECONDS - began)) s ==="
        note_exit "$kind" "$code"
    done
fi
.venv/bin/python -m batchflag_db.testing.report "$reports"/*.xml || status=1
exit "$status"
