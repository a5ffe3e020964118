#!/usr/bin/env bash
# Set up a fresh machine for batchflag-db: Debian packages (when missing and we
# are root), a Docker engine for the test suite's server containers (unless --no-docker),
# then a virtual environment in .venv with the package and its test extras.
# Safe to run again: it installs and starts only what is missing.
#   --no-docker   no Docker engine: `batchflag demo` (scripts/demo.sh) never needs one
set -euo pipefail
cd "$(dirname "$0")/.."

docker=yes
for arg in "$@"; do
    case "$arg" in
        --no-docker) docker=no ;;
        *) echo "bootstrap: unknown option $arg (known: --no-docker)" >&2; exit 2 ;;
    esac
done

need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
[ -e /usr/lib/galera/libgalera_smm.so ] || need+=(galera-4)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
# Galera's rsync SST script looks up listening ports with ss.
command -v ss >/dev/null 2>&1 || need+=(iproute2)
# mysqlclient (one of the clients the tests call the procedures from) compiles against these.
dpkg -s libmariadb-dev >/dev/null 2>&1 || need+=(libmariadb-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# The test suite's MariaDB 11.8 and MySQL 9.7 come from later Debian suites, installed
# into cached roots (batchflag_db/testing/debian_root.py).
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "bootstrap: installing Debian packages: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${need[@]}"
    else
        echo "bootstrap: missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
        exit 1
    fi
fi

# The test suite starts its server in a container (batchflag_db/testing/containers.py)
# where a Docker engine answers; without one it runs local server processes instead.
engine_answers() {
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}
if [ "$docker" = yes ] && ! engine_answers; then
    if [ "$(id -u)" -eq 0 ] && [ -r /etc/debian_version ]; then
        if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
            echo "bootstrap: installing Debian's docker.io"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q
            apt-get install -y -q --no-install-recommends docker.io
        fi
        if [ -z "${DOCKER_HOST:-}" ] && ! pgrep -x dockerd >/dev/null 2>&1; then
            log=/var/log/batchflag-dockerd.log
            echo "bootstrap: starting dockerd --storage-driver=overlay2 (log: $log)"
            nohup dockerd --storage-driver=overlay2 >>"$log" 2>&1 </dev/null &
        fi
        for _ in $(seq 60); do
            engine_answers && break
            sleep 0.5
        done
        if engine_answers; then
            echo "bootstrap: Docker engine $(docker version --format '{{.Server.Version}}') answers"
        else
            echo "bootstrap: the Docker engine did not answer within 30 s (see /var/log/batchflag-dockerd.log);" \
                "the tests will run local server processes instead" >&2
        fi
    else
        echo "bootstrap: no Docker engine answers; the tests will run local server processes." \
            "For server containers install one (Debian: sudo apt-get install docker.io) and start it." >&2
    fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
