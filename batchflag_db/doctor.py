"""``batchflag doctor``: is this database what this version of batchflag-db expects?

:func:`read_catalog` reads everything once (the revision, the installation's record,
the table's columns and indexes, the current rows, the lock table, the routines and
their definers, the open transactions) into a :class:`Catalog`. Each check is then a
function of that catalog returning its findings, in order: :func:`check_revision`,
:func:`check_table`, :func:`check_current_rows`, and once the database is at head (or
the team's own chain installed it) the :data:`OBJECT_CHECKS`: the key column
(:attr:`~batchflag_db.installation.Installation.key_expression`), its UNIQUE index
(DESC), the flag index, the lock row, each routine's body against this version's SQL
file, each definer, and transactions holding row locks too long.

Each problem comes with the command that fixes it, for whichever chain made the
installation (``batchflag`` down and up again, or the team's ``alembic``; on the team's
table with nothing installed, ``op.create_current_flag``). A check this account is not
allowed to run (reading ``mysql.user``, routine bodies of another definer, tables it
has no privilege on) is a note, not a problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from alembic.script import Script, ScriptDirectory
from sqlalchemy import bindparam, text

from batchflag_db import _routines, installation, migrate
from batchflag_db._connection import Connectable, Link, connect
from batchflag_db._ddl import strip_sql_comments
from batchflag_db._resources import read_sql
from batchflag_db._schema import (
    CURRENT_ROUTINE_FILES,
    HISTORY_TABLE,
    KEY_STORAGE,
    LOCK_TABLE,
    VERSION_TABLE,
)
from batchflag_db.errors import (
    ER_DBACCESS_DENIED_ERROR,
    ER_LOCK_ROW_MISSING,
    ER_NO_SUCH_TABLE,
    ER_NO_SUCH_USER,
    ER_TABLEACCESS_DENIED_ERROR,
    BatchFlagError,
    driver_error_details,
)
from batchflag_db.installation import Installation, quote
from batchflag_db.locks import LockReport, find_lock_holders, stuck_after

__all__ = [
    "OBJECT_CHECKS",
    "Catalog",
    "Finding",
    "Report",
    "diagnose",
    "normalize_body",
    "read_catalog",
    "routine_body",
]

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


@dataclass(frozen=True)
class Catalog:
    """Everything the checks look at, read from the database once, before any check runs.

    Attributes:
        inst: The recorded installation (the default names without a record).
        recorded: True when the record table exists.
        revision: The standalone chain's revision (None: no version table, or hidden).
        revision_hidden: This account may not read the version table, yet sees the record.
        engine: The table's engine (None: no such table).
        columns: The table's columns: name -> (EXTRA, GENERATION_EXPRESSION).
        indexes: The table's indexes: name -> [(NON_UNIQUE, COLUMN_NAME, COLLATION)] in order.
        current_ids: Without a scope: the ids of current rows (at most 11, ascending).
        crowded: With a scope: (scope value, count) of scopes with several current rows.
        lock_table: (exists, rows with id 1, hidden from this account).
        routines: name -> (SHOW CREATE text or None, definer, security type).
        definers: definer -> True/False (exists), or the reason it could not be read.
        server_version: ``SELECT VERSION()``.
        holders: Transactions holding row locks for :func:`~batchflag_db.locks.stuck_after` s or more.
        theirs: The schema's tables, batchflag-db's own aside.
    """

    inst: Installation
    recorded: bool
    revision: str | None
    revision_hidden: bool
    engine: str | None
    columns: dict[str, tuple[str, str]]
    indexes: dict[str, list[tuple[int, str, str]]]
    current_ids: list[int]
    crowded: list[tuple[Any, int]]
    lock_table: tuple[bool, int, bool]
    routines: dict[str, tuple[str | None, str, str]]
    definers: dict[str, bool | str]
    server_version: str
    holders: LockReport
    theirs: list[str]

    @property
    def own_chain(self) -> bool:
        """Installed by the team's own chain (op.create_current_flag): no version table."""
        return self.recorded and self.revision is None

    @property
    def never_installed(self) -> bool:
        """No batchflag-db revision and no record: nothing is installed."""
        return self.revision is None and not self.recorded and not self.revision_hidden

    @property
    def routine_files(self) -> dict[str, str]:
        """The routine files this installation's routines come from."""
        return _routines.files(self.inst) if self.recorded else dict(CURRENT_ROUTINE_FILES)

    def expected_source(self, name: str) -> str:
        """The text a routine should have been created from: its file, rendered when recorded."""
        relative = self.routine_files[name]
        return _routines.render(relative, self.inst) if self.recorded else read_sql(relative)


