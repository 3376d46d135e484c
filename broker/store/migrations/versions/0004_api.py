"""The API for apps: service accounts (``user.kind``), who minted a token, deleted
workspaces.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import broker.store.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind",
                sa.Enum("person", "service", name="userkind", native_enum=False, length=16),
                nullable=False,
                server_default="person",
            )
        )
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    with op.batch_alter_table("workspace", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deleted_at", broker.store.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("workspace", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.drop_column("created_by")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("kind")
