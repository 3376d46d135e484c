"""The domain model: every table the broker keeps, as SQLModel classes.

Every row except a workspace carries ``workspace_id``; services filter on it in every
query, which is what keeps tenants apart. Secrets are never stored: tokens and credentials
keep a hash, passwords an argon2id hash. Times are timezone-aware UTC.

This module must never import services or do I/O: it is the schema, shared with Alembic.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "AccessGrant",
    "AccessLevel",
    "AgentCredential",
    "ApiToken",
    "Approval",
    "ApprovalStatus",
    "AuditCheckpoint",
    "AuditEvent",
    "BrowserSession",
    "BrowserSessionState",
    "FactorKind",
    "GroupMembership",
    "Invitation",
    "LoginState",
    "MfaChallenge",
    "MfaFactor",
    "Recording",
    "RecoveryCode",
    "RegistrationToken",
    "Role",
    "Server",
    "ServerGroup",
    "ServerGroupMembership",
    "ServerStatus",
    "SessionStatus",
    "SsoLink",
    "SsoProtocol",
    "SsoProvider",
    "SsoReplay",
    "TerminalSession",
    "TokenScope",
    "User",
    "UserGroup",
    "UserKind",
    "Workspace",
    "new_id",
    "utcnow",
]


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware UTC datetimes and always gives them back aware (SQLite forgets tzinfo)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Role(enum.StrEnum):
    USER = "user"
    STAFF = "staff"
    SUPERUSER = "superuser"


class UserKind(enum.StrEnum):
    """A person signs in; a service account (CI/CD) only ever uses its own tokens."""

    PERSON = "person"
    SERVICE = "service"


class AccessLevel(enum.StrEnum):
    NONE = "none"
    READ_ONLY = "read-only"
    TERMINAL = "terminal"
    FULL = "full"


class ServerStatus(enum.StrEnum):
    PENDING = "pending"
    ONLINE = "online"
    OFFLINE = "offline"


class SessionStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DETACHED = "detached"
    CLOSED = "closed"
    TERMINATED = "terminated"


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class TokenScope(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


def _enum(kind: type[enum.StrEnum], default: Any = None) -> Any:
    """Stored as its value in a short string column (no native enum type to migrate)."""
    column = sa.Enum(
        kind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
    )
    if default is None:
        return Field(sa_type=column)
    return Field(default=default, sa_type=column)


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime)


def _when() -> Any:
    return Field(default=None, sa_type=UTCDateTime)


def _workspace() -> Any:
    return Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")


def _json_dict() -> Any:
    return Field(default_factory=dict, sa_type=sa.JSON)


def _json_list() -> Any:
    return Field(default_factory=list, sa_type=sa.JSON)


class Workspace(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    created_at: datetime = _created()
    mfa_required: bool = False
    mfa_hardware_only: bool = False
    recording_retention_days: int = 365
    audit_retention_days: int = 365
    # Head of the audit chain: lets verify notice events cut off the end of the chain.
    audit_head_seq: int = 0
    audit_head_hash: str = Field(default="", max_length=64)
    # Set by DELETE /api/v1/workspace (migration 0004): every credential is revoked then,
    # the rows and the audit chain stay for the operator (see docs/api.md).
    deleted_at: datetime | None = _when()


class User(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("workspace_id", "email"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    email: str = Field(max_length=320)
    display_name: str = Field(default="", max_length=200)
    role: Role = _enum(Role, Role.USER)
    disabled: bool = False
    password_hash: str | None = None
    must_change_password: bool = False
    created_at: datetime = _created()
    last_login_at: datetime | None = _when()
    kind: UserKind = _enum(UserKind, UserKind.PERSON)  # migration 0004


class UserGroup(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    name: str = Field(max_length=100)
    description: str = ""
    created_at: datetime = _created()


class GroupMembership(SQLModel, table=True):
    workspace_id: str = _workspace()
    group_id: str = Field(foreign_key="usergroup.id", primary_key=True, ondelete="CASCADE")
    user_id: str = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    created_at: datetime = _created()


class Server(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    name: str = Field(max_length=100)
    platform: str = Field(default="", max_length=100)
    tags: dict[str, str] = _json_dict()
    status: ServerStatus = _enum(ServerStatus, ServerStatus.PENDING)
    last_seen_at: datetime | None = _when()
    sysinfo: dict[str, Any] = _json_dict()
    metrics: dict[str, Any] = _json_dict()
    created_at: datetime = _created()


class ServerGroup(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    name: str = Field(max_length=100)
    created_at: datetime = _created()


class ServerGroupMembership(SQLModel, table=True):
    workspace_id: str = _workspace()
    server_group_id: str = Field(foreign_key="servergroup.id", primary_key=True, ondelete="CASCADE")
    server_id: str = Field(foreign_key="server.id", primary_key=True, ondelete="CASCADE")


class AccessGrant(SQLModel, table=True):
    """Who may reach which servers at which level: a user or group, and a server selector.

    The selector is one of a name pattern (``production-*``), a server group, or a tag
    (``env=prod``); the policy layer turns grants into decisions.
    """

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    user_id: str | None = Field(default=None, foreign_key="user.id", ondelete="CASCADE")
    group_id: str | None = Field(default=None, foreign_key="usergroup.id", ondelete="CASCADE")
    server_pattern: str | None = Field(default=None, max_length=200)
    server_group_id: str | None = Field(
        default=None, foreign_key="servergroup.id", ondelete="CASCADE"
    )
    server_tag: str | None = Field(default=None, max_length=200)
    level: AccessLevel = _enum(AccessLevel)
    unix_users: list[str] = _json_list()
    created_at: datetime = _created()
    created_by: str | None = None


class TerminalSession(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    # A session outlives its server: removing a server keeps the history and the
    # recordings (migration 0005); the name it had is kept beside the cleared id.
    server_id: str | None = Field(
        default=None, foreign_key="server.id", index=True, ondelete="SET NULL"
    )
    server_name: str = Field(default="", max_length=100)
    unix_user: str = Field(max_length=64)
    status: SessionStatus = _enum(SessionStatus, SessionStatus.PENDING)
    cols: int = 80
    rows: int = 24
    credential_id: str | None = None
    opened_at: datetime = _created()
    closed_at: datetime | None = _when()
    close_reason: str | None = None


class Recording(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    session_id: str = Field(foreign_key="terminalsession.id", index=True, ondelete="CASCADE")
    path: str
    size_bytes: int = 0
    started_at: datetime = _created()
    ended_at: datetime | None = _when()


class Approval(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    session_id: str | None = Field(
        default=None, foreign_key="terminalsession.id", ondelete="CASCADE"
    )
    requester_id: str = Field(foreign_key="user.id", ondelete="CASCADE")
    server_id: str | None = Field(default=None, foreign_key="server.id", ondelete="SET NULL")
    command: str
    rule_id: str = ""
    approvers: list[str] = _json_list()
    status: ApprovalStatus = _enum(ApprovalStatus, ApprovalStatus.PENDING)
    decided_by: str | None = None
    decided_at: datetime | None = _when()
    reason: str = ""
    created_at: datetime = _created()
    expires_at: datetime | None = _when()


class ApiToken(SQLModel, table=True):
    """A personal access token: only its SHA-256 is kept; the secret is shown once."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=100)
    scope: TokenScope = _enum(TokenScope)
    secret_hash: str = Field(max_length=64)
    created_at: datetime = _created()
    expires_at: datetime | None = _when()
    last_used_at: datetime | None = _when()
    revoked_at: datetime | None = _when()
    created_by: str | None = None  # migration 0004: who minted it (service-account tokens)


