"""resolve v2: the dashboard's "incomplete" step walks the statuses, whatever the optimizer

Replaces ``resolve_dashboard_batch`` with ``sql/procedures/resolve_dashboard_batch/v2.sql``.
Version 1's "incomplete" step relied on the optimizer choosing a loose index scan;
MySQL chose a range scan instead, and every server read one index entry per
incomplete batch while its statistics were stale. Version 2 reads two index
entries per distinct status on every server. Same signature, same answers.

On MariaDB each procedure is replaced in one statement (CREATE OR REPLACE), so
no CALL fails meanwhile. On MySQL it is DROP then CREATE: during that one
statement a CALL fails with "does not exist" (1305), which the Python wrapper
retries briefly; other clients should retry it too.

Downgrade puts version 1 back from its released file.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from batchflag_db import _ddl, _install

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: What this revision creates, for doctor (see batchflag_db.doctor).
creates = ("procedures/resolve_dashboard_batch/v2.sql",)


def upgrade() -> None:
    if _install.skip_default_revision():
        return  # an installation on other names: revision 0006 does it all
    _ddl.replace_routine("resolve_dashboard_batch", "procedures/resolve_dashboard_batch/v2.sql")


def downgrade() -> None:
    if _install.skip_default_revision():
        return  # an installation on other names: revision 0006 does it all
    _ddl.replace_routine("resolve_dashboard_batch", "procedures/resolve_dashboard_batch/v1.sql")
