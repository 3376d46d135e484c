"""Initial schema, and on PostgreSQL the triggers that keep the audit tables append-only.

Revision ID: 0001
Revises: (none)
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import broker.store.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# UPDATE is never allowed; DELETE only inside a retention purge, which sets the
# transaction-local flag corral.audit_purge (see broker/audit/log.py).
APPEND_ONLY = """
CREATE OR REPLACE FUNCTION corral_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('corral.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'corral: % on % refused: the audit log is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
AUDIT_TABLES = ("auditevent", "auditcheckpoint")


def _append_only_triggers() -> None:
    op.execute(APPEND_ONLY)
    for table in AUDIT_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION corral_audit_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION corral_audit_append_only()"
        )


def upgrade() -> None:
    op.create_table(
        "workspace",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("mfa_required", sa.Boolean(), nullable=False),
        sa.Column("mfa_hardware_only", sa.Boolean(), nullable=False),
        sa.Column("recording_retention_days", sa.Integer(), nullable=False),
        sa.Column("audit_retention_days", sa.Integer(), nullable=False),
        sa.Column("audit_head_seq", sa.Integer(), nullable=False),
        sa.Column("audit_head_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "auditcheckpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("through_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("purged_count", sa.Integer(), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("signature", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("auditcheckpoint", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auditcheckpoint_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "auditevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ts", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("actor_type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("actor_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("credential_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("server_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("session_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("details", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("prev_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "seq"),
    )
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auditevent_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_auditevent_category"), ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_auditevent_server_id"), ["server_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_auditevent_ts"), ["ts"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_auditevent_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "registrationtoken",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("server_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("registrationtoken", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_registrationtoken_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "server",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("platform", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending", "online", "offline", name="serverstatus", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("last_seen_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sysinfo", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "name"),
    )
    with op.batch_alter_table("server", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_server_workspace_id"), ["workspace_id"], unique=False)

    op.create_table(
        "servergroup",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "name"),
    )
    with op.batch_alter_table("servergroup", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_servergroup_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "user",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("display_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum("user", "staff", "superuser", name="role", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "email"),
    )
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_workspace_id"), ["workspace_id"], unique=False)

    op.create_table(
        "usergroup",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "name"),
    )
    with op.batch_alter_table("usergroup", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usergroup_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "accessgrant",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("group_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("server_pattern", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("server_group_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("server_tag", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column(
            "level",
            sa.Enum(
                "none",
                "read-only",
                "terminal",
                "full",
                name="accesslevel",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("unix_users", sa.JSON(), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(["group_id"], ["usergroup.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["server_group_id"], ["servergroup.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("accessgrant", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_accessgrant_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "agentcredential",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("server_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["server_id"], ["server.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agentcredential", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agentcredential_server_id"), ["server_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_agentcredential_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "apitoken",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column(
            "scope",
            sa.Enum("read", "write", "admin", name="tokenscope", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_apitoken_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_apitoken_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "groupmembership",
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("group_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["usergroup.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id"),
    )
    with op.batch_alter_table("groupmembership", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_groupmembership_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "servergroupmembership",
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("server_group_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("server_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(["server_group_id"], ["servergroup.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["server_id"], ["server.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("server_group_id", "server_id"),
    )
    with op.batch_alter_table("servergroupmembership", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_servergroupmembership_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "terminalsession",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("server_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("unix_user", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "active",
                "detached",
                "closed",
                "terminated",
                name="sessionstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("cols", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("credential_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("opened_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(["server_id"], ["server.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("terminalsession", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_terminalsession_server_id"), ["server_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_terminalsession_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_terminalsession_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "approval",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("session_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("requester_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("server_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("command", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("rule_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("approvers", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "approved",
                "denied",
                "expired",
                name="approvalstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("decided_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["requester_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["server_id"], ["server.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["terminalsession.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_approval_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "recording",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("session_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("started_at", broker.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", broker.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["terminalsession.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recording", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recording_session_id"), ["session_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_recording_workspace_id"), ["workspace_id"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        _append_only_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in AUDIT_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS corral_audit_append_only()")
    with op.batch_alter_table("recording", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recording_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_recording_session_id"))

    op.drop_table("recording")
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_workspace_id"))

    op.drop_table("approval")
    with op.batch_alter_table("terminalsession", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_terminalsession_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_terminalsession_user_id"))
        batch_op.drop_index(batch_op.f("ix_terminalsession_server_id"))

    op.drop_table("terminalsession")
    with op.batch_alter_table("servergroupmembership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_servergroupmembership_workspace_id"))

    op.drop_table("servergroupmembership")
    with op.batch_alter_table("groupmembership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_groupmembership_workspace_id"))

    op.drop_table("groupmembership")
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apitoken_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_apitoken_user_id"))

    op.drop_table("apitoken")
    with op.batch_alter_table("agentcredential", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agentcredential_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_agentcredential_server_id"))

    op.drop_table("agentcredential")
    with op.batch_alter_table("accessgrant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accessgrant_workspace_id"))

    op.drop_table("accessgrant")
    with op.batch_alter_table("usergroup", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usergroup_workspace_id"))

    op.drop_table("usergroup")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_workspace_id"))

    op.drop_table("user")
    with op.batch_alter_table("servergroup", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_servergroup_workspace_id"))

    op.drop_table("servergroup")
    with op.batch_alter_table("server", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_server_workspace_id"))

    op.drop_table("server")
    with op.batch_alter_table("registrationtoken", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registrationtoken_workspace_id"))

    op.drop_table("registrationtoken")
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auditevent_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_auditevent_ts"))
        batch_op.drop_index(batch_op.f("ix_auditevent_server_id"))
        batch_op.drop_index(batch_op.f("ix_auditevent_category"))
        batch_op.drop_index(batch_op.f("ix_auditevent_actor_id"))

    op.drop_table("auditevent")
    with op.batch_alter_table("auditcheckpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auditcheckpoint_workspace_id"))

    op.drop_table("auditcheckpoint")
    op.drop_table("workspace")
