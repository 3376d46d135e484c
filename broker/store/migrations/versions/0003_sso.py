"""SSO: identity providers per workspace, people's links to them, one-time values seen.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import broker.store.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ssoprovider",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column(
            "protocol",
            sa.Enum("oidc", "saml", name="ssoprotocol", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("preset", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret_box", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("group_mapping", sa.JSON(), nullable=False),
        sa.Column(
            "default_role",
            sa.Enum("user", "staff", "superuser", name="role", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("jit", sa.Boolean(), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "name"),
    )
    with op.batch_alter_table("ssoprovider", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ssoprovider_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "ssolink",
        sa.Column("provider_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["provider_id"], ["ssoprovider.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("provider_id", "subject"),
    )
    with op.batch_alter_table("ssolink", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ssolink_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ssolink_workspace_id"), ["workspace_id"], unique=False)

    op.create_table(
        "ssoreplay",
        sa.Column("provider_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("expires_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["ssoprovider.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("provider_id", "key"),
    )
    with op.batch_alter_table("ssoreplay", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ssoreplay_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ssoreplay_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ssoreplay", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ssoreplay_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_ssoreplay_expires_at"))

    op.drop_table("ssoreplay")
    with op.batch_alter_table("ssolink", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ssolink_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_ssolink_user_id"))

    op.drop_table("ssolink")
    with op.batch_alter_table("ssoprovider", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ssoprovider_workspace_id"))

    op.drop_table("ssoprovider")
