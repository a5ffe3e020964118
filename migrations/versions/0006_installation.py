"""installation: the names recorded, routines from templates, your table and one current row per scope

Records the installation (table, id, flag, status and scope column names) in
``currentBatchInstallation`` and replaces the routines with version 3
(``sql/procedures/*/v3.sql``), templates rendered with those names.

With the default names (``batchStatus``, ``id``, ``currentBatch``, ``batchStatus``)
revisions 0001-0005 made everything else, and this revision adopts it. With other
names (``batchflag upgrade --table batch_status ...``, or ``-x table=...``), revisions
0001-0005 do nothing and this revision installs everything on that table, as the
Alembic operation ``op.create_current_flag`` does in a team's own chain
(:mod:`batchflag_db.alembic`): one implementation, :mod:`batchflag_db._install`.

On MariaDB each procedure is replaced in one statement (CREATE OR REPLACE), so no
CALL fails meanwhile; on MySQL it is DROP then CREATE, and the wrapper retries the
one-statement gap (1305).

Downgrade with the default names puts version 2 back (v1 of resolve's successor,
``resolve_dashboard_batch/v2.sql``) and drops the record; with other names it removes
the whole installation, keeping every row and flag value (and the history if it has
rows).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import context

from batchflag_db import _ddl, _install
from batchflag_db._keep_current import keep_current_argument
from batchflag_db.installation import RECORD_TABLE

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: What this revision creates, for doctor (see batchflag_db.doctor).
creates = (
    RECORD_TABLE,
    "procedures/set_current_batch/v3.sql",
    "procedures/unset_current_batch/v3.sql",
    "procedures/resolve_dashboard_batch/v3.sql",
)


def upgrade() -> None:
    inst = _install.from_context()
    keep = keep_current_argument(
        context.get_x_argument(as_dictionary=True), context.config.attributes
    )
    # With the default names 0002 already applied keep_current; adopt what 0001-0005 made.
    _install.remember(_install.create(inst, keep, adopt=inst.is_default, layout=1))


def downgrade() -> None:
    inst = _install.from_context()
    if not inst.is_default:
        _install.drop(inst, layout=1)
        return
    _ddl.replace_routine("set_current_batch", "procedures/set_current_batch/v2.sql")
    _ddl.replace_routine("unset_current_batch", "procedures/unset_current_batch/v2.sql")
    _ddl.replace_routine("resolve_dashboard_batch", "procedures/resolve_dashboard_batch/v2.sql")
    _ddl.run(f"DROP TABLE IF EXISTS `{RECORD_TABLE}`")
