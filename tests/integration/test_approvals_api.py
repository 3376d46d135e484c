"""Approvals through the API with live events: an approver hears about a held terminal
line over Server-Sent Events, decides it over REST, and the line runs or is discarded;
people who may not decide are refused; undecided requests are closed, not left pending."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.enforce import ApprovalDesk
from broker.store.models import ApprovalStatus, Role
from tests.integration import enforce_support as support
from tests.integration import test_sessions_gateway as gateway_tests
from tests.integration.test_enforcement import finish, terminal
from tests.integration.test_sessions_gateway import Env, _audit, _auth

pytestmark = pytest.mark.slow

env = gateway_tests.env  # the fixture: a broker, a registered agent and an admin token


@pytest.fixture
async def desk(env: Env) -> AsyncIterator[ApprovalDesk]:
    app = env.broker.server.config.app  # type: ignore[union-attr]
    approvals = ApprovalDesk(env.services, timeout=20.0)
    gateway, _, _ = support.enforcing_gateway(
        env.services,
        env.broker.hub,
        env.broker.runtime.settings.data_dir / "recordings",
        approvals=approvals,
    )
    app.state.gateway = gateway
    yield approvals
    support.cleanup_matching("corral-approve-api-*")


class Events:
    """A live ``GET /api/v1/events`` stream, parsed as it arrives."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def follow(self, http: httpx.AsyncClient, token: str) -> None:
        async with http.stream("GET", "/api/v1/events", headers=_auth(token)) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    self.received.append(json.loads(line[6:]))
                    self.arrived.set()

    async def next(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        async def loop() -> dict[str, Any]:
            while True:
                for event in self.received:
                    if event["type"] == kind:
                        self.received.remove(event)
                        return event
                self.arrived.clear()
                await self.arrived.wait()

        return await asyncio.wait_for(loop(), timeout)


async def test_approver_hears_decides_and_the_line_runs(env: Env, desk: ApprovalDesk) -> None:
    _, approver = await env.token("approver@example.com", role=Role.STAFF)
    _, bystander = await env.token("bystander@example.com", role=Role.STAFF)
    _, stranger = await env.token("stranger@example.com")
    events = Events()
    follower = asyncio.create_task(events.follow(env.http, approver))
    try:
        await asyncio.sleep(0.3)
        sid, term = await terminal(env)
        yes, no = Path("/tmp/corral-approve-api-yes"), Path("/tmp/corral-approve-api-no")

        await term.type(f"touch {yes}\r")
        requested = (await events.next("approval.requested"))["approval"]
        assert requested["command"] == f"touch {yes}" and requested["status"] == "pending"
        approval_id = requested["id"]

        # Only the people it concerns see it; only a named approver may decide it.
        pending = await env.http.get(
            "/api/v1/approvals", params={"status": "pending"}, headers=_auth(env.admin_token)
        )
        assert [a["id"] for a in pending.json()["approvals"]] == [approval_id]
        hidden = await env.http.get(f"/api/v1/approvals/{approval_id}", headers=_auth(stranger))
        assert hidden.status_code == 404
        assert (await env.http.get("/api/v1/approvals", headers=_auth(stranger))).json() == {
            "approvals": []
        }
        for token in (bystander, env.admin_token):  # staff, but not named; the requester
            refused = await env.http.post(
                f"/api/v1/approvals/{approval_id}/approve", headers=_auth(token)
            )
            assert refused.status_code == 409
            assert refused.headers["content-type"] == "application/problem+json"
        bad = await env.http.post(
            f"/api/v1/approvals/{approval_id}/approve", json={"reason": 5}, headers=_auth(approver)
        )
        assert bad.status_code == 400
        assert not support.exists(yes)

        done = await env.http.post(
            f"/api/v1/approvals/{approval_id}/approve",
            json={"reason": "change window"},
            headers=_auth(approver),
        )
        assert done.status_code == 200 and done.json()["status"] == "approved"
        assert await support.eventually(yes.exists)
        decided = (await events.next("approval.decided"))["approval"]
        assert decided["id"] == approval_id and decided["reason"] == "change window"
        again = await env.http.post(
            f"/api/v1/approvals/{approval_id}/deny", headers=_auth(approver)
        )
        assert again.status_code == 409

        await term.type(f"touch {no}\r")
        second = (await events.next("approval.requested"))["approval"]
        response = await env.http.post(
            f"/api/v1/approvals/{second['id']}/deny", headers=_auth(approver)
        )
        assert response.status_code == 200 and response.json()["status"] == "denied"
        await term.until(b"not approved; the command was discarded")
        assert not support.exists(no)

        # Withdrawn with Ctrl-C: the request is closed, not left pending.
        await term.type(f"touch {no}\r")
        third = (await events.next("approval.requested"))["approval"]
        await term.type("\x03")
        closed = (await events.next("approval.closed"))["approval"]
        assert closed["id"] == third["id"] and closed["status"] == "expired"
        row = await env.services.approvals.get(env.ws, third["id"])
        assert row.status is ApprovalStatus.EXPIRED
        late = await env.http.post(
            f"/api/v1/approvals/{third['id']}/approve", headers=_auth(approver)
        )
        assert late.status_code == 409
        assert not support.exists(no)
        await finish(env, sid, term)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    actions = await _audit(env, env.ws)
    for expected in [
        ("approval.requested", "success"),
        ("approval.decide_refused", "denied"),
        ("approval.approved", "success"),
        ("approval.denied", "success"),
        ("approval.expired", "failure"),
    ]:
        assert expected in actions, expected
