"""The domain model: every table the broker keeps, as SQLModel classes.

Every row except a workspace carries ``workspace_id``; services filter on it in every
query, which is what keeps tenants apart. Secrets are never stored: tokens and credentials
keep a hash, passwords an argon2id hash. Times are timezone-aware UTC.

One module per concept; import from here (``from broker.store.models import User``):

* ``identity`` — workspaces, users, groups, invitations;
* ``authentication`` — login state, browser sessions, MFA factors, recovery codes,
  MFA challenges;
* ``sso`` — identity providers, people's links to them, replay protection;
* ``servers`` — servers, server groups, access grants;
* ``credentials`` — API tokens, agent registration tokens, agent credentials;
* ``sessions`` — terminal sessions, recordings, command approvals;
* ``audit`` — the audit chain and purge checkpoints;
* ``columns`` — ids, UTC times and the field factories the tables share.

Importing this package registers every table on ``SQLModel.metadata``, which is what
Alembic (``migrations/env.py``) and ``alembic check``-style tests compare against, so
every table module must be imported here. The migrations reference
``broker.store.models.UTCDateTime``.

This package must never import services or do I/O: it is the schema, shared with Alembic.
"""

from broker.store.models.audit import AuditCheckpoint, AuditEvent
from broker.store.models.authentication import (
    BrowserSession,
    BrowserSessionState,
    FactorKind,
    LoginState,
    MfaChallenge,
    MfaFactor,
    RecoveryCode,
)
from broker.store.models.columns import UTCDateTime, new_id, utcnow
from broker.store.models.credentials import (
    AgentCredential,
    ApiToken,
    RegistrationToken,
    TokenScope,
)
from broker.store.models.identity import (
    GroupMembership,
    Invitation,
    Role,
    User,
    UserGroup,
    UserKind,
    Workspace,
)
from broker.store.models.servers import (
    AccessGrant,
    AccessLevel,
    Server,
    ServerGroup,
    ServerGroupMembership,
    ServerStatus,
)
from broker.store.models.sessions import (
    Approval,
    ApprovalStatus,
    Recording,
    SessionStatus,
    TerminalSession,
)
from broker.store.models.sso import SsoLink, SsoProtocol, SsoProvider, SsoReplay

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
    "UTCDateTime",
    "User",
    "UserGroup",
    "UserKind",
    "Workspace",
    "new_id",
    "utcnow",
]
