"""The routines of an installation: which template files, rendered with which names.

From revision 0006 on, every routine is created from a template under
``sql/procedures/`` (``v3.sql``, or ``v3-scoped.sql`` for an installation with a scope
column), rendered with the installation's names. The templates are released files
like the others: frozen, a change is a new file. Revisions 0003-0005 create the
literal v1/v2 files, which only know the default names.
"""

from __future__ import annotations

from string import Template

from batchflag_db._resources import read_sql
from batchflag_db._schema import RESOLVE_PROCEDURE, SET_PROCEDURE, UNSET_PROCEDURE
from batchflag_db.errors import ConfigurationError
from batchflag_db.installation import DEFAULT, Installation, quote

__all__ = [
    "ALL_ROUTINES",
    "RESOLVE_IN_SCOPE_PROCEDURE",
    "VERSIONS",
    "check_version",
    "files",
    "head_source",
    "render",
]

RESOLVE_IN_SCOPE_PROCEDURE = "resolve_dashboard_batch_in_scope"
"""With a scope column: the dashboard's resolution within one scope."""

ALL_ROUTINES = (SET_PROCEDURE, UNSET_PROCEDURE, RESOLVE_PROCEDURE, RESOLVE_IN_SCOPE_PROCEDURE)
"""Every routine any installation has."""

_GLOBAL = {
    SET_PROCEDURE: "procedures/set_current_batch/v3.sql",
    UNSET_PROCEDURE: "procedures/unset_current_batch/v3.sql",
    RESOLVE_PROCEDURE: "procedures/resolve_dashboard_batch/v3.sql",
}
_SCOPED = {
    SET_PROCEDURE: "procedures/set_current_batch/v3-scoped.sql",
    UNSET_PROCEDURE: "procedures/unset_current_batch/v3-scoped.sql",
    RESOLVE_PROCEDURE: "procedures/resolve_dashboard_batch/v3-scoped.sql",
    RESOLVE_IN_SCOPE_PROCEDURE: "procedures/resolve_dashboard_batch_in_scope/v1-scoped.sql",
}


VERSIONS = (3,)
"""The routine template versions this batchflag-db ships."""


def check_version(version: int) -> None:
    """Refuse a routine version this batchflag-db has no templates of.

    Raises:
        ConfigurationError: Not one of :data:`VERSIONS`.
    """
    if version not in VERSIONS:
        raise ConfigurationError(
            f"routine version {version!r}: this batchflag-db has templates of version(s) "
            f"{', '.join(map(str, VERSIONS))}"
        )


def files(inst: Installation, version: int = VERSIONS[-1]) -> dict[str, str]:
    """The template file (under ``sql/``) of each routine the installation has."""
    check_version(version)
    return dict(_SCOPED if inst.scoped else _GLOBAL)


def render(relative: str, inst: Installation) -> str:
    """Return the template ``relative`` with the installation's names filled in.

    Raises:
        ConfigurationError: A scoped template is rendered without the scope column's type.
    """
    names = {
        "table": quote(inst.table),
        "id": quote(inst.id_column),
        "flag": quote(inst.flag_column),
        "key": quote(inst.key_column),
        "status": quote(inst.status_column),
        "lock": quote(inst.lock_table),
        "history": quote(inst.history_table),
        "table_name": inst.table,
        "lock_name": inst.lock_table,
    }
    if inst.scope_column is not None:
        if inst.scope_type is None:
            raise ConfigurationError(f"{relative}: the scope column's type is not known")
        names |= {
            "scope": quote(inst.scope_column),
            "scope_name": inst.scope_column,
            "scope_type": inst.scope_type,
        }
    return Template(read_sql(relative)).substitute(names)


def head_source(name: str, inst: Installation | None = None) -> str:
    """The text routine ``name`` of ``inst`` (default: the default installation) is created from."""
    chosen = inst if inst is not None else DEFAULT
    return render(files(chosen)[name], chosen)
