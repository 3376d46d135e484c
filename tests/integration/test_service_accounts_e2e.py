"""A CI/CD service account end to end through a real broker and a real agent: created and
given a token and a grant over the API, it sees and runs commands on exactly the servers
its grants allow (decided by policy like anyone's), appears in the audit log as a
service, and revoking its token ends the terminal session opened with it at once."""

from __future__ import annotations

import json

import pytest

from broker.store.models import AuditEvent
from tests.integration import test_policy_api as policy_tests
from tests.integration.test_policy_api import SERVER, Env, problem
from tests.integration.test_sessions_gateway import Term

pytestmark = pytest.mark.slow

env = policy_tests.env  # a real broker with the default policy (plus a test rule)
agent = policy_tests.agent  # a real agent registered as web-e2e


async def test_service_account_token_within_its_grants(env: Env, agent: str) -> None:
    made = await env.post("/api/v1/service-accounts", env.admin, {"name": "deployer"})
    assert made.status_code == 201, made.text
    account = made.json()["id"]
    minted = await env.post(
        f"/api/v1/service-accounts/{account}/tokens", env.admin, {"name": "ci", "scope": "write"}
    )
    assert minted.status_code == 201, minted.text
    ci, ci_id = minted.json()["secret"], minted.json()["id"]

    assert (await env.get("/api/v1/servers", ci)).json()["servers"] == []  # no grant yet
    problem(await env.exec(ci, "true"), 403, "policy-denied")

    granted = await env.post(
        "/api/v1/grants",
        env.admin,
        {"user_id": account, "server_pattern": "web-*", "level": "terminal"},
    )
    assert granted.status_code == 201, granted.text
    (server,) = (await env.get("/api/v1/servers", ci)).json()["servers"]
    assert server["name"] == SERVER and server["access"] == "terminal"
    ran = await env.exec(ci, "echo deployed")
    assert ran.status_code == 200 and ran.json()["stdout"] == "deployed\n", ran.text
    body = problem(await env.exec(ci, "id", unix_user="root"), 403, "policy-denied")
    assert body["rule_id"].startswith("grant.stored:")  # root needs full; the grant is terminal

    async with env.services.db.transaction() as s:
        from sqlmodel import select

        rows = await s.exec(
            select(AuditEvent).where(
                AuditEvent.workspace_id == env.ws, AuditEvent.action == "exec.command"
            )
        )
        execs = list(rows.all())
    assert {(e.actor_type, e.actor_id, e.credential_id) for e in execs} == {
        ("service", account, ci_id)
    }
    assert [json.loads(e.details)["effect"] for e in execs] == ["deny", "allow", "deny"]

    read = await env.post(
        f"/api/v1/service-accounts/{account}/tokens", env.admin, {"name": "ro", "scope": "read"}
    )
    problem(await env.exec(read.json()["secret"], "true"), 403, "forbidden")  # read scope

    opened = await env.post("/api/v1/sessions", ci, {"server": SERVER, "unix_user": "corral-e2e"})
    assert opened.status_code == 201, opened.text
    term = await Term.connect(opened.json()["websocket_url"])
    await term.type("echo re''ady\n")
    await term.until(b"ready\r\n")
    revoked = await env.http.delete(
        f"/api/v1/tokens/{ci_id}", headers={"Authorization": f"Bearer {env.admin}"}
    )
    assert revoked.status_code == 200
    assert revoked.json()["sessions_ended"] == [opened.json()["session_id"]]
    final = await term.final()
    assert "revoked" in getattr(final, "reason", "")
    problem(await env.get("/api/v1/servers", ci), 401, "unauthenticated")  # refused at once


async def test_admin_changes_end_the_sessions_they_no_longer_allow(env: Env, agent: str) -> None:
    """Over the new routes: a tag change, a group deletion and disabling a person each end
    the live session the change disallows, at once."""
    user_id, dev = await env.token("ci-person@acme.test")
    group = await env.post("/api/v1/groups", env.admin, {"name": "deployers"})
    group_id = group.json()["id"]
    await env.post(f"/api/v1/groups/{group_id}/members", env.admin, {"user_id": user_id})
    await env.post(
        "/api/v1/grants",
        env.admin,
        {"group_id": group_id, "server_tag": "env=test", "level": "terminal"},
    )

    async def opened() -> Term:
        answer = await env.post(
            "/api/v1/sessions", dev, {"server": SERVER, "unix_user": "corral-e2e"}
        )
        assert answer.status_code == 201, answer.text
        term = await Term.connect(answer.json()["websocket_url"])
        await term.type("echo re''ady\n")
        await term.until(b"ready\r\n")
        return term

    async def patch(path: str, body: object) -> dict[str, object]:
        answer = await env.http.patch(
            path, json=body, headers={"Authorization": f"Bearer {env.admin}"}
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, object] = answer.json()
        return result

    term = await opened()
    retagged = await patch(f"/api/v1/servers/{agent}", {"tags": {"env": "prod"}})
    assert retagged["sessions_ended"] == 1
    assert getattr(await term.final(), "reason", "") == "access revoked"

    await patch(f"/api/v1/servers/{agent}", {"tags": {"env": "test"}})
    term = await opened()
    gone = await env.http.delete(
        f"/api/v1/groups/{group_id}", headers={"Authorization": f"Bearer {env.admin}"}
    )
    assert gone.json() == {"deleted": True, "sessions_ended": 1}
    assert getattr(await term.final(), "reason", "") == "access revoked"

    await env.post(
        "/api/v1/grants",
        env.admin,
        {"user_id": user_id, "server_pattern": "web-*", "level": "terminal"},
    )
    term = await opened()
    disabled = await patch(f"/api/v1/users/{user_id}", {"disabled": True})
    assert disabled["sessions_ended"] == 1 and disabled["disabled"] is True
    assert "disabled" in getattr(await term.final(), "reason", "")