def _read_installation(link: Link) -> Installation:
    try:
        return installation.read(link)
    except BatchFlagError as exc:
        if exc.errno not in _DENIED:
            raise
        return installation.DEFAULT  # reading the revision says what this account lacks


def _read_revision(link: Link, recorded: bool) -> tuple[str | None, bool]:
    """The database's revision (None: no version table), and whether it is hidden.

    Raises:
        BatchFlagError: This account may not read the version table and sees no record,
            so the checks cannot tell "missing" from "hidden from this account".
    """
    try:
        found = link.run(f"SELECT `version_num` FROM `{VERSION_TABLE}`").rows
    except BatchFlagError as exc:
        if exc.errno == ER_NO_SUCH_TABLE:
            return None, False
        if exc.errno in _DENIED and recorded:
            # An account granted on the installation's names (batchflag grant) sees the
            # record but not the version table, which a chain installation lacks anyway.
            return None, True
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
    return (str(found[0][0]) if found else None), False


def _hidden(link: Link, table: str) -> bool:
    """True when this account may not see ``table``, so "missing" cannot be told apart."""
    try:
        link.run(f"SELECT 1 FROM `{table}` LIMIT 0")
    except BatchFlagError as exc:
        return exc.errno in _DENIED
    return False


def _show_create(link: Link, name: str) -> str | None:
    """The routine's text as it was created (None when this account may not read it).

    ``SHOW CREATE PROCEDURE`` keeps the text as written on every server, where
    ``information_schema.ROUTINES.ROUTINE_DEFINITION`` does not: MySQL gives a
    string literal's doubled quotes back undoubled.
    """
    try:
        rows = link.run(f"SHOW CREATE PROCEDURE `{name}`").rows
    except BatchFlagError:
        return None
    return None if not rows or rows[0][2] is None else str(rows[0][2])


def _read_definer(link: Link, definer: str) -> bool | str:
    user, _, host = definer.rpartition("@")
    if not user:  # a MariaDB role: no host part
        user, host = definer, ""
    try:
        rows = link.query(
            "SELECT COUNT(*) FROM mysql.user WHERE User = :u AND Host = :h", u=user, h=host
        ).rows
    except BatchFlagError as exc:
        return driver_error_details(exc.__cause__ or exc)[2]
    return bool(rows[0][0])


def _read_rows(
    link: Link, inst: Installation, columns: dict[str, tuple[str, str]]
) -> tuple[list[int], list[tuple[Any, int]]]:
    """(current ids, crowded scopes) of the table; nothing without the flag column."""
    t, i, f = (quote(n) for n in (inst.table, inst.id_column, inst.flag_column))
    if inst.flag_column not in columns:
        return [], []
    if inst.scope_column is None:
        ids = link.run(f"SELECT {i} FROM {t} WHERE {f} <> 0 ORDER BY {i} LIMIT 11").rows
        return [int(r[0]) for r in ids], []
    s = quote(inst.scope_column)
    crowded = link.run(
        f"SELECT {s}, COUNT(*) FROM {t} WHERE {f} <> 0 GROUP BY {s} HAVING COUNT(*) > 1 LIMIT 10"
    ).rows
    return [], [(r[0], int(r[1])) for r in crowded]


