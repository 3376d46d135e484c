"""Plugging a :class:`CommandGate` into a live session: how it sends, shows, audits, marks.

Kept out of ``broker/gateway/session.py`` so the session only knows "there may be a gate":
input goes through it, output is shown to it, and text it injects (denials, prompts for a
code) reaches every client and the recording like shell output.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from broker.agents.wire import Closed
from broker.audit import Actor, Category, Outcome
from broker.enforce.gate import CommandGate, Verdicts
from broker.enforce.tracker import LineTracker
from broker.errors import CorralError
from policies import Decision
from websh import Input

if TYPE_CHECKING:
    from broker.gateway.session import LiveSession

__all__ = ["COMMAND_ACTION", "gate_for"]

#: The audit action of a decided terminal command (``corral policy replay`` reads it).
COMMAND_ACTION = "session.command"


def gate_for(session: LiveSession, verdicts: Verdicts, *, cols: int) -> CommandGate:
    wire = session.channel.wire  # DataChannel.send is this wire's send, one frame less per key

    async def send(data: bytes) -> None:  # every keystroke: no context manager
        if session.final is None:
            try:  # noqa: SIM105 (contextlib.suppress costs a context manager per key)
                await wire.send(Input(data=data))
            except Closed:
                pass

    def show(data: bytes) -> None:
        session._output(data, injected=True)

    async def audit(command: str, decision: Decision, ran: bool) -> None:
        with contextlib.suppress(CorralError):
            await session.services.audit.emit(
                session.workspace_id,
                Category.RESOURCE_ACCESS,
                COMMAND_ACTION,
                outcome=Outcome.SUCCESS if ran else Outcome.DENIED,
                actor=Actor("user", session.user_id, session.credential_id),
                server_id=session.server_id,
                session_id=session.id,
                details={
                    "command": command,
                    "effect": decision.effect.value,
                    "rule_id": decision.rule_id,
                    "reason": decision.reason,
                    "policy_version": decision.version,
                },
            )

    gate = CommandGate(
        LineTracker(cols),
        verdicts,
        send=send,
        show=show,
        audit=audit,
        mark=session.recorder.marker,
    )
    gate.start()
    return gate
