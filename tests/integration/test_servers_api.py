"""The server list: presence, last contact and metrics from the live agent, and servers
hidden entirely from people whose access level is none."""

from __future__ import annotations

import asyncio

import pytest

from broker.store.models import AccessLevel
from tests.integration import test_sessions_gateway as gateway_tests
from tests.integration.test_sessions_gateway import SERVER, Env, _auth

pytestmark = pytest.mark.slow

env = gateway_tests.env  # the fixture: a broker, a registered agent and an admin token


async def test_servers_show_presence_metrics_and_hide_none(env: Env) -> None:
    async def listed(token: str) -> list[dict[str, object]]:
        response = await env.http.get("/api/v1/servers", headers=_auth(token))
        assert response.status_code == 200
        servers: list[dict[str, object]] = response.json()["servers"]
        return servers

    for _ in range(50):  # metrics arrive every second from the test agent
        (server,) = await listed(env.admin_token)
        if server["metrics"]:
            break
        await asyncio.sleep(0.2)
    assert server["name"] == SERVER and server["online"] is True
    assert server["status"] == "online" and server["last_seen_at"]
    assert server["access"] == "full" and server["tags"] == {"env": "test"}
    assert {"cpu_percent", "mem_total"} <= set(server["metrics"])  # type: ignore[arg-type]
    by_name = await env.http.get(f"/api/v1/servers/{SERVER}", headers=_auth(env.admin_token))
    assert by_name.json()["id"] == env.server_id

    user_id, token = await env.token("nobody@example.com")
    assert await listed(token) == []
    hidden = await env.http.get(f"/api/v1/servers/{env.server_id}", headers=_auth(token))
    unknown = await env.http.get("/api/v1/servers/no-such-server", headers=_auth(token))
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["type"] == unknown.json()["type"]

    await env.services.grants.grant(
        env.ws, level=AccessLevel.READ_ONLY, user_id=user_id, server_pattern="test-*"
    )
    (seen,) = await listed(token)
    assert seen["access"] == "read-only" and seen["online"] is True
    refused = await env.open(token)
    assert refused.status_code == 403
