"""Least privilege: an application account flips through the procedures and nothing else.

Also the evidence behind ``SQL SECURITY DEFINER`` and the choice of definer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import cast

import pymysql
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from batchflag_db import (
    BatchFlagError,
    ConfigurationError,
    SchemaNotReadyError,
    get_current_batch,
    migrate,
    set_current_batch,
    unset_current_batch,
)
from batchflag_db._routines import head_source
from batchflag_db._schema import (
    RESOLVE_PROCEDURE,
    ROUTINES,
    SET_PROCEDURE,
    VERSION_TABLE,
)
from batchflag_db.grants import (
    InvalidAccountError,
    column_write_statements,
    grant,
    grant_statements,
    parse_account,
)
from tests.conftest import check_table, connect, current_rows, insert_batches, run_cli

PASSWORD = "bf-test-pw"  # noqa: S105 - a throwaway account on a throwaway server

ER_TABLEACCESS_DENIED = 1142
ER_COLUMNACCESS_DENIED = 1143
ER_PROCACCESS_DENIED = 1370
ER_NO_SUCH_USER = 1449


def _errno(exc: BaseException) -> int:
    return int(exc.args[0])


@pytest.fixture
def make_account(server_url: URL) -> Iterator[Callable[[], tuple[str, str]]]:
    """Factory of fresh accounts ``bf_<hex>@%`` with a password; dropped afterwards.

    Returns (user name, account string ``'user'@'%'``).
    """
    created: list[str] = []
    admin = connect(server_url, autocommit=True)

    def factory() -> tuple[str, str]:
        user = f"bf_{uuid.uuid4().hex[:10]}"
        account = f"'{user}'@'%'"
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER {account} IDENTIFIED BY '{PASSWORD}'")
        created.append(account)
        return user, account

    yield factory
    with admin.cursor() as cur:
        for account in created:
            cur.execute(f"DROP USER IF EXISTS {account}")
    admin.close()


def _as(url: URL, user: str) -> URL:
    return url.set(username=user, password=PASSWORD)


def _table_state(conn: pymysql.Connection) -> list[tuple[object, ...]]:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM batchStatus ORDER BY id")
        return list(cur.fetchall())


class TestGrantStatements:
    def test_exact_statements(self) -> None:
        """The grants are SELECT on the table and EXECUTE on each routine, nothing more."""
        statements = grant_statements("app@%", "prod")
        assert statements[:3] == [
            "GRANT SELECT ON `prod`.`batchStatus` TO 'app'@'%'",
            "GRANT EXECUTE ON PROCEDURE `prod`.`set_current_batch` TO 'app'@'%'",
            "GRANT EXECUTE ON PROCEDURE `prod`.`unset_current_batch` TO 'app'@'%'",
        ]
        assert statements[3:-1] == [
            f"GRANT EXECUTE ON PROCEDURE `prod`.`{name}` TO 'app'@'%'" for name in ROUTINES[2:]
        ]
        # the wrappers read the installation's names from its record
        assert statements[-1] == "GRANT SELECT ON `prod`.`currentBatchInstallation` TO 'app'@'%'"

    @pytest.mark.parametrize(
        ("account", "expected"),
        [
            ("app@%", ("app", "%")),
            ("'app'@'%'", ("app", "%")),
            ("'app'@localhost", ("app", "localhost")),
            ("app@'10.0.0.0/255.0.0.0'", ("app", "10.0.0.0/255.0.0.0")),
            ("'app'@'::1'", ("app", "::1")),
            ("svc-batch.v1$@%.example.com", ("svc-batch.v1$", "%.example.com")),
        ],
    )
    def test_accepted_account_forms(self, account: str, expected: tuple[str, str]) -> None:
        """'user'@'host' and user@host (each part bare or single-quoted) are accepted."""
        assert parse_account(account) == expected

    @pytest.mark.parametrize(
        "account",
        [
            "",
            "app",
            "@%",
            "app@",
            "'app'@'%' WITH GRANT OPTION",
            "app'@'%",
            "'app@%'",
            "app@'%",
            "'app'@'%'; DROP USER root@localhost; --",
            "app@%;DROP DATABASE mysql",
            "app @%",
            '"app"@"%"',
            "`app`@`%`",
            "app@%@x",
            "app\\@%",
            "app@host name",
            "app@%\n",
            "a" * 81 + "@%",
            "app@" + "h" * 256,
            "\uff41pp@%",  # FULLWIDTH LATIN SMALL LETTER A
            None,
            42,
        ],
    )
    def test_refused_account_forms(self, account: object) -> None:
        """Anything else, including quote tricks and appended SQL, is refused before any SQL."""
        with pytest.raises(InvalidAccountError, match="'user'@'host' or user@host"):
            grant_statements(account, "prod")  # type: ignore[arg-type]

    def test_database_name_is_quoted(self) -> None:
        """A backtick in the database name is doubled, so it cannot end the identifier."""
        statements = grant_statements("app@%", "we`ird; DROP")
        assert statements[0] == "GRANT SELECT ON `we``ird; DROP`.`batchStatus` TO 'app'@'%'"

    @pytest.mark.parametrize("database", ["", "x" * 65, "a\x00b", None])
    def test_invalid_database_name(self, database: object) -> None:
        """An empty, overlong or NUL-holding database name is a configuration error."""
        with pytest.raises(ConfigurationError, match="invalid database name"):
            grant_statements("app@%", database)  # type: ignore[arg-type]


class TestLeastPrivilege:
    def test_an_account_granted_before_the_record_existed_keeps_working(
        self,
        migrated_url: URL,
        make_account: Callable[[], tuple[str, str]],
        add_batches: Callable[[int], list[int]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The grants of an earlier version (no SELECT on the record): default names, a warning."""
        (a,) = add_batches(1)
        user, account = make_account()
        root = connect(migrated_url, autocommit=True)
        try:
            with root.cursor() as cur:
                for statement in grant_statements(account, str(migrated_url.database))[:-1]:
                    cur.execute(statement)
        finally:
            root.close()
        app = create_engine(_as(migrated_url, user), poolclass=pool.NullPool)
        try:
            set_current_batch(app, a)
            with caplog.at_level(logging.WARNING, logger="batchflag_db"):
                assert get_current_batch(app) == a
        finally:
            app.dispose()
        assert "may not read currentBatchInstallation" in caplog.text
        assert "batchflag grant" in caplog.text

    def test_app_account_flips_through_call(
        self,
        migrated_url: URL,
        make_account: Callable[[], tuple[str, str]],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """With the grants an account sets, unsets and reads the current batch."""
        a, b = add_batches(2)
        user, account = make_account()
        root = create_engine(migrated_url, poolclass=pool.NullPool)
        grant(root, account, cast(str, migrated_url.database))
        root.dispose()
        app = create_engine(_as(migrated_url, user), poolclass=pool.NullPool)
        try:
            assert set_current_batch(app, a).changed is True
            assert set_current_batch(app, b).previous_batch_id == a
            assert get_current_batch(app) == b
            assert current_rows(connect_db()) == [b]
            assert unset_current_batch(app, b).changed is True
            assert get_current_batch(app) is None
        finally:
            app.dispose()
        # a PEP 249 connection of the same account, inside its own transaction
        conn = connect(_as(migrated_url, user), autocommit=False)
        set_current_batch(conn, a)
        conn.commit()
        if RESOLVE_PROCEDURE in ROUTINES:  # the dashboard's read procedure, too
            with conn.cursor() as cur:
                cur.execute(f"CALL {RESOLVE_PROCEDURE}(NULL)")
                assert cur.fetchone()[0] == a
        conn.close()
        assert current_rows(connect_db()) == [a]

    def test_app_account_cannot_write_the_flag(
        self,
        migrated_url: URL,
        make_account: Callable[[], tuple[str, str]],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """A direct UPDATE, INSERT or DELETE of batchStatus, or a write to the lock table, is denied."""
        a, b = add_batches(2)
        root = connect_db(autocommit=True)
        set_current_batch(root, a)
        before = _table_state(root)
        user, account = make_account()
        grant(root, account, cast(str, migrated_url.database))
        app = connect(_as(migrated_url, user), autocommit=True)
        denied = [
            "UPDATE batchStatus SET currentBatch = 0",
            f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {b}",
            "INSERT INTO batchStatus (batchDate, batchNumber, currentBatch) VALUES ('2026-01-01', 9, 1)",
            "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-01-01', 9)",
            f"DELETE FROM batchStatus WHERE id = {a}",
            "UPDATE currentBatchLock SET flipCount = 0",
            "DELETE FROM currentBatchLock",
            "SELECT * FROM currentBatchLock",
            f"SELECT * FROM {VERSION_TABLE}",
        ]
        with app.cursor() as cur:
            for sql in denied:
                with pytest.raises(pymysql.err.OperationalError) as info:
                    cur.execute(sql)
                assert _errno(info.value) == ER_TABLEACCESS_DENIED, sql
        assert _table_state(root) == before
        app.close()

    def test_app_account_cannot_change_the_schema(
        self,
        migrated_url: URL,
        make_account: Callable[[], tuple[str, str]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """The account cannot drop or replace the procedures, nor drop the index."""
        user, account = make_account()
        root = connect_db(autocommit=True)
        grant(root, account, cast(str, migrated_url.database))
        app = connect(_as(migrated_url, user), autocommit=True)
        attempts = [
            "DROP PROCEDURE set_current_batch",
            "CREATE PROCEDURE set_current_batch_2() SELECT 1",
            "ALTER TABLE batchStatus DROP INDEX uq_batchStatus_currentBatchKey",
            "DROP TABLE batchStatus",
        ]
        with app.cursor() as cur:
            for sql in attempts:
                with pytest.raises(pymysql.err.OperationalError) as info:
                    cur.execute(sql)
                assert _errno(info.value) in (1044, ER_TABLEACCESS_DENIED, ER_PROCACCESS_DENIED), (
                    sql
                )
        app.close()
        with root.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()"
            )
            assert cur.fetchone()[0] >= 2
        assert check_table(root)[-1][-1] == "OK"

    def test_server_holds_exactly_these_grants(
        self,
        migrated_url: URL,
        make_account: Callable[[], tuple[str, str]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """SHOW GRANTS lists USAGE plus exactly these grants; granting twice changes nothing."""
        _, account = make_account()
        root = connect_db(autocommit=True)
        grant(root, account, cast(str, migrated_url.database))
        grant(root, account, cast(str, migrated_url.database))
        with root.cursor() as cur:
            cur.execute(f"SHOW GRANTS FOR {account}")
            shown = sorted(r[0] for r in cur.fetchall())
        assert len(shown) == 3 + len(ROUTINES), shown  # USAGE, 2 SELECTs, the EXECUTEs
        assert any("GRANT SELECT ON" in g and "`currentBatchInstallation`" in g for g in shown)
        assert shown[0].startswith(f"GRANT EXECUTE ON PROCEDURE `{migrated_url.database}`.")
        assert any("GRANT SELECT ON" in g and "`batchStatus`" in g for g in shown), shown
        assert any(g.startswith("GRANT USAGE ON *.*") for g in shown), shown
        assert not any(w in " ".join(shown) for w in ("INSERT", "UPDATE", "DELETE")), shown


class TestColumnPrivileges:
    def test_flag_is_left_out_of_column_grants(
        self,
        migrated_url: URL,
        make_account: Callable[[], tuple[str, str]],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """With column grants the account inserts and updates batches, but never names the flag."""
        (a,) = add_batches(1)
        user, account = make_account()
        root = connect_db(autocommit=True)
        grant(root, account, cast(str, migrated_url.database))
        engine = create_engine(migrated_url, poolclass=pool.NullPool)
        statements = column_write_statements(engine, account, cast(str, migrated_url.database))
        engine.dispose()
        assert all("currentBatch`" not in s for s in statements), statements
        with root.cursor() as cur:
            for s in statements:
                cur.execute(s)
        set_current_batch(root, a)
        app = connect(_as(migrated_url, user), autocommit=True)
        with app.cursor() as cur:
            cur.execute("INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-01-02', 7)")
            new_id = cur.lastrowid
            cur.execute(f"UPDATE batchStatus SET batchStatus = 'Done' WHERE id = {a}")
            for sql in (
                "INSERT INTO batchStatus (batchDate, batchNumber, currentBatch) "
                "VALUES ('2026-01-03', 8, 1)",
                f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {new_id}",
                f"UPDATE batchStatus SET currentBatch = 0 WHERE id = {a}",
            ):
                with pytest.raises(pymysql.err.OperationalError) as info:
                    cur.execute(sql)
                assert _errno(info.value) == ER_COLUMNACCESS_DENIED, sql
        assert current_rows(root) == [a]
        assert set_current_batch(app, new_id).previous_batch_id == a
        assert current_rows(root) == [new_id]
        app.close()


class TestGrantErrors:
    def test_missing_account(
        self, migrated_url: URL, connect_db: Callable[..., pymysql.Connection]
    ) -> None:
        """Granting to an account that does not exist says to create it first."""
        ghost = f"'bf_ghost_{uuid.uuid4().hex[:8]}'@'%'"
        with pytest.raises(BatchFlagError, match="does not exist: create it first") as info:
            grant(connect_db(autocommit=True), ghost, cast(str, migrated_url.database))
        assert info.value.errno in (1133, 1410)

    def test_unmigrated_database(
        self, db_url: URL, make_account: Callable[[], tuple[str, str]]
    ) -> None:
        """Granting in a database without the migrations says to migrate."""
        _, account = make_account()
        engine = create_engine(db_url, poolclass=pool.NullPool)
        try:
            with pytest.raises(SchemaNotReadyError, match="batchflag upgrade"):
                grant(engine, account, cast(str, db_url.database))
            with pytest.raises(SchemaNotReadyError, match="batchflag upgrade"):
                column_write_statements(engine, account, cast(str, db_url.database))
        finally:
            engine.dispose()

    def test_grantor_without_grant_option(
        self,
        migrated_url: URL,
        make_account: Callable[[], tuple[str, str]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """An account without GRANT OPTION gets a message saying which account to use."""
        user, account = make_account()
        _, other = make_account()
        grant(connect_db(autocommit=True), account, cast(str, migrated_url.database))
        conn = connect(_as(migrated_url, user), autocommit=True)
        with pytest.raises(BatchFlagError, match="may not grant"):
            grant(conn, other, cast(str, migrated_url.database))
        conn.close()


@pytest.fixture
def migrator(
    db_url: URL, make_account: Callable[[], tuple[str, str]], server_url: URL
) -> tuple[URL, str]:
    """The database migrated by a dedicated account (ALL on the database only).

    Returns (the migrator's URL, its account string).
    """
    user, account = make_account()
    admin = connect(server_url, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"GRANT ALL PRIVILEGES ON `{db_url.database}`.* TO {account}")
    admin.close()
    url = _as(db_url, user)
    migrate.upgrade(url)
    return url, account


def _definers(conn: pymysql.Connection) -> set[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT DEFINER, SECURITY_TYPE FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = DATABASE()"
        )
        return {(str(r[0]), str(r[1])) for r in cur.fetchall()}


def _restore_definer(root: pymysql.Connection, definer: str, database: str) -> None:
    """Create the definer account, locked, with only what the procedures use."""
    with root.cursor() as cur:
        cur.execute(f"CREATE USER {definer} ACCOUNT LOCK")
        cur.execute(f"GRANT SELECT, INSERT, UPDATE ON `{database}`.* TO {definer}")
        cur.execute(f"GRANT EXECUTE ON `{database}`.* TO {definer}")


class TestSqlSecurity:
    def test_procedures_run_as_the_migrating_account(
        self, migrator: tuple[URL, str], db_url: URL
    ) -> None:
        """The procedures are SQL SECURITY DEFINER, owned by the account that ran the migration."""
        url, _ = migrator
        user = url.username
        root = connect(db_url, autocommit=True)
        assert _definers(root) == {(f"{user}@%", "DEFINER")}
        root.close()

    def test_invoker_security_would_need_update_on_the_flag(
        self,
        migrated_url: URL,
        make_account: Callable[[], tuple[str, str]],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """The same body as SQL SECURITY INVOKER is denied to the least-privileged account.

        This is why the procedures are DEFINER: with INVOKER, flipping would need
        UPDATE on batchStatus, and then the account could write the flag directly.
        """
        (a,) = add_batches(1)
        root = connect_db(autocommit=True)
        body = head_source(SET_PROCEDURE)
        invoker = body.replace(
            f"CREATE PROCEDURE {SET_PROCEDURE}(", "CREATE PROCEDURE set_current_batch_invoker("
        ).replace("SQL SECURITY DEFINER", "SQL SECURITY INVOKER")
        assert "SQL SECURITY INVOKER" in invoker
        assert "set_current_batch_invoker(" in invoker
        with root.cursor() as cur:
            cur.execute(invoker)
        user, account = make_account()
        grant(root, account, cast(str, migrated_url.database))
        with root.cursor() as cur:
            cur.execute(
                f"GRANT EXECUTE ON PROCEDURE `{migrated_url.database}`.`set_current_batch_invoker` "
                f"TO {account}"
            )
        app = connect(_as(migrated_url, user), autocommit=True)
        with app.cursor() as cur, pytest.raises(pymysql.err.OperationalError) as info:
            cur.execute(f"CALL set_current_batch_invoker({a})")
        assert _errno(info.value) == ER_TABLEACCESS_DENIED
        # ... while the DEFINER procedure works for the same account
        assert set_current_batch(app, a).changed is True
        app.close()
        assert current_rows(root) == [a]

    def test_dropped_definer_fails_with_1449_until_recreated(
        self, migrator: tuple[URL, str], db_url: URL, make_account: Callable[[], tuple[str, str]]
    ) -> None:
        """Dropping the definer account breaks every CALL (1449); recreating the account fixes it."""
        _, definer = migrator
        root = connect(db_url, autocommit=True)
        a, b = insert_batches(root, 2)
        set_current_batch(root, a)
        user, app_account = make_account()
        grant(root, app_account, cast(str, db_url.database))
        with root.cursor() as cur:
            cur.execute(f"DROP USER {definer}")
        app = connect(_as(db_url, user), autocommit=True)
        with pytest.raises(SchemaNotReadyError, match="definer account does not exist") as info:
            set_current_batch(app, b)
        assert info.value.errno == ER_NO_SUCH_USER
        assert current_rows(root) == [a]
        # the fix: the same account again, locked, with only what the procedures use
        _restore_definer(root, definer, cast(str, db_url.database))
        assert set_current_batch(app, b).previous_batch_id == a
        assert current_rows(root) == [b]
        app.close()
        root.close()

    def test_migrator_cannot_name_another_definer(
        self, migrator: tuple[URL, str], db_url: URL
    ) -> None:
        """Naming a DEFINER other than oneself needs SUPER / SET USER, which a migrator lacks.

        This is why the procedures take the migrating account as definer
        (CURRENT_USER) instead of a fixed service account.
        """
        url, _ = migrator
        conn = connect(url, autocommit=True)
        with conn.cursor() as cur, pytest.raises(pymysql.err.OperationalError) as info:
            cur.execute("CREATE DEFINER = 'root'@'localhost' PROCEDURE bf_probe() SELECT 1")
        assert _errno(info.value) == 1227  # ER_SPECIFIC_ACCESS_DENIED_ERROR
        conn.close()

    def test_definer_may_be_a_locked_account_with_dml_only(
        self,
        migrator: tuple[URL, str],
        db_url: URL,
        make_account: Callable[[], tuple[str, str]],
        server_url: URL,
    ) -> None:
        """After migrating, the definer can be locked and cut to DML on the tables plus EXECUTE."""
        url, definer = migrator
        root = connect(db_url, autocommit=True)
        a, b = insert_batches(root, 2)
        user, app_account = make_account()
        grant(root, app_account, cast(str, db_url.database))
        db = db_url.database
        with root.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' "
                "AND TABLE_NAME <> %s",
                (VERSION_TABLE,),
            )
            tables = [str(r[0]) for r in cur.fetchall()]
            cur.execute(f"REVOKE ALL PRIVILEGES ON `{db}`.* FROM {definer}")
            for table in tables:
                cur.execute(f"GRANT SELECT, INSERT, UPDATE ON `{db}`.`{table}` TO {definer}")
            # MariaDB checks the definer's own EXECUTE when the call switches to it.
            cur.execute(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()"
            )
            for (routine,) in cur.fetchall():
                cur.execute(f"GRANT EXECUTE ON PROCEDURE `{db}`.`{routine}` TO {definer}")
            cur.execute(f"ALTER USER {definer} ACCOUNT LOCK")
        app = connect(_as(db_url, user), autocommit=True)
        assert set_current_batch(app, a).changed is True
        assert set_current_batch(app, b).previous_batch_id == a
        assert unset_current_batch(app, b).changed is True
        # ... and without UPDATE on batchStatus the procedures fail, changing nothing
        set_current_batch(app, a)
        with root.cursor() as cur:
            cur.execute(f"REVOKE UPDATE ON `{db}`.`batchStatus` FROM {definer}")
        with pytest.raises(BatchFlagError) as info:
            set_current_batch(app, b)
        assert info.value.errno == ER_TABLEACCESS_DENIED
        assert current_rows(root) == [a]
        app.close()
        # the locked definer cannot log in
        with pytest.raises(pymysql.err.OperationalError):
            connect(url).close()
        root.close()


@pytest.mark.slow
class TestCliGrant:
    def test_sql_prints_the_statements(self, migrated_url: URL) -> None:
        """`batchflag grant ACCOUNT --sql` prints exactly grant_statements, each ending in ';'."""
        url = migrated_url.render_as_string(hide_password=False)
        done = run_cli("--url", url, "grant", "app@%", "--sql")
        assert done.returncode == 0, done.stderr
        expected = [f"{s};" for s in grant_statements("app@%", str(migrated_url.database))]
        assert done.stdout.strip().splitlines() == expected

    def test_grant_then_flip(
        self,
        migrated_url: URL,
        make_account: Callable[[], tuple[str, str]],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """`batchflag grant ACCOUNT` lets the account flip, and only through the procedures."""
        (a,) = add_batches(1)
        user, account = make_account()
        url = migrated_url.render_as_string(hide_password=False)
        done = run_cli("--url", url, "grant", account)
        assert done.returncode == 0, done.stderr
        app = connect(_as(migrated_url, user), autocommit=True)
        assert set_current_batch(app, a).changed is True
        with app.cursor() as cur, pytest.raises(pymysql.err.OperationalError) as info:
            cur.execute("UPDATE batchStatus SET currentBatch = 0")
        assert _errno(info.value) == ER_TABLEACCESS_DENIED
        app.close()

    @pytest.mark.parametrize(
        "account",
        ["app", "'app'@'%' WITH GRANT OPTION", "app@%; DROP DATABASE mysql", "`app`@`%`"],
    )
    def test_bad_account(self, migrated_url: URL, account: str) -> None:
        """A malformed account: non-zero exit, one line saying the expected form, no traceback."""
        url = migrated_url.render_as_string(hide_password=False)
        for options in ((), ("--sql",)):
            done = run_cli("--url", url, "grant", *options, "--", account)
            assert done.returncode != 0
            out = (done.stderr + done.stdout).strip()
            assert "Traceback" not in out, out
            assert len(out.splitlines()) == 1, out
            assert "'user'@'host' or user@host" in out

    def test_missing_account(self, migrated_url: URL) -> None:
        """Granting to an account that does not exist: non-zero exit, says to create it."""
        url = migrated_url.render_as_string(hide_password=False)
        done = run_cli("--url", url, "grant", f"bf_ghost_{uuid.uuid4().hex[:6]}@%")
        assert done.returncode != 0
        out = (done.stderr + done.stdout).strip()
        assert "Traceback" not in out, out
        assert "does not exist" in out