def read_catalog(link: Link) -> Catalog:
    """Read everything the checks need, once.

    Raises:
        BatchFlagError: The version table is unreadable (see :func:`_read_revision`),
            or the server refused a query no check can do without.
    """
    inst = _read_installation(link)
    tables = {
        str(r[0]): str(r[1] or "")
        for r in link.run(
            "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME"
        ).rows
    }
    recorded = installation.RECORD_TABLE in tables
    revision, hidden = _read_revision(link, recorded)
    columns = {
        str(r[0]): (str(r[1] or ""), str(r[2] or ""))
        for r in link.query(
            "SELECT COLUMN_NAME, EXTRA, GENERATION_EXPRESSION FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t",
            t=inst.table,
        ).rows
    }
    indexes: dict[str, list[tuple[int, str, str]]] = {}
    for name, non_unique, column, collation in link.query(
        "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, COLLATION FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        t=inst.table,
    ).rows:
        indexes.setdefault(str(name), []).append(
            (int(non_unique), str(column), str(collation or ""))
        )
    current_ids, crowded = _read_rows(link, inst, columns) if inst.table in tables else ([], [])
    lock_exists = inst.lock_table in tables
    lock_rows = 0
    if lock_exists and not inst.scoped:
        lock_rows = int(
            link.run(f"SELECT COUNT(*) FROM `{inst.lock_table}` WHERE `id` = 1").rows[0][0]
        )
    names = list(_routines.files(inst) if recorded else CURRENT_ROUTINE_FILES)
    query = text(
        "SELECT ROUTINE_NAME, DEFINER, SECURITY_TYPE FROM information_schema.ROUTINES "
        "WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_NAME IN :names"
    ).bindparams(bindparam("names", expanding=True))
    routines = {
        str(r[0]): (_show_create(link, str(r[0])), str(r[1]), str(r[2]))
        for r in link.query(query, names=names).rows
    }
    own = {installation.RECORD_TABLE, VERSION_TABLE, LOCK_TABLE, HISTORY_TABLE}
    own |= {installation.SCOPE_LOCK_TABLE}
    return Catalog(
        inst=inst,
        recorded=recorded,
        revision=revision,
        revision_hidden=hidden,
        engine=tables.get(inst.table),
        columns=columns,
        indexes=indexes,
        current_ids=current_ids,
        crowded=crowded,
        lock_table=(lock_exists, lock_rows, not lock_exists and _hidden(link, inst.lock_table)),
        routines=routines,
        definers={d: _read_definer(link, d) for d in sorted({r[1] for r in routines.values()})},
        server_version=str(link.run("SELECT VERSION()").rows[0][0]),
        holders=find_lock_holders(link, inst, older_than=stuck_after()),
        theirs=[t for t in tables if t not in own],
    )


@dataclass(frozen=True)
class _Fixes:
    """The commands doctor prints as fixes: standalone chain, the team's chain, or install."""

    command: str
    revisions: _Revisions
    catalog: Catalog

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
        """Down to ``target`` and up again, on whichever chain made the installation."""
        cat = self.catalog
        if cat.own_chain or cat.revision_hidden:
            return (
                "run your revision that calls op.create_current_flag again: alembic downgrade "
                "<the revision before it> && alembic upgrade head"
            )
        if not cat.inst.is_default:
            # Revision 0006 makes all of an installation on other names: from the revision
            # before it, with the names again.
            names = "".join(
                f" --{option.replace('_', '-')} {value}"
                for option, value in cat.inst.names().items()
                if value is not None and value != getattr(installation.DEFAULT, option)
            )
            target = self.rebuild_target(installation.RECORD_TABLE)
            upgrade_args = f"{names}{upgrade_args}"
        return f"{self.command} downgrade {target} && {self.command} upgrade{upgrade_args}"

    def install(self) -> str:
        """How to install where nothing is: on the team's table when the schema has one."""
        theirs = self.catalog.theirs
        if not theirs or installation.DEFAULT.table in theirs:
            return f"{self.command} upgrade"
        table = next((t for t in theirs if "batch" in t.lower()), theirs[0])
        return (
            f"from your own Alembic chain, a revision calling op.create_current_flag("
            f'table="{table}", flag_column=..., status_column=...); or, without one, '
            f"{self.command} upgrade --table {table} --flag-column NAME --status-column NAME"
        )


