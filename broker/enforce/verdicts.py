"""The broker's :class:`~broker.enforce.gate.Verdicts`: policy decisions, step-up MFA and
approvals for one terminal session.

The person and the server are turned into policy values once per session
(``subject_of``/``server_of``); each command only adds the current MFA age and asks the
policy engine in force *now* (the getter), so a hot reload applies from the next Enter.

The session's access level was settled when it opened (the access resolver may combine
the policy file's grants with grants stored through the API). When the policy file alone
would give this person less than that, its level check would deny every command of a
session the broker legitimately opened; the command rules are then applied under the
session's level instead (same rules, same precedence, same version). It must never widen
a level: a policy that grants more than the session's level is used as it is.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

from broker.enforce.approvals import ApprovalRequest, ApprovalWaiter
from broker.policy import server_of, subject_of
from broker.services import Services
from broker.store.models import Server, User
from policies import (
    AccessLevel,
    CommandRequest,
    Decision,
    PolicyEngine,
    RuleEngine,
    SimpleCommand,
    Subject,
)
from policies import Server as PolicyServer
from policies.compiled import CompiledSource
from policies.engine import RuleSource
from policies.model import LEVEL_RANK
from policies.rules import Hit, PolicyData

__all__ = ["BrokerVerdicts", "NoStepUp", "StepUp"]


class StepUp(Protocol):
    """Checks a one-time code typed in the terminal (TOTP lives in ``idp/``)."""

    async def verify(self, workspace_id: str, user_id: str, code: str) -> bool: ...


class NoStepUp:
    """No step-up method configured: every code is refused (fail closed)."""

    async def verify(self, workspace_id: str, user_id: str, code: str) -> bool:
        return False


MfaAge = Callable[[], float | None]


class BrokerVerdicts:
    def __init__(
        self,
        policy: Callable[[], PolicyEngine],
        services: Services,
        *,
        workspace_id: str,
        user: User,
        server: Server,
        unix_user: str,
        session_id: str,
        level: str,
        step_up: StepUp,
        approvals: ApprovalWaiter,
        mfa_age: MfaAge = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.services = services
        self.workspace_id = workspace_id
        self.user = user
        self.server = server
        self.unix_user = unix_user
        self.session_id = session_id
        self.level = AccessLevel(level)
        self._step_up = step_up
        self._approvals = approvals
        self._mfa_age = mfa_age
        self._clock = clock
        self._stepped_up_at: float | None = None
        self._subject: Subject | None = None
        self._server: PolicyServer | None = None
        self._leveled: tuple[str, RuleEngine] | None = None

    async def _values(self) -> tuple[Subject, PolicyServer]:
        if self._subject is None or self._server is None:
            self._subject = await subject_of(self.services, self.workspace_id, self.user)
            self._server = await server_of(self.services, self.workspace_id, self.server)
        return self._subject, self._server

    def mfa_age(self) -> float | None:
        """Seconds since the last MFA: the login's, or a step-up done in this session."""
        ages = [a for a in (self._mfa_age(),) if a is not None]
        if self._stepped_up_at is not None:
            ages.append(self._clock() - self._stepped_up_at)
        return min(ages) if ages else None

    async def decide(self, line: str) -> Decision:
        subject, server = await self._values()
        subject = dataclasses.replace(subject, mfa_age_seconds=self.mfa_age())
        request = CommandRequest(subject, server, line, unix_user=self.unix_user)
        engine = self.policy()
        if LEVEL_RANK[engine.access_level(subject, server)] < LEVEL_RANK[self.level]:
            leveled = self._under_session_level(engine)
            if leveled is not None:
                return leveled.decide(request)
        return engine.decide(request)

    def _under_session_level(self, engine: PolicyEngine) -> RuleEngine | None:
        data_of = getattr(engine, "policy_data", None)
        if data_of is None:
            return None
        if self._leveled is None or self._leveled[0] != engine.version:
            source = _SessionLevel(CompiledSource(data_of()), self.level)
            self._leveled = (engine.version, RuleEngine(source, engine.version))
        return self._leveled[1]

    async def step_up(self, code: str) -> bool:
        ok = await self._step_up.verify(self.workspace_id, self.user.id, code.strip())
        if ok:
            self._stepped_up_at = self._clock()
        return ok

    async def approval(self, line: str, decision: Decision) -> bool:
        return await self._approvals.wait(
            ApprovalRequest(
                workspace_id=self.workspace_id,
                requester_id=self.user.id,
                command=line,
                approvers=decision.approvers,
                rule_id=decision.rule_id,
                reason=decision.reason,
                server_id=self.server.id,
                session_id=self.session_id,
            )
        )


class _SessionLevel:
    """A :class:`RuleSource` whose grant is the session's level; every rule as loaded."""

    def __init__(self, inner: RuleSource, level: AccessLevel) -> None:
        self.inner = inner
        self.level = level

    def policy_data(self) -> PolicyData:
        return self.inner.policy_data()

    def grant(self, subject: Subject, server: PolicyServer) -> tuple[AccessLevel, str]:
        return self.level, f"session.level.{self.level.value}"

    def command_hit(self, subject: Subject, server: PolicyServer, cmd: SimpleCommand) -> Hit | None:
        return self.inner.command_hit(subject, server, cmd)

    def session_hit(self, subject: Subject, server: PolicyServer, level: AccessLevel) -> Hit | None:
        return self.inner.session_hit(subject, server, level)

    def permission(self, subject: Subject, action: str) -> str | None:
        return self.inner.permission(subject, action)

    def action_hit(self, subject: Subject, action: str) -> Hit | None:
        return self.inner.action_hit(subject, action)

    def unresolved(self) -> Hit:
        return self.inner.unresolved()
