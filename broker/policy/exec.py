"""Exec-mode commands (API exec, deploy scripts): decided exactly, then run.

Unlike a terminal, where the broker reconstructs what a person typed, an exec request
carries the exact text the agent will hand to the user's shell with ``-c``. So the
decision here is exact: the line is decided as a :class:`~policies.CommandRequest` with
the access level already resolved (policy file + stored grants), and only an ``allow``
is sent to :meth:`AgentHub.exec`. A ``require_mfa`` is refused with what is needed. A
``require_approval`` is refused too, unless the caller passes an ``approvals`` waiter (the
streaming exec route does when asked to wait): then the command is held as an approval
request, like a terminal line, and runs only once approved; denied or timed out, it is
refused. Every decision is audited
as ``exec.command`` with the same details as a terminal's ``session.command`` so
``corral policy replay`` reads both.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from broker.agents.errors import AgentOffline
from broker.agents.hub import AgentHub
from broker.audit import Actor, Category, Outcome
from broker.enforce.approvals import ApprovalRequest, ApprovalWaiter
from broker.errors import CorralError
from broker.gateway.access import PolicyAccessResolver
from broker.policy.mfa import MfaAges
from broker.policy.subjects import server_of, subject_of
from broker.services import Services
from broker.store.models import Server, User
from policies import CommandRequest, Decision, Effect, PolicyEngine

__all__ = ["EXEC_ACTION", "ExecFailed", "ExecGate", "ExecOutput", "ExecRefused"]

EXEC_ACTION = "exec.command"


class ExecFailed(CorralError):
    """The agent is connected but could not run the command (e.g. no such unix user)."""


class ExecRefused(CorralError):
    """The policy did not allow the command; ``decision`` says why and what is needed."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"{decision.rule_id}: {decision.reason}")
        self.decision = decision


@dataclass(frozen=True)
class ExecOutput:
    exit_status: int | None
    signal: int | None
    timed_out: bool
    stdout: bytes
    stderr: bytes
    decision: Decision


class ExecGate:
    def __init__(
        self,
        services: Services,
        hub: AgentHub,
        policy: Callable[[], PolicyEngine],
        mfa: MfaAges,
        *,
        resolver: PolicyAccessResolver | None = None,
    ) -> None:
        self.services = services
        self.hub = hub
        self.policy = policy
        self.mfa = mfa
        self.resolver = resolver or PolicyAccessResolver(services, policy)

    async def decide(
        self, workspace_id: str, user: User, server: Server, command: str, unix_user: str
    ) -> Decision:
        grant = await self.resolver.resolve(workspace_id, user, server)
        age = await self.mfa.mfa_age(workspace_id, user.id)
        subject = await subject_of(self.services, workspace_id, user, mfa_age_seconds=age)
        target = await server_of(self.services, workspace_id, server)
        return self.policy().decide(
            CommandRequest(subject, target, command, unix_user=unix_user, grant=grant)
        )

    async def run(
        self,
        workspace_id: str,
        user: User,
        server: Server,
        command: str,
        *,
        unix_user: str,
        timeout: float,
        actor: Actor,
        on_start: Callable[[], None] | None = None,
        on_output: Callable[[str, bytes], Awaitable[None]] | None = None,
        approvals: ApprovalWaiter | None = None,
        on_held: Callable[[Decision], Awaitable[None]] | None = None,
    ) -> ExecOutput:
        """Decide, audit, and run only if allowed; raises :class:`ExecRefused` otherwise,
        :class:`AgentOffline` when the agent is gone and :class:`ExecFailed` when it could
        not start the command (all audited).

        For streaming callers: ``on_start`` is called once the policy allowed the command,
        ``on_output`` receives the output as it arrives (then none is collected), and a
        cancelled run (the client went away) is audited as a failure. With ``approvals``,
        a command that needs an approval waits for one (``on_held`` is told first)."""
        decision = await self.decide(workspace_id, user, server, command, unix_user)
        details: dict[str, Any] = {
            "command": command,
            "effect": str(decision.effect),
            "rule_id": decision.rule_id,
            "reason": decision.reason,
            "policy_version": decision.version,
            "unix_user": unix_user,
        }
        if decision.effect is Effect.REQUIRE_APPROVAL and approvals is not None:
            if on_held is not None:
                await on_held(decision)
            request = ApprovalRequest(
                workspace_id=workspace_id,
                requester_id=user.id,
                command=command,
                approvers=decision.approvers,
                rule_id=decision.rule_id,
                reason=decision.reason,
                server_id=server.id,
            )
            approved = await approvals.wait(request)
            details["approval"] = "approved" if approved else "denied or timed out"
            if not approved:
                await self._audit(workspace_id, server, actor, details, Outcome.DENIED)
                raise ExecRefused(
                    dataclasses.replace(
                        decision,
                        effect=Effect.DENY,
                        reason="the approval was denied or timed out",
                    )
                )
        elif decision.effect is not Effect.ALLOW:
            await self._audit(workspace_id, server, actor, details, Outcome.DENIED)
            raise ExecRefused(decision)
        if on_start is not None:
            on_start()
        try:
            result = await self.hub.exec(
                workspace_id,
                server.id,
                command,
                user=unix_user,
                timeout=timeout,
                on_output=on_output,
            )
        except asyncio.CancelledError:
            details["error"] = "cancelled: the client went away"
            # Shielded: a second cancellation must not lose the audit event.
            await asyncio.shield(self._audit(workspace_id, server, actor, details, Outcome.FAILURE))
            raise
        except AgentOffline as exc:
            details["error"] = str(exc)[:200]
            await self._audit(workspace_id, server, actor, details, Outcome.FAILURE)
            if server.id in self.hub.links:  # still connected: the agent refused to run it
                raise ExecFailed(f"the agent could not run the command: {str(exc)[:200]}") from None
            raise
        details["exit_status"] = result.exit.status
        await self._audit(workspace_id, server, actor, details, Outcome.SUCCESS)
        return ExecOutput(
            result.exit.status,
            result.exit.signal,
            bool(result.exit.timed_out),
            result.stdout,
            result.stderr,
            decision,
        )

    async def _audit(
        self,
        workspace_id: str,
        server: Server,
        actor: Actor,
        details: dict[str, Any],
        outcome: Outcome,
    ) -> None:
        await self.services.audit.emit(
            workspace_id,
            Category.RESOURCE_ACCESS,
            EXEC_ACTION,
            outcome=outcome,
            actor=actor,
            server_id=server.id,
            target=server.name,
            details=details,
        )