Check = Callable[[Catalog, _Fixes], list[Finding]]


def check_revision(cat: Catalog, fixes: _Fixes) -> list[Finding]:
    """The standalone chain's revision is this version's head (or the team's chain made it)."""
    revisions, head, revision = fixes.revisions, migrate.head_revision(), cat.revision
    if cat.revision_hidden:
        return [
            Finding(
                "note",
                "revision",
                f"this account may not read {VERSION_TABLE} (an installation made by your own "
                f"Alembic chain has none): revision not checked; objects of "
                f"{cat.inst.describe()} checked",
            )
        ]
    if cat.own_chain:
        return [
            Finding(
                "ok",
                "revision",
                f"installed on {cat.inst.describe()} by your own Alembic chain "
                f"(op.create_current_flag; there is no {VERSION_TABLE})",
            )
        ]
    if revision is None:
        message = "the database was never migrated (no batchflag-db revision)"
        return [Finding("problem", "revision", message, fixes.install())]
    if not revisions.known(revision):
        return [
            Finding(
                "problem",
                "revision",
                f"the database is at revision {revision}, which this version of batchflag-db "
                f"does not know (head {head}): a newer version migrated it",
                "pip install --upgrade batchflag-db",
            )
        ]
    if revision != head:
        message = f"the database is at revision {revision}, this version's head is {head}"
        return [Finding("problem", "revision", message, f"{fixes.command} upgrade")]
    return [Finding("ok", "revision", f"{revision} (head)")]


def check_table(cat: Catalog, fixes: _Fixes) -> list[Finding]:
    """The table exists and is InnoDB."""
    table = cat.inst.table
    if cat.engine is None:
        if cat.never_installed:
            return []  # the revision's finding says how to install
        return [
            Finding("problem", "table", f"table {table} does not exist", fixes.rebuild_from("base"))
        ]
    if cat.engine.upper() != "INNODB":
        return [
            Finding(
                "problem",
                "table",
                f"{table} uses the {cat.engine} engine: flips are not atomic without InnoDB",
                f"ALTER TABLE `{table}` ENGINE=InnoDB",
            )
        ]
    return [Finding("ok", "table", f"{table} exists (InnoDB)")]


def check_current_rows(cat: Catalog, fixes: _Fixes) -> list[Finding]:
    """At most one row is current (per scope)."""
    inst = cat.inst
    if inst.flag_column not in cat.columns:
        message = f"{inst.table} has no column {inst.flag_column}"
        return [Finding("problem", "current rows", message, fixes.rebuild_from("base"))]
    if inst.scope_column is not None:
        if not cat.crowded:
            message = f"at most one batch is current per {inst.scope_column}"
            return [Finding("ok", "current rows", message)]
        shown = ", ".join(f"{value!s}: {count}" for value, count in cat.crowded)
        return [
            Finding(
                "problem",
                "current rows",
                f"several batches are current in one {inst.scope_column} ({shown}), at most "
                "one may be",
                fixes.rebuild(inst.key_index),
            )
        ]
    ids = cat.current_ids
    if len(ids) <= 1:
        which = f"batch {ids[0]}" if ids else "none"
        return [Finding("ok", "current rows", f"at most one batch is current ({which})")]
    shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
    newest = max(ids)
    key = fixes.revisions.creating(inst.key_index, latest=False)
    if key is not None and fixes.revisions.applied(cat.revision, key.revision):
        fix = fixes.rebuild(inst.key_index, upgrade_args=f" --keep-current {newest}")
    else:
        fix = f"{fixes.command} upgrade --keep-current {newest}"
    return [
        Finding(
            "problem",
            "current rows",
            f"{len(ids) if len(ids) <= 10 else 'more than 10'} batches are current "
            f"(ids {shown}), at most one may be; the fix keeps the batch named by "
            "--keep-current (here the newest: change it if another is right)",
            fix,
        )
    ]


