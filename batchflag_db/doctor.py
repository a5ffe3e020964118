"""``batchflag doctor``: is this database what this version of batchflag-db expects?

Checks, in order: the Alembic revision is this version's head; ``batchStatus``
exists and is InnoDB; at most one row is current; the key column is the expected
generated column; its UNIQUE index is there; the lock table has its row; every
routine exists and its body matches this version's SQL file
(:data:`~batchflag_db._schema.CURRENT_ROUTINE_FILES`); every routine's definer
account exists.

Each problem comes with the command that fixes it. The fixes that rebuild schema
objects run the migrations that create them again: down to the revision before
the one that created the object, then up (no rows are deleted on the way).
A check this account is not allowed to run (reading ``mysql.user``, or routine
bodies of another definer) is a note, not a problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from alembic.script import Script, ScriptDirectory
from sqlalchemy import bindparam, text

from batchflag_db import _routines, installation, migrate
from batchflag_db._connection import Connectable, Link, connect
from batchflag_db._ddl import strip_sql_comments
from batchflag_db._resources import read_sql
from batchflag_db._schema import CURRENT_ROUTINE_FILES, KEY_STORAGE, VERSION_TABLE
from batchflag_db.errors import (
    ER_DBACCESS_DENIED_ERROR,
    ER_LOCK_ROW_MISSING,
    ER_NO_SUCH_TABLE,
    ER_NO_SUCH_USER,
    ER_TABLEACCESS_DENIED_ERROR,
    BatchFlagError,
    driver_error_details,
)
from batchflag_db.locks import STUCK_AFTER, find_lock_holders

__all__ = ["Finding", "Report", "diagnose", "normalize_body", "routine_body"]

Status = Literal["ok", "problem", "note"]

_DENIED = (ER_TABLEACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR)


@dataclass(frozen=True)
class Finding:
    """The outcome of one check.

    Attributes:
        status: ``ok``, ``problem`` (exit non-zero), or ``note`` (could not check).
        check: Short name of the check (``revision``, ``index``, ...).
        message: What was found.
        fix: For a problem, the command that fixes it.
    """

    status: Status
    check: str
    message: str
    fix: str | None = None

    def line(self) -> str:
        """Return the finding as one line of ``batchflag doctor`` output."""
        label = {"ok": "ok", "problem": "PROBLEM", "note": "note"}[self.status]
        fix = f" -- fix: {self.fix}" if self.fix else ""
        return f"{label:<8}{self.check}: {self.message}{fix}"


@dataclass(frozen=True)
class Report:
    """Every finding of one diagnosis.

    Attributes:
        findings: In the order the checks ran.
        revision: The database's revision (None: never migrated).
        head: This version's head revision.
    """

    findings: tuple[Finding, ...]
    revision: str | None
    head: str

    @property
    def problems(self) -> list[Finding]:
        """The findings that make the database unhealthy."""
        return [f for f in self.findings if f.status == "problem"]

    @property
    def healthy(self) -> bool:
        """True when no check found a problem (notes do not count)."""
        return not self.problems

    def lines(self) -> list[str]:
        """Return one line per finding."""
        return [f.line() for f in self.findings]

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "healthy": self.healthy,
            "revision": self.revision,
            "head": self.head,
            "findings": [
                {"status": f.status, "check": f.check, "message": f.message, "fix": f.fix}
                for f in self.findings
            ],
        }


def normalize_body(sql: str) -> str:
    r"""Return a routine body without comments and with all whitespace runs as one space.

    MariaDB's ``ROUTINE_DEFINITION`` writes a line break inside a string literal
    as the escape ``\n``; the file has the break itself. Both count as whitespace.
    """
    return " ".join(_ESCAPED_WHITESPACE.sub(" ", strip_sql_comments(sql)).split())


_ESCAPED_WHITESPACE = re.compile(r"\\[nrt]")
_BODY_START = re.compile(r"^\s*BEGIN\b", re.IGNORECASE | re.MULTILINE)
_SECURITY = re.compile(r"\bSQL\s+SECURITY\s+(DEFINER|INVOKER)\b", re.IGNORECASE)


def routine_body(create_statement: str) -> str:
    """Return the body (``BEGIN`` ... ``END``) of a ``CREATE PROCEDURE`` file, normalized.

    Raises:
        ValueError: The statement has no line starting with ``BEGIN``.
    """
    stripped = strip_sql_comments(create_statement)
    match = _BODY_START.search(stripped)
    if match is None:
        raise ValueError("no BEGIN ... END body found")
    return normalize_body(stripped[match.start() :])


def server_keeps_desc(version: str) -> bool:
    """Whether a server of ``SELECT VERSION()`` ``version`` builds an index part DESC.

    MariaDB from 10.8 and MySQL from 8.0 do; earlier ones parse DESC and ignore it.
    """
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        return True
    major, minor = int(match.group(1)), int(match.group(2))
    if "mariadb" in version.lower():
        return (major, minor) >= (10, 8)
    return major >= 8


def _normalize_expression(expression: str) -> str:
    return re.sub(r"[\s`()]", "", expression).lower()


@dataclass
class _Revisions:
    """The revision scripts, oldest first, and what each one's upgrade creates.

    Each revision declares it in its module attribute ``creates`` (object names and
    the routine files it installs), read here through Alembic's ScriptDirectory.
    """

    scripts: list[Script] = field(default_factory=list)
    creates: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> _Revisions:
        directory = ScriptDirectory.from_config(migrate.alembic_config())
        scripts = list(reversed(list(directory.walk_revisions())))
        creates = {s.revision: tuple(getattr(s.module, "creates", ())) for s in scripts}
        return cls(scripts, creates)

    def known(self, revision: str) -> bool:
        return revision in self.creates

    def creating(self, name: str, *, latest: bool) -> Script | None:
        """The first (or, ``latest``, the last) revision whose upgrade creates ``name``."""
        found = [s for s in self.scripts if name in self.creates[s.revision]]
        if not found:
            return None
        return found[-1] if latest else found[0]

    def position(self, revision: str) -> int:
        """0 for ``base``, then 1, 2, ... from the oldest revision on."""
        order = [s.revision for s in self.scripts]
        return order.index(revision) + 1 if revision in order else 0

    def applied(self, database: str | None, revision: str) -> bool:
        """True when ``revision`` is ``database`` or one of its ancestors."""
        if database is None or not self.known(database):
            return False
        order = [s.revision for s in self.scripts]
        return order.index(revision) <= order.index(database)


class _Doctor:
    def __init__(self, link: Link, command: str) -> None:
        self.link = link
        self.command = command
        self.findings: list[Finding] = []
        self.revisions = _Revisions.load()
        self.head = migrate.head_revision()
        try:
            self.inst = installation.read(link)
        except BatchFlagError as exc:
            if exc.errno not in _DENIED:
                raise
            self.inst = installation.DEFAULT  # read_revision says what this account lacks
        self.recorded = bool(
            self.rows(
                "SELECT COUNT(*) FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t",
                t=installation.RECORD_TABLE,
            )[0][0]
        )
        # Installed by the team's own Alembic chain (op.create_current_flag): no
        # batchflag-db version table, and fixes are that chain's commands.
        self.own_chain = False
        self.revision_hidden = False
        self.never_installed = False
        self.routine_files: dict[str, str] = dict(CURRENT_ROUTINE_FILES)
        if self.recorded:
            self.routine_files = _routines.files(self.inst)

    # -- helpers

    def add(self, status: Status, check: str, message: str, fix: str | None = None) -> None:
        self.findings.append(Finding(status, check, message, fix))

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return self.link.query(sql, **params).rows

    def rebuild_target(self, name: str, *, latest: bool = False) -> str:
        """The revision before the one that creates ``name`` (or ``base``)."""
        script = self.revisions.creating(name, latest=latest)
        down = script.down_revision if script is not None else None
        if isinstance(down, (tuple, list)):  # pragma: no cover - no merge revisions here
            down = down[0]
        return down if isinstance(down, str) else "base"

    def rebuild(self, name: str, *, latest: bool = False, upgrade_args: str = "") -> str:
        """The command that re-creates ``name`` (and what the same revision creates)."""
        return self.rebuild_from(self.rebuild_target(name, latest=latest), upgrade_args)

    def rebuild_from(self, target: str, upgrade_args: str = "") -> str:
        if self.own_chain:
            return (
                "run your revision that calls op.create_current_flag again: alembic downgrade "
                "<the revision before it> && alembic upgrade head"
            )
        if not self.inst.is_default:
            # Revision 0006 makes all of an installation on other names: from the revision
            # before it, with the names again.
            names = "".join(
                f" --{option.replace('_', '-')} {value}"
                for option, value in self.inst.names().items()
                if value is not None and value != getattr(installation.DEFAULT, option)
            )
            target = self.rebuild_target(installation.RECORD_TABLE)
            upgrade_args = f"{names}{upgrade_args}"
        return f"{self.command} downgrade {target} && {self.command} upgrade{upgrade_args}"

    @property
    def server_version(self) -> str:
        return str(self.rows("SELECT VERSION()")[0][0])

    @property
    def key_expression(self) -> str:
        """The key column's generation expression, for this installation's flag column."""
        return f"IF(`{self.inst.flag_column}` <> 0, 1, NULL)"

    def expected_source(self, name: str) -> str:
        """The text a routine should have been created from: its file, rendered when recorded."""
        relative = self.routine_files[name]
        return _routines.render(relative, self.inst) if self.recorded else read_sql(relative)

    # -- checks

    def run(self) -> Report:
        revision = self.check_revision()
        if self.check_table():
            self.check_current_rows(revision)
            if revision == self.head or self.own_chain:
                self.check_key_column()
                self.check_index()
                self.check_lock_row()
                definers = self.check_routines()
                self.check_definers(definers)
                self.check_stuck_transactions()
            else:
                self.add("note", "schema", "object checks skipped until the database is at head")
        return Report(tuple(self.findings), revision, self.head)

    def read_revision(self) -> str | None:
        """The database's revision; None when the version table does not exist.

        Raises:
            BatchFlagError: This account may not read the version table, so the
                checks cannot tell "missing" from "hidden from this account".
        """
        try:
            found = self.rows(f"SELECT `version_num` FROM `{VERSION_TABLE}`")
        except BatchFlagError as exc:
            if exc.errno == ER_NO_SUCH_TABLE:
                return None
            if exc.errno in _DENIED and self.recorded:
                # An account granted on the installation's names (batchflag grant) may see
                # the record but not the version table, which a chain installation lacks.
                self.revision_hidden = True
                return None
            if exc.errno in _DENIED:
                _, _, message = driver_error_details(exc.__cause__ or exc)
                raise BatchFlagError(
                    "doctor cannot check this database: this account may not read "
                    f"{VERSION_TABLE} ({message}); run doctor as the account that runs "
                    "the migrations",
                    errno=exc.errno,
                    sqlstate=exc.sqlstate,
                ) from exc.__cause__
            raise
        if len(found) > 1:
            shown = ", ".join(sorted(str(r[0]) for r in found))
            raise BatchFlagError(
                f"{VERSION_TABLE} holds several revisions ({shown}); batchflag-db's "
                f"migrations are linear, so it holds one: delete the rows that are wrong"
            )
        return str(found[0][0]) if found else None

    def check_revision(self) -> str | None:
        revision = self.read_revision()
        if self.revision_hidden:
            self.own_chain = True  # checked as installed: the objects say the rest
            self.add(
                "note",
                "revision",
                f"this account may not read {VERSION_TABLE} (an installation made by your own "
                f"Alembic chain has none): revision not checked; objects of "
                f"{self.inst.describe()} checked",
            )
        elif revision is None and self.recorded:
            self.own_chain = True
            self.add(
                "ok",
                "revision",
                f"installed on {self.inst.describe()} by your own Alembic chain "
                f"(op.create_current_flag; there is no {VERSION_TABLE})",
            )
        elif revision is None:
            self.never_installed = True
            self.add(
                "problem",
                "revision",
                "the database was never migrated (no batchflag-db revision)",
                self.install_fix(),
            )
        elif not self.revisions.known(revision):
            self.add(
                "problem",
                "revision",
                f"the database is at revision {revision}, which this version of batchflag-db "
                f"does not know (head {self.head}): a newer version migrated it",
                "pip install --upgrade batchflag-db",
            )
        elif revision != self.head:
            self.add(
                "problem",
                "revision",
                f"the database is at revision {revision}, this version's head is {self.head}",
                f"{self.command} upgrade",
            )
        else:
            self.add("ok", "revision", f"{revision} (head)")
        return revision

    def install_fix(self) -> str:
        """How to install where nothing is: on the team's table when the schema has one."""
        theirs = self.theirs()
        if not theirs or installation.DEFAULT.table in theirs:
            return f"{self.command} upgrade"
        table = next((t for t in theirs if "batch" in t.lower()), theirs[0])
        return (
            f"from your own Alembic chain, a revision calling op.create_current_flag("
            f'table="{table}", flag_column=..., status_column=...); or, without one, '
            f"{self.command} upgrade --table {table} --flag-column NAME --status-column NAME"
        )

    def theirs(self) -> list[str]:
        """The schema's tables, batchflag-db's own aside."""
        own = {installation.RECORD_TABLE, VERSION_TABLE, self.inst.lock_table, "currentBatchLock"}
        own |= {self.inst.history_table, installation.SCOPE_LOCK_TABLE}
        found = self.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            "ORDER BY TABLE_NAME"
        )
        return [str(r[0]) for r in found if str(r[0]) not in own]

    def check_table(self) -> bool:
        found = self.rows(
            "SELECT ENGINE FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t",
            t=self.inst.table,
        )
        if not found and self.never_installed:
            return False  # nothing installed: the revision's finding says how to install
        if not found:
            self.add(
                "problem",
                "table",
                f"table {self.inst.table} does not exist",
                self.rebuild_from("base"),
            )
            return False
        engine = str(found[0][0] or "")
        if engine.upper() != "INNODB":
            self.add(
                "problem",
                "table",
                f"{self.inst.table} uses the {engine} engine: flips are not atomic without InnoDB",
                f"ALTER TABLE `{self.inst.table}` ENGINE=InnoDB",
            )
        else:
            self.add("ok", "table", f"{self.inst.table} exists (InnoDB)")
        return True

    def check_current_rows(self, revision: str | None) -> None:
        columns = {
            str(r[0])
            for r in self.rows(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t",
                t=self.inst.table,
            )
        }
        if self.inst.flag_column not in columns:
            self.add(
                "problem",
                "current rows",
                f"{self.inst.table} has no column {self.inst.flag_column}",
                f"{self.command} downgrade base && {self.command} upgrade",
            )
            return
        if self.inst.scope_column is not None:
            self.check_current_rows_per_scope()
            return
        ids = [
            int(r[0])
            for r in self.rows(
                f"SELECT `{self.inst.id_column}` FROM `{self.inst.table}` "
                f"WHERE `{self.inst.flag_column}` <> 0 ORDER BY `{self.inst.id_column}` LIMIT 11"
            )
        ]
        if len(ids) <= 1:
            which = f"batch {ids[0]}" if ids else "none"
            self.add("ok", "current rows", f"at most one batch is current ({which})")
            return
        shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
        newest = max(ids)
        key = self.revisions.creating(self.inst.key_index, latest=False)
        if key is not None and self.revisions.applied(revision, key.revision):
            fix = self.rebuild(self.inst.key_index, upgrade_args=f" --keep-current {newest}")
        else:
            fix = f"{self.command} upgrade --keep-current {newest}"
        self.add(
            "problem",
            "current rows",
            f"{len(ids) if len(ids) <= 10 else 'more than 10'} batches are current "
            f"(ids {shown}), at most one may be; the fix keeps the batch named by "
            "--keep-current (here the newest: change it if another is right)",
            fix,
        )

    def check_current_rows_per_scope(self) -> None:
        scope = self.inst.scope_column
        crowded = self.rows(
            f"SELECT `{scope}`, COUNT(*) FROM `{self.inst.table}` "
            f"WHERE `{self.inst.flag_column}` <> 0 GROUP BY `{scope}` HAVING COUNT(*) > 1 "
            "LIMIT 10"
        )
        if not crowded:
            self.add("ok", "current rows", f"at most one batch is current per {scope}")
            return
        shown = ", ".join(f"{value!s}: {count}" for value, count in crowded)
        self.add(
            "problem",
            "current rows",
            f"several batches are current in one {scope} ({shown}), at most one may be",
            self.rebuild(self.inst.key_index),
        )

    def check_key_column(self) -> None:
        found = self.rows(
            "SELECT EXTRA, GENERATION_EXPRESSION FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND COLUMN_NAME = :c",
            t=self.inst.table,
            c=self.inst.key_column,
        )
        fix = self.rebuild(self.inst.key_index)
        if not found:
            self.add(
                "problem", "key column", f"{self.inst.table}.{self.inst.key_column} is missing", fix
            )
            return
        extra, expression = (str(v or "") for v in found[0])
        if "GENERATED" not in extra.upper() or not expression:
            self.add(
                "problem",
                "key column",
                f"{self.inst.table}.{self.inst.key_column} is not a generated column (expected "
                f"{self.key_expression} {KEY_STORAGE})",
                fix,
            )
        elif _normalize_expression(expression) != _normalize_expression(self.key_expression):
            self.add(
                "problem",
                "key column",
                f"{self.inst.table}.{self.inst.key_column} is generated as {expression}, expected {self.key_expression}",
                fix,
            )
        elif KEY_STORAGE not in extra.upper():
            self.add(
                "problem",
                "key column",
                f"{self.inst.table}.{self.inst.key_column} is {extra}, this version expects {KEY_STORAGE}",
                fix,
            )
        else:
            self.add(
                "ok", "key column", f"{self.inst.key_column} = {self.key_expression} {KEY_STORAGE}"
            )

    def check_index(self) -> None:
        found = self.rows(
            "SELECT NON_UNIQUE, COLUMN_NAME, COLLATION FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND INDEX_NAME = :i "
            "ORDER BY SEQ_IN_INDEX",
            t=self.inst.table,
            i=self.inst.key_index,
        )
        fix = self.rebuild(self.inst.key_index)
        expected = self.inst.key_columns
        if not found:
            self.add(
                "problem",
                "index",
                f"UNIQUE index {self.inst.key_index} is missing: nothing stops a second current batch",
                fix,
            )
        elif [(int(n), str(c)) for n, c, _ in found] != [(0, c) for c in expected]:
            columns = ", ".join(str(c) for _, c, _ in found)
            kind = "UNIQUE" if int(found[0][0]) == 0 else "not UNIQUE"
            self.add(
                "problem",
                "index",
                f"index {self.inst.key_index} is {kind} on ({columns}); expected UNIQUE on "
                f"({', '.join(expected)})",
                fix,
            )
        else:
            self.add(
                "ok", "index", f"UNIQUE index {self.inst.key_index} on ({', '.join(expected)})"
            )
            descending = any(
                str(c) == self.inst.key_column and str(o or "").upper() == "D" for _, c, o in found
            )
            self.check_index_order(descending)
        self.check_flag_index()

    def check_index_order(self, descending: bool) -> None:
        if descending:
            self.add("ok", "index", f"{self.inst.key_index} stores {self.inst.key_column} DESC")
            return
        waits = (
            f"{self.inst.key_index} stores {self.inst.key_column} ascending: while a flip's "
            "transaction is open, inserting a new batch waits for it"
        )
        if server_keeps_desc(self.server_version):
            self.add("problem", "index", waits, self.rebuild(self.inst.flag_index))
        else:
            self.add("note", "index", f"{waits} (this server ignores DESC in an index)")

    def check_flag_index(self) -> None:
        flag = self.inst.flag_column
        leading = self.rows(
            "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = :t AND SEQ_IN_INDEX = 1 AND COLUMN_NAME = :c "
            "ORDER BY INDEX_NAME",
            t=self.inst.table,
            c=flag,
        )
        if leading:
            self.add("ok", "index", f"queries by {flag} use index {leading[0][0]}")
        else:
            self.add(
                "problem",
                "index",
                f"no index starts with {flag}: `WHERE {flag} = 1` reads the whole table",
                self.rebuild(self.inst.flag_index),
            )

    def check_lock_row(self) -> None:
        fix = self.rebuild(self.inst.lock_table)
        exists = self.rows(
            "SELECT COUNT(*) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t",
            t=self.inst.lock_table,
        )
        if not exists[0][0] and self.hidden(self.inst.lock_table):
            self.add(
                "note",
                "lock row",
                f"could not check {self.inst.lock_table}: this account has no privilege on it",
            )
            return
        if not exists[0][0]:
            self.add(
                "problem",
                "lock row",
                f"table {self.inst.lock_table} is missing: every flip fails",
                fix,
            )
            return
        if self.inst.scoped:
            self.add("ok", "lock row", f"{self.inst.lock_table} exists (a row per scope)")
            return
        count = self.rows(f"SELECT COUNT(*) FROM `{self.inst.lock_table}` WHERE `id` = 1")[0][0]
        if not count:
            self.add(
                "problem",
                "lock row",
                f"the row id=1 of {self.inst.lock_table} is missing: every flip fails "
                f"(error {ER_LOCK_ROW_MISSING})",
                fix,
            )
        else:
            self.add("ok", "lock row", f"{self.inst.lock_table} has its row")

    def hidden(self, table: str) -> bool:
        """True when this account may not see ``table``, so "missing" cannot be told apart."""
        try:
            self.link.run(f"SELECT 1 FROM `{table}` LIMIT 0")
        except BatchFlagError as exc:
            return exc.errno in _DENIED
        return False

    def check_routines(self) -> dict[str, list[str]]:
        """Check each routine; return {definer: [routine names]}."""
        names = list(self.routine_files)
        query = text(
            "SELECT ROUTINE_NAME, DEFINER, SECURITY_TYPE "
            "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() "
            "AND ROUTINE_NAME IN :names"
        ).bindparams(bindparam("names", expanding=True))
        found = {
            str(r[0]): (r[0], self.show_create(str(r[0])), r[1], r[2])
            for r in self.link.query(query, names=names).rows
        }
        definers: dict[str, list[str]] = {}
        for name in names:
            relative = self.routine_files[name]
            fix = self.rebuild(relative, latest=True)
            row = found.get(name)
            if row is None:
                self.add("problem", "procedure", f"{name} is missing", fix)
                continue
            _, definition, definer, security = row
            definers.setdefault(str(definer), []).append(name)
            source = self.expected_source(name)
            expected_security = _SECURITY.search(source)
            wanted = expected_security.group(1).upper() if expected_security else "DEFINER"
            if definition is None:
                self.add(
                    "note",
                    "procedure",
                    f"could not compare {name} with {relative}: this account may not read "
                    "its body (it is not the definer and lacks SHOW CREATE ROUTINE / "
                    "SELECT on mysql.proc)",
                )
            elif routine_body(str(definition)) != routine_body(source):
                self.add(
                    "problem",
                    "procedure",
                    f"{name} differs from this version's SQL ({relative})",
                    fix,
                )
            elif str(security).upper() != wanted:
                self.add(
                    "problem",
                    "procedure",
                    f"{name} runs with SQL SECURITY {security}, {relative} says {wanted}",
                    fix,
                )
            else:
                self.add("ok", "procedure", f"{name} matches {relative}")
        return definers

    def check_stuck_transactions(self) -> None:
        """A transaction holding row locks for STUCK_AFTER s or more blocks every flip."""
        report = find_lock_holders(self.link, self.inst, older_than=STUCK_AFTER)
        if report.unreadable is not None:
            self.add("note", "open transactions", report.unreadable)
        elif report.holders:
            for holder in report.holders:
                self.add(
                    "problem",
                    "open transactions",
                    f"a transaction has held row locks for {holder.open_seconds} s: flips "
                    "wait for it and give up",
                    holder.describe(),
                )
        else:
            self.add(
                "ok",
                "open transactions",
                f"no transaction has held row locks for {STUCK_AFTER} s or more",
            )

    def show_create(self, name: str) -> str | None:
        """The routine's text as it was created (None when this account may not read it).

        ``SHOW CREATE PROCEDURE`` keeps the text as written on every server, where
        ``information_schema.ROUTINES.ROUTINE_DEFINITION`` does not: MySQL gives a
        string literal's doubled quotes back undoubled.
        """
        try:
            rows = self.link.run(f"SHOW CREATE PROCEDURE `{name}`").rows
        except BatchFlagError:
            return None
        return None if not rows or rows[0][2] is None else str(rows[0][2])

    def check_definers(self, definers: dict[str, list[str]]) -> None:
        for definer, routines in sorted(definers.items()):
            user, _, host = definer.rpartition("@")
            if not user:  # a MariaDB role: no host part
                user, host = definer, ""
            shown = definer
            try:
                exists = self.rows(
                    "SELECT COUNT(*) FROM mysql.user WHERE User = :u AND Host = :h", u=user, h=host
                )[0][0]
            except BatchFlagError as exc:
                _, _, message = driver_error_details(exc.__cause__ or exc)
                self.add(
                    "note",
                    "definer",
                    f"could not check that the definer {shown} exists ({message})",
                )
                continue
            if exists:
                self.add("ok", "definer", f"{shown} (definer of {', '.join(routines)}) exists")
            else:
                targets = {
                    self.rebuild_target(self.routine_files[r], latest=True) for r in routines
                }
                fix = self.rebuild_from(min(targets, key=self.revisions.position))
                self.add(
                    "problem",
                    "definer",
                    f"the definer {shown} of {', '.join(routines)} does not exist: "
                    f"every CALL fails (error {ER_NO_SUCH_USER}); the fix re-creates them "
                    "with your account",
                    fix,
                )


def diagnose(conn: Connectable, *, command: str = "batchflag") -> Report:
    """Run every check on the database of ``conn`` and return the findings.

    Args:
        conn: An Engine (the checks run on one connection checked out of it), a
            Connection or a PEP 249 connection to the database to check. Doctor
            only reads; it never commits or rolls back the caller's connection.
        command: How fixes should spell the ``batchflag`` command (e.g.
            ``batchflag --env staging``).

    Raises:
        DatabaseConnectionError: The server could not be reached.
        BatchFlagError: This account may not read the version table, the table
            holds several revisions, or the server refused a query no check can do
            without (``errno`` and ``sqlstate`` kept).
    """
    with connect(conn, isolation_level=None) as link:
        return _Doctor(link, command).run()
