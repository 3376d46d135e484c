"""How people prove who they are: login state, browser sessions and MFA (migration 0002).

Lockout counters and the last MFA are kept apart from the user row; a browser session is a
cookie login (SHA-256 of its secret only); MFA factors are TOTP (secret encrypted under the
broker key), WebAuthn (public key and counter only), email or SMS; recovery codes are kept
as HMACs; a challenge is one pending ceremony, bounded in time and attempts. Sign-in
through an identity provider is in :mod:`broker.store.models.sso`.

This module must never import services or do I/O: it is schema, shared with Alembic.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlmodel import Field, SQLModel

from broker.store.models.columns import (
    UTCDateTime,
    created_field,
    enum_field,
    list_field,
    new_id,
    when_field,
    workspace_field,
)

__all__ = [
    "BrowserSession",
    "BrowserSessionState",
    "FactorKind",
    "LoginState",
    "MfaChallenge",
    "MfaFactor",
    "RecoveryCode",
]


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
    workspace_id: str = workspace_field()
    failed_logins: int = 0
    locked_until: datetime | None = when_field()
    password_changed_at: datetime | None = when_field()
    last_mfa_at: datetime | None = when_field()
    last_mfa_method: str = Field(default="", max_length=16)


class BrowserSession(SQLModel, table=True):
    """A cookie login: only the SHA-256 of its secret is kept; revocable, two expiries."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    secret_hash: str = Field(max_length=64)
    state: BrowserSessionState = enum_field(BrowserSessionState)
    created_at: datetime = created_field()
    last_seen_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    mfa_at: datetime | None = when_field()
    mfa_method: str = Field(default="", max_length=16)
    revoked_at: datetime | None = when_field()
    source: str = Field(default="", max_length=100)
    user_agent: str = Field(default="", max_length=200)


class MfaFactor(SQLModel, table=True):
    """One enrolled second factor. TOTP secrets are stored encrypted with a key derived
    from the broker key; WebAuthn keeps the public key and signature counter only."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    kind: FactorKind = enum_field(FactorKind)
    label: str = Field(default="", max_length=100)
    secret_box: str = ""  # TOTP: AES-GCM ciphertext (base64), never the secret itself
    destination: str = Field(default="", max_length=320)  # email address or phone number
    last_step: int = 0  # TOTP: highest time step accepted (replay refusal)
    credential_id: str | None = Field(default=None, max_length=1400, unique=True)
    public_key: str = ""  # WebAuthn: COSE public key, base64url
    sign_count: int = 0
    transports: list[str] = list_field()
    attachment: str = Field(default="", max_length=32)
    aaguid: str = Field(default="", max_length=36)
    user_verified: bool = False
    confirmed_at: datetime | None = when_field()
    created_at: datetime = created_field()
    last_used_at: datetime | None = when_field()


class RecoveryCode(SQLModel, table=True):
    """A single-use recovery code: an HMAC of it (keyed by the broker key), never the code."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    code_hash: str = Field(max_length=64)
    created_at: datetime = created_field()
    used_at: datetime | None = when_field()


class MfaChallenge(SQLModel, table=True):
    """A pending ceremony: an emailed/SMS code (hashed) or a WebAuthn challenge.

    Bounded by ``expires_at`` and ``attempts``; consumed once (``used_at``)."""

    id: str = Field(default_factory=new_id, primary_key=True)
    workspace_id: str = workspace_field()
    user_id: str = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    factor_id: str | None = Field(default=None, foreign_key="mfafactor.id", ondelete="CASCADE")
    purpose: str = Field(max_length=64)
    secret_hash: str = Field(default="", max_length=64)
    challenge: str = Field(default="", max_length=200)
    attempts: int = 0
    created_at: datetime = created_field()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = when_field()