def check_key_column(cat: Catalog, fixes: _Fixes) -> list[Finding]:
    """The key column is generated from the flag as :meth:`Installation.key_expression`."""
    inst, fix = cat.inst, fixes.rebuild(cat.inst.key_index)
    column, expected = f"{inst.table}.{inst.key_column}", inst.key_expression
    if inst.key_column not in cat.columns:
        return [Finding("problem", "key column", f"{column} is missing", fix)]
    extra, expression = cat.columns[inst.key_column]
    if "GENERATED" not in extra.upper() or not expression:
        message = f"{column} is not a generated column (expected {expected} {KEY_STORAGE})"
    elif _normalize_expression(expression) != _normalize_expression(expected):
        message = f"{column} is generated as {expression}, expected {expected}"
    elif KEY_STORAGE not in extra.upper():
        message = f"{column} is {extra}, this version expects {KEY_STORAGE}"
    else:
        return [Finding("ok", "key column", f"{inst.key_column} = {expected} {KEY_STORAGE}")]
    return [Finding("problem", "key column", message, fix)]


def check_key_index(cat: Catalog, fixes: _Fixes) -> list[Finding]:
    """The UNIQUE index is on :attr:`Installation.key_columns`, the key column DESC."""
    inst, fix = cat.inst, fixes.rebuild(cat.inst.key_index)
    found, expected = cat.indexes.get(inst.key_index, []), inst.key_columns
    if not found:
        message = f"UNIQUE index {inst.key_index} is missing: nothing stops a second current batch"
        return [Finding("problem", "index", message, fix)]
    if [(n, c) for n, c, _ in found] != [(0, c) for c in expected]:
        columns = ", ".join(c for _, c, _ in found)
        kind = "UNIQUE" if found[0][0] == 0 else "not UNIQUE"
        message = (
            f"index {inst.key_index} is {kind} on ({columns}); expected UNIQUE on "
            f"({', '.join(expected)})"
        )
        return [Finding("problem", "index", message, fix)]
    findings = [Finding("ok", "index", f"UNIQUE index {inst.key_index} on ({', '.join(expected)})")]
    if any(c == inst.key_column and o.upper() == "D" for _, c, o in found):
        findings.append(Finding("ok", "index", f"{inst.key_index} stores {inst.key_column} DESC"))
        return findings
    waits = (
        f"{inst.key_index} stores {inst.key_column} ascending: while a flip's "
        "transaction is open, inserting a new batch waits for it"
    )
    if server_keeps_desc(cat.server_version):
        findings.append(Finding("problem", "index", waits, fixes.rebuild(inst.flag_index)))
    else:
        findings.append(Finding("note", "index", f"{waits} (this server ignores DESC in an index)"))
    return findings


def check_flag_index(cat: Catalog, fixes: _Fixes) -> list[Finding]:
    """Some index starts with the flag column, so ``WHERE <flag> = 1`` is a lookup."""
    flag = cat.inst.flag_column
    leading = sorted(name for name, parts in cat.indexes.items() if parts[0][1] == flag)
    if leading:
        return [Finding("ok", "index", f"queries by {flag} use index {leading[0]}")]
    message = f"no index starts with {flag}: `WHERE {flag} = 1` reads the whole table"
    return [Finding("problem", "index", message, fixes.rebuild(cat.inst.flag_index))]


def check_lock_row(cat: Catalog, fixes: _Fixes) -> list[Finding]:
    """The lock table exists, with its row when there is no scope."""
    lock, fix = cat.inst.lock_table, fixes.rebuild(cat.inst.lock_table)
    exists, rows, hidden = cat.lock_table
    if not exists and hidden:
        message = f"could not check {lock}: this account has no privilege on it"
        return [Finding("note", "lock row", message)]
    if not exists:
        return [Finding("problem", "lock row", f"table {lock} is missing: every flip fails", fix)]
    if cat.inst.scoped:
        return [Finding("ok", "lock row", f"{lock} exists (a row per scope)")]
    if not rows:
        message = (
            f"the row id=1 of {lock} is missing: every flip fails (error {ER_LOCK_ROW_MISSING})"
        )
        return [Finding("problem", "lock row", message, fix)]
    return [Finding("ok", "lock row", f"{lock} has its row")]