class RegistrationToken(SQLModel, table=True):
    """Single-use, short-lived: an agent trades it for its own credential."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    secret_hash: str = Field(max_length=64)
    created_by: str | None = None
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = _when()
    server_id: str | None = None


class AgentCredential(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    server_id: str = Field(foreign_key="server.id", index=True, ondelete="CASCADE")
    secret_hash: str = Field(max_length=64)
    created_at: datetime = _created()
    last_used_at: datetime | None = _when()
    revoked_at: datetime | None = _when()


class AuditEvent(SQLModel, table=True):
    """One link of a workspace's hash chain; never updated, removed only by a purge."""

    __table_args__ = (sa.UniqueConstraint("workspace_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = _workspace()
    seq: int
    ts: datetime = Field(sa_type=UTCDateTime, index=True)
    category: str = Field(max_length=32, index=True)
    action: str = Field(max_length=100)
    outcome: str = Field(max_length=16)
    actor_type: str = Field(default="", max_length=32)
    actor_id: str = Field(default="", max_length=64, index=True)
    credential_id: str = Field(default="", max_length=64)
    server_id: str = Field(default="", max_length=64, index=True)
    session_id: str = Field(default="", max_length=64)
    target: str = Field(default="", max_length=200)
    details: str = "{}"
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """Left by a retention purge: where the chain now starts, signed by the broker key."""

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = _workspace()
    through_seq: int
    last_hash: str = Field(max_length=64)
    purged_count: int
    created_at: datetime = _created()
    signature: str = Field(max_length=64)


# --- identity (migration 0002) ---------------------------------------------------------


class BrowserSessionState(enum.StrEnum):
    """A password alone never yields ``active`` when the user has (or must have) MFA."""

    MFA_PENDING = "mfa-pending"
    ENROL = "enrol"
    ACTIVE = "active"


class FactorKind(enum.StrEnum):
    TOTP = "totp"
    WEBAUTHN = "webauthn"
    EMAIL = "email"
    SMS = "sms"


class LoginState(SQLModel, table=True):
    """Per-user login bookkeeping kept apart from the user row: lockout and last MFA."""

    user_id: str = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    workspace_id: str = _workspace()
    failed_logins: int = 0
    locked_until: datetime | None = _when()
    password_changed_at: datetime | None = _when()
    last_mfa_at: datetime | None = _when()
    last_mfa_method: str = Field(default="", max_length=16)


class BrowserSession(SQLModel, table=True):
    """A cookie login: only the SHA-256 of its secret is kept; revocable, two expiries."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    secret_hash: str = Field(max_length=64)
    state: BrowserSessionState = _enum(BrowserSessionState)
    created_at: datetime = _created()
    last_seen_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    mfa_at: datetime | None = _when()
    mfa_method: str = Field(default="", max_length=16)
    revoked_at: datetime | None = _when()
    source: str = Field(default="", max_length=100)
    user_agent: str = Field(default="", max_length=200)


class MfaFactor(SQLModel, table=True):
    """One enrolled second factor. TOTP secrets are stored encrypted with a key derived
    from the broker key; WebAuthn keeps the public key and signature counter only."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    kind: FactorKind = _enum(FactorKind)
    label: str = Field(default="", max_length=100)
    secret_box: str = ""  # TOTP: AES-GCM ciphertext (base64), never the secret itself
    destination: str = Field(default="", max_length=320)  # email address or phone number
    last_step: int = 0  # TOTP: highest time step accepted (replay refusal)
    credential_id: str | None = Field(default=None, max_length=1400, unique=True)
    public_key: str = ""  # WebAuthn: COSE public key, base64url
    sign_count: int = 0
    transports: list[str] = _json_list()
    attachment: str = Field(default="", max_length=32)
    aaguid: str = Field(default="", max_length=36)
    user_verified: bool = False
    confirmed_at: datetime | None = _when()
    created_at: datetime = _created()
    last_used_at: datetime | None = _when()


class RecoveryCode(SQLModel, table=True):
    """A single-use recovery code: an HMAC of it (keyed by the broker key), never the code."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    code_hash: str = Field(max_length=64)
    created_at: datetime = _created()
    used_at: datetime | None = _when()


class MfaChallenge(SQLModel, table=True):
    """A pending ceremony: an emailed/SMS code (hashed) or a WebAuthn challenge.

    Bounded by ``expires_at`` and ``attempts``; consumed once (``used_at``)."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    factor_id: str | None = Field(default=None, foreign_key="mfafactor.id", ondelete="CASCADE")
    purpose: str = Field(max_length=64)
    secret_hash: str = Field(default="", max_length=64)
    challenge: str = Field(default="", max_length=200)
    attempts: int = 0
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = _when()


class Invitation(SQLModel, table=True):
    """Sign-up for a local account: single use, short-lived, SHA-256 of the secret only."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    email: str = Field(max_length=320)
    role: Role = _enum(Role, Role.USER)
    secret_hash: str = Field(max_length=64)
    created_by: str | None = None
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = _when()


class SsoProtocol(enum.StrEnum):
    OIDC = "oidc"
    SAML = "saml"


class SsoProvider(SQLModel, table=True):
    """A workspace's identity provider: OIDC (generic, or the Google preset) or SAML 2.0.

    ``config`` holds the protocol settings that are not secret (issuer, client id, scopes,
    the IdP's metadata XML, ...); a client secret lives only in ``secret_box``, encrypted
    under the broker key. ``group_mapping`` maps an IdP group (a claim or attribute value)
    to the name of a Corral group; people are put in and taken out of the mapped groups at
    every login.
    """

    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = _workspace()
    name: str = Field(max_length=100)
    protocol: SsoProtocol = _enum(SsoProtocol)
    preset: str = Field(default="", max_length=32)
    enabled: bool = True
    config: dict[str, Any] = _json_dict()
    secret_box: str = ""
    group_mapping: dict[str, str] = _json_dict()
    default_role: Role = _enum(Role, Role.USER)
    jit: bool = True
    created_at: datetime = _created()
    updated_at: datetime | None = _when()


class SsoLink(SQLModel, table=True):
    """A person's identity at a provider (its stable subject / NameID) and their user."""

    provider_id: str = Field(foreign_key="ssoprovider.id", primary_key=True, ondelete="CASCADE")
    subject: str = Field(primary_key=True, max_length=255)
    workspace_id: str = _workspace()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    created_at: datetime = _created()
    last_login_at: datetime | None = _when()


class SsoReplay(SQLModel, table=True):
    """One-time values already accepted (SAML assertion and response ids, OIDC states):
    kept until they would have expired anyway, so a replay is refused even across restarts
    and broker processes."""

    provider_id: str = Field(foreign_key="ssoprovider.id", primary_key=True, ondelete="CASCADE")
    key: str = Field(primary_key=True, max_length=255)
    workspace_id: str = _workspace()
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
