"""The broker's :class:`~broker.enforce.gate.Verdicts`: policy decisions, step-up MFA and
approvals for one terminal session.

The person and the server are turned into policy values once per session
(``subject_of``/``server_of``); each command only adds the current MFA age and asks the
policy engine in force *now* (the getter), so a hot reload applies from the next Enter.

The level each command is decided under is resolved again at every Enter (``grant``, the
same resolver the session was opened with: the policy file's grants combined with those
stored through the API), so a revoked grant or a reload that lowers the level applies to
the very next command, not only at the next open.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from broker.enforce.approvals import ApprovalRequest, ApprovalWaiter
from broker.policy import server_of, subject_of
from broker.services import Services
from broker.store.models import Server, User
from policies import AccessLevel, CommandRequest, Decision, PolicyEngine, Subject
from policies import Server as PolicyServer

__all__ = ["BrokerVerdicts", "NoStepUp", "StepUp"]


class StepUp(Protocol):
    """Checks a one-time code typed in the terminal (TOTP lives in ``idp/``)."""

    async def verify(self, workspace_id: str, user_id: str, code: str) -> bool: ...


class NoStepUp:
    """No step-up method configured: every code is refused (fail closed)."""

    async def verify(self, workspace_id: str, user_id: str, code: str) -> bool:
        return False


MfaAge = Callable[[], Awaitable[float | None]]
#: The (level, grant id) this person has on this server right now.
Grant = Callable[[], Awaitable[tuple[AccessLevel, str]]]


async def _never() -> float | None:
    return None


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
        grant: Grant,
        step_up: StepUp,
        approvals: ApprovalWaiter,
        mfa_age: MfaAge | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.services = services
        self.workspace_id = workspace_id
        self.user = user
        self.server = server
        self.unix_user = unix_user
        self.session_id = session_id
        self.grant = grant
        self._step_up = step_up
        self._approvals = approvals
        self._mfa_age = mfa_age or _never
        self._clock = clock
        self._stepped_up_at: float | None = None
        self._subject: Subject | None = None
        self._server: PolicyServer | None = None

    async def _values(self) -> tuple[Subject, PolicyServer]:
        if self._subject is None or self._server is None:
            self._subject = await subject_of(self.services, self.workspace_id, self.user)
            self._server = await server_of(self.services, self.workspace_id, self.server)
        return self._subject, self._server

    async def mfa_age(self) -> float | None:
        """Seconds since the last MFA: the person's (identity's record), or a step-up done
        in this session."""
        ages = [a for a in (await self._mfa_age(),) if a is not None]
        if self._stepped_up_at is not None:
            ages.append(self._clock() - self._stepped_up_at)
        return min(ages) if ages else None

    async def decide(self, line: str) -> Decision:
        subject, server = await self._values()
        subject = dataclasses.replace(subject, mfa_age_seconds=await self.mfa_age())
        request = CommandRequest(
            subject, server, line, unix_user=self.unix_user, grant=await self.grant()
        )
        return self.policy().decide(request)

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
