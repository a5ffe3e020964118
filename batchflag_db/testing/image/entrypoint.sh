#!/bin/sh
# batchflag-db's container entrypoint: runs the MariaDB or MySQL server of a Debian root
# turned into an image (batchflag_db/testing/images.py), set up from the environment
# the way the official mariadb and mysql images are, so one harness drives both:
#
#   MARIADB_ROOT_PASSWORD / MYSQL_ROOT_PASSWORD      root's password, for root@localhost
#                                                    and root@'%' (clients through a
#                                                    published port come from the bridge)
#   MARIADB_ALLOW_EMPTY_ROOT_PASSWORD / MYSQL_ALLOW_EMPTY_PASSWORD   any value: root has none
#   MARIADB_RANDOM_ROOT_PASSWORD / MYSQL_RANDOM_ROOT_PASSWORD        any value: one is made
#                                                    up and printed to the log
#   MARIADB_DATABASE / MYSQL_DATABASE                a database created on first start
#   MARIADB_USER + MARIADB_PASSWORD / MYSQL_USER + MYSQL_PASSWORD
#                                                    an account '%' with every privilege
#                                                    on that database
#
# Arguments that start with "-" are more server options (`docker run IMAGE --log-bin`);
# any other first argument is a command run instead of the server (`docker run IMAGE sh`).
# The datadir is /var/lib/mysql, initialised on the first start only; the server runs as
# the mysql user, as PID 1, so `docker stop` shuts it down cleanly.
set -eu

say() {
    echo "batchflag-db entrypoint: $*" >&2
}

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

if [ -x /usr/sbin/mariadbd ]; then
    flavour=mariadb
    server=/usr/sbin/mariadbd
elif [ -x /usr/sbin/mysqld ]; then
    flavour=mysql
    server=/usr/sbin/mysqld
else
    say "no server here: neither /usr/sbin/mariadbd nor /usr/sbin/mysqld"
    exit 1
fi

datadir=/var/lib/mysql
rundir=/run/mysqld
root_password="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
allow_empty="${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-${MYSQL_ALLOW_EMPTY_PASSWORD:-}}"
random_root="${MARIADB_RANDOM_ROOT_PASSWORD:-${MYSQL_RANDOM_ROOT_PASSWORD:-}}"
database="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"
user="${MARIADB_USER:-${MYSQL_USER:-}}"
password="${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}"

# A string as an SQL literal's contents: backslashes and quotes doubled.
literal() {
    printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g"
}

# A name as a quoted identifier's contents: backquotes doubled.
identifier() {
    printf '%s' "$1" | sed -e 's/`/``/g'
}

# Debian's mysql-server-core makes no mysql account (mariadb-server does).
if ! id mysql >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /bin/false mysql
fi
mkdir -p "$datadir" "$rundir" /tmp
chmod 1777 /tmp
chown mysql:mysql "$datadir" "$rundir"
set -- --datadir="$datadir" --socket="$rundir/mysqld.sock" --pid-file="$rundir/mysqld.pid" \
    --port=3306 --bind-address=0.0.0.0 --user=mysql "$@"
if [ "$flavour" = mysql ]; then
    # mysqld refuses to start unless secure-file-priv names a directory that exists.
    mkdir -p /var/lib/mysql-files
    chown mysql:mysql /var/lib/mysql-files
    set -- --secure-file-priv=/var/lib/mysql-files "$@"
fi

if [ ! -d "$datadir/mysql" ]; then
    if [ -n "$random_root" ]; then
        root_password="$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')"
        say "GENERATED ROOT PASSWORD: $root_password"
    elif [ -z "$root_password" ] && [ -z "$allow_empty" ]; then
        say "the datadir is new and no root password is set: give MYSQL_ROOT_PASSWORD"
        say "(or MARIADB_ROOT_PASSWORD), or MYSQL_ALLOW_EMPTY_PASSWORD=1 for none"
        exit 1
    fi
    if [ -n "$user" ] && [ "$user" = root ]; then
        say "MYSQL_USER=root is refused: root is made from the root password"
        exit 1
    fi
    if [ -n "$user" ] && [ -z "$password" ]; then
        say "MYSQL_USER needs MYSQL_PASSWORD (or MARIADB_USER, MARIADB_PASSWORD)"
        exit 1
    fi
    say "initialising $flavour datadir $datadir"
    if [ "$flavour" = mariadb ]; then
        mariadb-install-db --no-defaults --datadir="$datadir" --user=mysql \
            --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
            >/dev/null
    else
        "$server" --no-defaults --datadir="$datadir" --user=mysql --initialize-insecure
    fi

    # The accounts are made by the server itself on its first start (--init-file),
    # before it takes connections; one statement a line. printf, not echo: dash's echo
    # would undo the doubled backslashes of a literal.
    init="$rundir/first-start.sql"
    pw="$(literal "$root_password")"
    {
        if [ "$flavour" = mariadb ]; then
            printf '%s\n' "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', ''@'localhost';"
        fi
        printf '%s\n' "ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';"
        printf '%s\n' "CREATE USER 'root'@'%' IDENTIFIED BY '$pw';"
        printf '%s\n' "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        if [ -n "$database" ]; then
            printf '%s\n' "CREATE DATABASE IF NOT EXISTS \`$(identifier "$database")\`;"
        fi
        if [ -n "$user" ]; then
            account="'$(literal "$user")'@'%'"
            printf '%s\n' "CREATE USER $account IDENTIFIED BY '$(literal "$password")';"
            if [ -n "$database" ]; then
                printf '%s\n' "GRANT ALL PRIVILEGES ON \`$(identifier "$database")\`.* TO $account;"
            fi
        fi
    } >"$init"
    chown mysql:mysql "$init"
    chmod 600 "$init"
    set -- --init-file="$init" "$@"
fi

say "starting $server $*"
exec "$server" --no-defaults "$@"
