"""The one interface the broker calls, and the decision flow every backend shares.

A backend only answers narrow questions (which grant matches, which rule fires for one
simple command); :class:`RuleEngine` turns those answers into a :class:`Decision` with the
same precedence everywhere: the access level gates first, then every simple command of
the line is decided and the strictest outcome wins (deny > require_approval >
require_mfa > allow); ties go to the first command, then to the first rule in the file.
Keeping the flow here is what lets Polar, Casbin and the compiled path agree.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from policies.commands import SimpleCommand, parse_command_line
from policies.errors import CommandParseError
from policies.model import (
    LEVEL_RANK,
    AccessLevel,
    ActionRequest,
    CommandRequest,
    Decision,
    Effect,
    Request,
    Server,
    SessionRequest,
    Subject,
)
from policies.rules import Hit, PolicyData

__all__ = ["NO_GRANT", "PolicyEngine", "RuleEngine", "RuleSource", "strictest"]

#: Rule id reported when no grant matches: the server is invisible.
NO_GRANT = "access.no-grant"


@runtime_checkable
class PolicyEngine(Protocol):
    """What the broker needs from a policy: decisions, levels and the version in force."""

    @property
    def version(self) -> str: ...

    def decide(self, request: Request) -> Decision: ...

    def access_level(self, subject: Subject, server: Server) -> AccessLevel: ...

    def access(self, subject: Subject, server: Server) -> tuple[AccessLevel, str]:
        """The level and the id of the grant that decided it (:data:`NO_GRANT` if none)."""
        ...


class RuleSource(Protocol):
    """The questions a backend answers; each returns the first winner by file order."""

    def policy_data(self) -> PolicyData: ...

    def grant(self, subject: Subject, server: Server) -> tuple[AccessLevel, str]: ...

    def command_hit(self, subject: Subject, server: Server, cmd: SimpleCommand) -> Hit | None: ...

    def session_hit(self, subject: Subject, server: Server, level: AccessLevel) -> Hit | None: ...

    def permission(self, subject: Subject, action: str) -> str | None: ...

    def action_hit(self, subject: Subject, action: str) -> Hit | None: ...

    def unresolved(self) -> Hit: ...


def strictest(hits: list[Hit]) -> Hit | None:
    """The strictest hit; on equal effect the earliest one (stable)."""
    best: Hit | None = None
    for h in hits:
        if best is None or h.effect.rank > best.effect.rank:
            best = h
    return best


class RuleEngine:
    """A :class:`PolicyEngine` over any :class:`RuleSource`."""

    def __init__(self, source: RuleSource, version: str) -> None:
        self.source = source
        self._version = version

    @property
    def version(self) -> str:
        return self._version

    def policy_data(self) -> PolicyData:
        return self.source.policy_data()

    def access_level(self, subject: Subject, server: Server) -> AccessLevel:
        return self.source.grant(subject, server)[0]

    def access(self, subject: Subject, server: Server) -> tuple[AccessLevel, str]:
        return self.source.grant(subject, server)

    def decide(self, request: Request) -> Decision:
        if isinstance(request, CommandRequest):
            return self._command(request)
        if isinstance(request, SessionRequest):
            return self._session(request)
        return self._action(request)

    def _decision(self, hit: Hit) -> Decision:
        return Decision(
            hit.effect, hit.rule_id, hit.reason, self._version, hit.approvers, hit.mfa_within
        )

    def _deny(self, rule_id: str, reason: str) -> Decision:
        return Decision(Effect.DENY, rule_id, reason, self._version)

    def _command(self, req: CommandRequest) -> Decision:
        level, grant_id = req.grant or self.source.grant(req.subject, req.server)
        if level is AccessLevel.NONE:
            return self._deny(grant_id, f"no access to {req.server.name}")
        if level is AccessLevel.READ_ONLY:
            return self._deny(grant_id, "read-only access: server info and metrics only")
        try:
            parsed = parse_command_line(req.command)
        except CommandParseError as exc:
            return self._deny("parser.limit", str(exc))
        if (req.sudo or req.unix_user == "root" or parsed.privileged) and (
            level is not AccessLevel.FULL
        ):
            return self._deny(grant_id, "sudo and root need full access")
        hits: list[Hit] = []
        for cmd in parsed.commands:
            hit = self.source.command_hit(req.subject, req.server, cmd)
            if hit is not None:
                if hit.effect is Effect.DENY:
                    return self._decision(hit)
                hits.append(hit)
        if parsed.unresolved:
            default = self.source.unresolved()
            hits.append(
                Hit(
                    default.effect,
                    default.rule_id,
                    f"{default.reason} ({parsed.unresolved[0]})",
                    default.approvers,
                    default.mfa_within,
                )
            )
        best = strictest(hits)
        if best is None or best.effect is Effect.ALLOW:
            return Decision(Effect.ALLOW, grant_id, f"{level.value} access", self._version)
        return self._decision(best)

    def _session(self, req: SessionRequest) -> Decision:
        level, grant_id = self.source.grant(req.subject, req.server)
        if LEVEL_RANK[level] < LEVEL_RANK[req.level] or level is AccessLevel.NONE:
            return self._deny(grant_id, f"{level.value} access; {req.level.value} needed")
        hit = self.source.session_hit(req.subject, req.server, req.level)
        if hit is not None:
            return self._decision(hit)
        return Decision(Effect.ALLOW, grant_id, f"{level.value} access", self._version)

    def _action(self, req: ActionRequest) -> Decision:
        perm = self.source.permission(req.subject, req.action)
        if perm is None:
            return self._deny(
                "role.not-permitted", f"role {req.subject.role.value} may not {req.action}"
            )
        hit = self.source.action_hit(req.subject, req.action)
        if hit is not None:
            return self._decision(hit)
        return Decision(Effect.ALLOW, perm, f"permitted to {req.subject.role.value}", self._version)
