"""``POST /api/v1/servers/{server}/exec/stream``: the exec call with its output streamed as
NDJSON while the command runs (what ``corral exec`` uses, like ``ssh host cmd``).

The policy decides before anything is sent, so every refusal is still a problem+json
answer with its status (403 policy-denied / mfa-required, 409 approval-required, 404,
503). With ``"wait_for_approval": true`` a command that needs an approval is held
instead, as a terminal line is: the answer starts at once (200) with one line
``{"approval": {"status": "pending", "rule_id", "reason", "approvers"}}``, then the
command runs if someone approves within the approval timeout, else the last line is
``{"error": {"code": "approval-denied", ...}}``.
Once the command is allowed the answer is 200 ``application/x-ndjson``: lines
``{"stdout": "..."}`` / ``{"stderr": "..."}`` (UTF-8 decoded per stream, so a character
split between chunks is not mangled), then one final line, either ``{"exit_status",
"signal", "timed_out", "rule_id", "policy_version"}`` or ``{"error": {"code", "detail"}}``
when the agent failed mid-way. A client that goes away cancels the command (audited).
A slow reader slows the agent's channel down rather than filling the broker's memory.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, Route

from api.auth import authenticate
from api.authz import authorize
from api.decisions import decision_problem
from api.policy import MAX_TIMEOUT, ExecFailedProblem
from api.problems import BadRequest
from api.sessions import AgentUnavailable, gateway_of
from api.spec import Model, body_of, operation
from api.state import hub_of, runtime_of, services_of
from broker.agents.errors import AgentOffline
from broker.policy.exec import ExecFailed, ExecGate, ExecOutput, ExecRefused
from policies import Decision
from policies.commands import MAX_LENGTH

__all__ = ["exec_stream_routes"]

QUEUE_CHUNKS = 64
_ending: set[asyncio.Task[ExecOutput]] = set()  # cancelled runs still finishing (kept from GC)
NDJSON = "application/x-ndjson"


class ExecIn(Model):
    command: str = Field(min_length=1, max_length=MAX_LENGTH)
    unix_user: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
    timeout: float = Field(default=60, ge=1, le=MAX_TIMEOUT)
    wait_for_approval: bool = False
    """Hold a command that needs an approval until someone decides (else 409 at once)."""


class ExecLine(BaseModel):
    """One NDJSON line: exactly one of the groups below is present."""

    stdout: str | None = None
    stderr: str | None = None
    exit_status: int | None = None
    signal: int | None = None
    timed_out: bool | None = None
    rule_id: str | None = None
    policy_version: str | None = None
    error: dict[str, str] | None = None
    approval: dict[str, Any] | None = None
    """First line of a held command: ``status``, ``rule_id``, ``reason``, ``approvers``."""


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _failure(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ExecRefused):  # only after a hold: the approval did not come
        return {"error": {"code": "approval-denied", "detail": exc.decision.reason}}
    if isinstance(exc, ExecFailed):
        return {"error": {"code": "exec-failed", "detail": str(exc)[:300]}}
    if isinstance(exc, AgentOffline):
        return {"error": {"code": "agent-offline", "detail": "the agent went away"}}
    return {"error": {"code": "internal", "detail": "the command's outcome is unknown"}}


@operation(
    summary="Run one command on a server, streaming its output",
    tag="servers",
    body=ExecIn,
    ok=ExecLine,
    scope="write",
    media_type=NDJSON,
    errors=(400, 403, 404, 409, 503),
)
async def exec_stream(request: Request) -> StreamingResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "servers.connect", request.path_params["server"][:128])
    body = await body_of(request, ExecIn)
    if "\0" in body.command:
        raise BadRequest("command must not contain NUL")
    gateway = gateway_of(request.app)
    server = await gateway.find_server(principal.workspace_id, request.path_params["server"])
    gate = ExecGate(
        services, hub_of(request), runtime_of(request).policy.engine, request.app.state.mfa
    )
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
    started = asyncio.Event()
    held: list[bytes] = []

    async def sink(stream: str, data: bytes) -> None:
        await queue.put((stream, data))

    async def on_held(decision: Decision) -> None:
        pending = {
            "status": "pending",
            "rule_id": decision.rule_id,
            "reason": decision.reason,
            "approvers": list(decision.approvers),
        }
        held.append(_line({"approval": pending}))
        started.set()  # answer now: the client sees that it waits, and for whom

    run = asyncio.create_task(
        gate.run(
            principal.workspace_id,
            principal.user,
            server,
            body.command,
            unix_user=body.unix_user,
            timeout=body.timeout,
            actor=principal.actor,
            on_start=started.set,
            on_output=sink,
            approvals=gateway.approvals if body.wait_for_approval else None,
            on_held=on_held,
        )
    )
    allowed = asyncio.create_task(started.wait())
    await asyncio.wait({run, allowed}, return_when=asyncio.FIRST_COMPLETED)
    allowed.cancel()
    if not started.is_set():
        try:
            run.result()
        except ExecRefused as refused:
            raise decision_problem(refused.decision) from None
        except AgentOffline:
            raise AgentUnavailable("the server's agent is not connected; try again") from None
        except ExecFailed as exc:
            raise ExecFailedProblem(str(exc)) from None
    return StreamingResponse(_stream(run, queue, held), media_type=NDJSON)


async def _stream(
    run: asyncio.Task[ExecOutput], queue: asyncio.Queue[tuple[str, bytes]], first: list[bytes]
) -> AsyncIterator[bytes]:
    decoders = {
        name: codecs.getincrementaldecoder("utf-8")(errors="replace")
        for name in ("stdout", "stderr")
    }
    get: asyncio.Task[tuple[str, bytes]] | None = None
    try:
        for line in first:  # a held command's approval line
            yield line
        while True:
            if queue.empty() and run.done():
                break
            get = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({get, run}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                continue
            stream, data = get.result()
            text = decoders[stream].decode(data)
            if text:
                yield _line({stream: text})
        for stream, decoder in decoders.items():
            tail = decoder.decode(b"", final=True)
            if tail:
                yield _line({stream: tail})
        error = run.exception()
        if error is not None:
            yield _line(_failure(error))
            return
        out = run.result()
        yield _line(
            {
                "exit_status": out.exit_status,
                "signal": out.signal,
                "timed_out": out.timed_out,
                "rule_id": out.decision.rule_id,
                "policy_version": out.decision.version,
            }
        )
    finally:
        if get is not None and not get.done():
            get.cancel()
        if not run.done():
            # Not awaited here: this generator is itself being cancelled, and awaiting would
            # cancel the run again mid-way through its audit. It ends on its own.
            run.cancel()
            _ending.add(run)
            run.add_done_callback(_ending.discard)


def exec_stream_routes() -> list[BaseRoute]:
    return [Route("/api/v1/servers/{server}/exec/stream", exec_stream, methods=["POST"])]
