"""Identity: login state, browser sessions, MFA factors, recovery codes, challenges,
invitations.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import broker.store.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invitation",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column(
            "role",
            sa.Enum("user", "staff", "superuser", name="role", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("invitation", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invitation_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "browsersession",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "mfa-pending",
                "enrol",
                "active",
                name="browsersessionstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("mfa_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("mfa_method", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("revoked_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("user_agent", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("browsersession", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_browsersession_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_browsersession_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "loginstate",
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "password_changed_at", broker.store.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_mfa_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_mfa_method", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )
    with op.batch_alter_table("loginstate", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_loginstate_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "mfafactor",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "totp", "webauthn", "email", "sms", name="factorkind", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("secret_box", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("destination", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("credential_id", sqlmodel.sql.sqltypes.AutoString(length=1400), nullable=True),
        sa.Column("public_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("sign_count", sa.Integer(), nullable=False),
        sa.Column("transports", sa.JSON(), nullable=False),
        sa.Column("attachment", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("aaguid", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("user_verified", sa.Boolean(), nullable=False),
        sa.Column("confirmed_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("credential_id"),
    )
    with op.batch_alter_table("mfafactor", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mfafactor_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_mfafactor_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "recoverycode",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("code_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recoverycode", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recoverycode_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_recoverycode_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "mfachallenge",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("factor_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("challenge", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["factor_id"], ["mfafactor.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mfachallenge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mfachallenge_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_mfachallenge_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mfachallenge", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mfachallenge_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_mfachallenge_user_id"))

    op.drop_table("mfachallenge")
    with op.batch_alter_table("recoverycode", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recoverycode_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_recoverycode_user_id"))

    op.drop_table("recoverycode")
    with op.batch_alter_table("mfafactor", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mfafactor_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_mfafactor_user_id"))

    op.drop_table("mfafactor")
    with op.batch_alter_table("loginstate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loginstate_workspace_id"))

    op.drop_table("loginstate")
    with op.batch_alter_table("browsersession", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_browsersession_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_browsersession_user_id"))

    op.drop_table("browsersession")
    with op.batch_alter_table("invitation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitation_workspace_id"))

    op.drop_table("invitation")