def check_routines(cat: Catalog, fixes: _Fixes) -> list[Finding]:
    """Every routine exists, its body is its file's, with the file's SQL SECURITY."""
    findings = []
    for name, relative in cat.routine_files.items():
        fix = fixes.rebuild(relative, latest=True)
        if name not in cat.routines:
            findings.append(Finding("problem", "procedure", f"{name} is missing", fix))
            continue
        definition, _, security = cat.routines[name]
        source = cat.expected_source(name)
        expected_security = _SECURITY.search(source)
        wanted = expected_security.group(1).upper() if expected_security else "DEFINER"
        if definition is None:
            findings.append(
                Finding(
                    "note",
                    "procedure",
                    f"could not compare {name} with {relative}: this account may not read "
                    "its body (it is not the definer and lacks SHOW CREATE ROUTINE / "
                    "SELECT on mysql.proc)",
                )
            )
        elif routine_body(definition) != routine_body(source):
            message = f"{name} differs from this version's SQL ({relative})"
            findings.append(Finding("problem", "procedure", message, fix))
        elif security.upper() != wanted:
            message = f"{name} runs with SQL SECURITY {security}, {relative} says {wanted}"
            findings.append(Finding("problem", "procedure", message, fix))
        else:
            findings.append(Finding("ok", "procedure", f"{name} matches {relative}"))
    return findings


def check_definers(cat: Catalog, fixes: _Fixes) -> list[Finding]:
    """Every routine's definer account exists."""
    findings = []
    for definer, exists in cat.definers.items():
        routines = sorted(
            (n for n, r in cat.routines.items() if r[1] == definer),
            key=list(cat.routine_files).index,
        )
        shown = ", ".join(routines)
        if isinstance(exists, str):
            message = f"could not check that the definer {definer} exists ({exists})"
            findings.append(Finding("note", "definer", message))
        elif exists:
            findings.append(Finding("ok", "definer", f"{definer} (definer of {shown}) exists"))
        else:
            targets = {fixes.rebuild_target(cat.routine_files[r], latest=True) for r in routines}
            fix = fixes.rebuild_from(min(targets, key=fixes.revisions.position))
            message = (
                f"the definer {definer} of {shown} does not exist: every CALL fails (error "
                f"{ER_NO_SUCH_USER}); the fix re-creates them with your account"
            )
            findings.append(Finding("problem", "definer", message, fix))
    return findings


def check_stuck_transactions(cat: Catalog, fixes: _Fixes) -> list[Finding]:
    """No transaction has held row locks for ``stuck_after()`` s (10 by default) or more."""
    del fixes
    report = cat.holders
    if report.unreadable is not None:
        return [Finding("note", "open transactions", report.unreadable)]
    if not report.holders:
        message = f"no transaction has held row locks for {stuck_after()} s or more"
        return [Finding("ok", "open transactions", message)]
    return [
        Finding(
            "problem",
            "open transactions",
            f"a transaction has held row locks for {holder.open_seconds} s: flips "
            "wait for it and give up",
            holder.describe(),
        )
        for holder in report.holders
    ]


OBJECT_CHECKS: tuple[Check, ...] = (
    check_key_column,
    check_key_index,
    check_flag_index,
    check_lock_row,
    check_routines,
    check_definers,
    check_stuck_transactions,
)
"""The checks of batchflag-db's objects, in order: run once the revision is head."""


def _run(cat: Catalog, command: str) -> Report:
    """Order the checks, run them on the catalog, and collect their findings."""
    fixes, head = _Fixes(command, _Revisions.load(), cat), migrate.head_revision()
    findings = check_revision(cat, fixes)
    table = check_table(cat, fixes)
    findings += table
    if cat.engine is not None:
        findings += check_current_rows(cat, fixes)
        if cat.revision == head or cat.own_chain or cat.revision_hidden:
            for check in OBJECT_CHECKS:
                findings += check(cat, fixes)
        else:
            findings.append(
                Finding("note", "schema", "object checks skipped until the database is at head")
            )
    return Report(tuple(findings), cat.revision, head)


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
        return _run(read_catalog(link), command)
