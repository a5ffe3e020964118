"""The plugin's ``migrated_url`` is a copy of a template: indistinguishable from a migration."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from batchflag_db._schema import VERSION_TABLE
from batchflag_db.doctor import diagnose
from batchflag_db.testing.template import TemplateError, copy_database
from tests.conftest import connect


def _snapshot(url: URL) -> dict[str, Any]:
    """Everything a test or doctor can read of a database's shape and content."""
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME"
            )
            tables = [str(r[0]) for r in cur.fetchall()]
            shape: dict[str, Any] = {"tables": tables}
            for table in tables:
                cur.execute(f"SHOW CREATE TABLE `{table}`")
                shape[f"create {table}"] = cur.fetchone()[1]
                cur.execute(f"SELECT * FROM `{table}`")
                shape[f"rows {table}"] = sorted(map(repr, cur.fetchall()))
            cur.execute(
                "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, COLLATION, "
                "NON_UNIQUE FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
                "ORDER BY 1, 2, 3"
            )
            shape["indexes"] = cur.fetchall()
            cur.execute(
                "SELECT ROUTINE_TYPE, ROUTINE_NAME, DEFINER, SECURITY_TYPE, SQL_MODE "
                "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY 1, 2"
            )
            routines = cur.fetchall()
            shape["routines"] = routines
            for kind, name, *_ in routines:
                cur.execute(f"SHOW CREATE {kind} `{name}`")
                shape[f"show create {name}"] = cur.fetchone()[1:5]  # mode, text, charsets
            cur.execute(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()"
            )
            shape["charset"] = cur.fetchone()
        return shape
    finally:
        conn.close()


class TestCopyOfTheTemplate:
    """``migrated_url`` copies a database migrated once; nothing may tell it from a migration."""

    def test_the_copy_equals_a_fresh_migration(
        self, migrated_url: URL, migrated_template: str, server_url: URL
    ) -> None:
        """Same SHOW CREATE TABLE per table, rows (the version row too), indexes, routines
        as the template, which ``migrate.upgrade`` made."""
        fresh_url = server_url.set(database=migrated_template)
        copied, fresh = _snapshot(migrated_url), _snapshot(fresh_url)
        assert copied["tables"] == fresh["tables"]
        assert VERSION_TABLE in copied["tables"]
        assert copied[f"rows {VERSION_TABLE}"] == fresh[f"rows {VERSION_TABLE}"] != []
        assert copied["routines"] == fresh["routines"] != ()
        assert copied == fresh

    def test_a_copy_of_a_fresh_migration_equals_it(
        self, freshly_migrated_url: URL, server_url: URL
    ) -> None:
        """copy_database of a database this test migrated itself gives the same snapshot."""
        target = f"{freshly_migrated_url.database}_copy"
        conn = connect(server_url, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{target}`")
            copy_database(conn, str(freshly_migrated_url.database), target)
            copied = _snapshot(server_url.set(database=target))
            assert copied == _snapshot(freshly_migrated_url)
            assert copied[f"rows {VERSION_TABLE}"] != []
        finally:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{target}`")
            conn.close()

    def test_doctor_finds_the_copy_healthy(self, migrated_url: URL) -> None:
        """Doctor's checks (routine bodies, definers, index order, version) all pass on a copy."""
        engine = create_engine(migrated_url, poolclass=pool.NullPool)
        try:
            report = diagnose(engine)
        finally:
            engine.dispose()
        assert report.healthy, report.lines()

    def test_each_test_gets_its_own_copy(self, migrated_url: URL, migrated_template: str) -> None:
        """The copy is the test's own database, not the template; writing to it leaves the
        template as it was."""
        assert migrated_url.database != migrated_template
        assert str(migrated_url.database).startswith("bft_")
        conn = connect(migrated_url, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-07', 1)"
                )
                cur.execute(f"SELECT COUNT(*) FROM `{migrated_template}`.batchStatus")
                assert cur.fetchone()[0] == 0
        finally:
            conn.close()

    def test_a_view_is_refused_by_name(self, db_url: URL) -> None:
        """A database with a view is not copied half: the error names the view."""
        conn = connect(db_url, autocommit=True)
        target = f"{db_url.database}_copy"
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE t (a INT)")
                cur.execute("CREATE VIEW v AS SELECT a FROM t")
                cur.execute(f"CREATE DATABASE `{target}`")
            with pytest.raises(TemplateError, match="view v"):
                copy_database(conn, str(db_url.database), target)
        finally:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{target}`")
            conn.close()
