"""The broker's exceptions: one root, translated to the peer's terms at each boundary.

    CorralError                     root of everything the broker raises on purpose
    ├── SettingsError               a setting is unknown or has a bad value (names it)
    ├── StoreError                  the database is unreachable, too old, or too new
    ├── NotFound                    no such row *in this workspace* (never says whether
    │                               it exists elsewhere)
    ├── Conflict                    a unique name is taken, or a state change is not allowed
    ├── InvalidInput                a value a caller passed is malformed
    ├── AuthenticationFailed        a credential is unknown, expired, revoked or wrong
    ├── AuditError                  the audit chain cannot be appended to
    └── PolicyRefused               the configured policy does not load (file:line)

Messages are written for the person who has to act on them: they name the setting, the
row kind or the credential, and never include secrets or SQL.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "AuthenticationFailed",
    "Conflict",
    "CorralError",
    "InvalidInput",
    "NotFound",
    "PolicyRefused",
    "SettingsError",
    "StoreError",
]


class CorralError(Exception):
    """Root of every error the broker raises on purpose; its message is safe to show."""


class SettingsError(CorralError):
    """A setting is unknown or its value is invalid; the message names the setting."""


class StoreError(CorralError):
    """The database cannot be used: unreachable, wrong version or not Corral's."""


class NotFound(CorralError):
    """The row does not exist in the caller's workspace."""

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident!s} not found")
        self.kind = kind
        self.ident = ident


class Conflict(CorralError):
    """A unique value is already taken, or the change is not allowed in this state."""


class InvalidInput(CorralError):
    """A value passed by a caller is malformed."""


class AuthenticationFailed(CorralError):
    """A credential is unknown, expired, revoked or does not match."""


class AuditError(CorralError):
    """An audit event could not be appended to the chain."""


class PolicyRefused(CorralError):
    """The configured policy file does not load; the message is ``file:line: reason``."""
