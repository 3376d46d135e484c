"""Typed requests and decisions: the vocabulary shared by every engine.

Everything here is a frozen, hashable value so decisions can be compared across
backends (the differential tests) and requests can key caches. This module must never
import an engine or the store: the broker builds these values from its rows.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "LEVEL_RANK",
    "AccessLevel",
    "ActionRequest",
    "CommandRequest",
    "Decision",
    "Effect",
    "Request",
    "Role",
    "Server",
    "SessionRequest",
    "Subject",
]


class Role(enum.StrEnum):
    """Workspace roles; the same values as ``broker.store.models.Role``.

    Declared here because ``policies`` sits below ``broker`` and must not import it;
    both are ``StrEnum`` so members compare equal across the two (a test pins it).
    """

    USER = "user"
    STAFF = "staff"
    SUPERUSER = "superuser"


class AccessLevel(enum.StrEnum):
    """Per-server access; the same values as ``broker.store.models.AccessLevel``."""

    NONE = "none"
    READ_ONLY = "read-only"
    TERMINAL = "terminal"
    FULL = "full"


#: Access levels in increasing order of power; ``none`` hides the server entirely.
LEVEL_RANK: Mapping[AccessLevel, int] = {
    AccessLevel.NONE: 0,
    AccessLevel.READ_ONLY: 1,
    AccessLevel.TERMINAL: 2,
    AccessLevel.FULL: 3,
}


class Effect(enum.StrEnum):
    """What happens to a request; ``rank`` orders them from permissive to strict."""

    ALLOW = "allow"
    REQUIRE_MFA = "require_mfa"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"

    @property
    def rank(self) -> int:
        return _EFFECT_RANK[self]


_EFFECT_RANK = {
    Effect.ALLOW: 0,
    Effect.REQUIRE_MFA: 1,
    Effect.REQUIRE_APPROVAL: 2,
    Effect.DENY: 3,
}


@dataclass(frozen=True, slots=True)
class Subject:
    """The person (or service account) asking.

    ``mfa_age_seconds`` is the time since the last successful MFA of this login, or
    ``None`` when there was none: step-up rules compare it with their window.
    """

    user_id: str
    role: Role = Role.USER
    groups: tuple[str, ...] = ()
    mfa_age_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Server:
    """A host as policy sees it: its name, server groups and ``key=value`` tags."""

    name: str
    groups: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls, name: str, groups: tuple[str, ...] = (), tags: Mapping[str, str] | None = None
    ) -> Server:
        """Build from the store's ``dict`` tags (kept as sorted pairs to stay hashable)."""
        return cls(name, tuple(groups), tuple(sorted((tags or {}).items())))

    def tag(self, key: str) -> str | None:
        for k, v in self.tags:
            if k == key:
                return v
        return None


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """Open a session on ``server`` needing ``level`` (read-only: info and metrics;
    terminal: commands; full: sudo, file transfer, deploy)."""

    subject: Subject
    server: Server
    level: AccessLevel


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """Run ``command`` (one line, as the shell will see it) as ``unix_user``.

    ``sudo`` is set when the session itself is privileged (e.g. a root login through a
    sudo channel); ``sudo`` inside the line is found by the parser. ``grant`` is the
    (level, grant id) the broker already resolved for this subject and server, e.g. the
    policy's grants combined with the grants stored through the API; ``None`` lets the
    policy's own grants decide the level.
    """

    subject: Subject
    server: Server
    command: str
    unix_user: str = "user"
    sudo: bool = False
    grant: tuple[AccessLevel, str] | None = None


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """A management action on the workspace, e.g. ``users.invite`` or ``policy.update``."""

    subject: Subject
    action: str


Request = SessionRequest | CommandRequest | ActionRequest


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer, with enough context to explain and audit it.

    ``rule_id`` names the rule (or grant, or built-in check) that decided; ``version`` is
    the SHA-256 of the policy text, so an audit record pins the exact policy in force.
    """

    effect: Effect
    rule_id: str
    reason: str
    version: str
    approvers: tuple[str, ...] = ()
    mfa_within: int | None = None

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW
