"""Removing a server keeps its sessions, recordings and approvals.

Until now ``terminalsession.server_id`` and ``approval.server_id`` cascaded: deleting a
server deleted the rows that index its recordings (the asciicast files stayed on disk,
out of reach of the API and of the retention purge) and its approval history. Both
foreign keys now clear the id instead (``ON DELETE SET NULL``), and a session keeps the
server's name as it was when the session opened (``server_name``; backfilled here).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite reflects the initial migration's foreign keys without names; batch mode names them
# with this convention so they can be dropped. PostgreSQL named them itself (<table>_<col>_fkey).
_SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _fk_name(table: str) -> str:
    if op.get_bind().dialect.name == "sqlite":
        return f"fk_{table}_server_id_server"
    return f"{table}_server_id_fkey"


def _repoint(table: str, ondelete: str, *, nullable: bool) -> None:
    name = _fk_name(table)
    with op.batch_alter_table(table, naming_convention=_SQLITE_NAMES) as batch_op:
        batch_op.drop_constraint(name, type_="foreignkey")
        batch_op.alter_column("server_id", existing_type=sa.String(), nullable=nullable)
        batch_op.create_foreign_key(name, "server", ["server_id"], ["id"], ondelete=ondelete)


def upgrade() -> None:
    with op.batch_alter_table("terminalsession") as batch_op:
        batch_op.add_column(
            sa.Column(
                "server_name",
                sqlmodel.sql.sqltypes.AutoString(length=100),
                nullable=False,
                server_default="",
            )
        )
    op.execute(
        "UPDATE terminalsession SET server_name = "
        "(SELECT server.name FROM server WHERE server.id = terminalsession.server_id)"
        " WHERE server_id IS NOT NULL"
    )
    _repoint("terminalsession", "SET NULL", nullable=True)
    _repoint("approval", "SET NULL", nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM terminalsession WHERE server_id IS NULL")
    _repoint("approval", "CASCADE", nullable=True)
    _repoint("terminalsession", "CASCADE", nullable=False)
    with op.batch_alter_table("terminalsession") as batch_op:
        batch_op.drop_column("server_name")
