"""Sharing, observing and moderating live sessions, and the revocations that reach
participants: a real broker, a real agent, real bash, real WebSocket clients."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from broker.audit import SYSTEM
from broker.store.models import AccessLevel, Role, TokenScope
from tests.integration import test_sessions_gateway as gateway_tests
from tests.integration.test_sessions_gateway import (
    SERVER,
    Env,
    Term,
    _audit,
    _auth,
    _terminated_within,
    recorded_output,
    wait_ended,
)
from websh import ErrorMessage, Exit, ParticipantJoined, ParticipantLeft, Terminated

pytestmark = pytest.mark.slow

env = gateway_tests.env  # the fixture: a broker, a registered agent and an admin token


async def share(env: Env, session_id: str, token: str | None = None, **body: object) -> dict:
    response = await env.http.post(
        f"/api/v1/sessions/{session_id}/shares",
        json=body,
        headers=_auth(token or env.admin_token),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def join(env: Env, join_url: str, token: str) -> Term:
    response = await env.http.post(join_url, headers=_auth(token))
    assert response.status_code == 201, response.text
    return await Term.connect(response.json()["websocket_url"])


async def wait_event(term: Term, kind: type, timeout: float = 10) -> object:
    async def loop() -> object:
        while True:
            for event in term.events:
                if isinstance(event, kind):
                    term.events.remove(event)
                    return event
            await term.next()

    return await asyncio.wait_for(loop(), timeout)


async def test_read_only_share_sees_output_and_cannot_type(env: Env) -> None:
    opened = await env.opened()
    sid = opened["session_id"]
    owner = await Term.connect(opened["websocket_url"])
    link = await share(env, sid, mode="read-only", expires_in=600)
    assert link["mode"] == "read-only" and link["secret"].startswith("crlshr_")
    _, guest_token = await env.token("guest@example.com")

    guest = await join(env, link["join_url"], guest_token)
    assert guest.welcome.read_only is True
    joined = await wait_event(owner, ParticipantJoined)
    assert joined == ParticipantJoined(user="guest@example.com", role="participant")

    await guest.type("touch /tmp/corral-share-canary-$$; echo GUEST''TYPED\n")
    refusal = await wait_event(guest, ErrorMessage)
    assert isinstance(refusal, ErrorMessage) and refusal.code == "read_only"
    await owner.type("echo OWNER''SAYS\n")
    await guest.until(b"OWNERSAYS\r\n")
    await owner.until(b"OWNERSAYS\r\n")
    assert b"GUEST" not in owner.out and b"GUEST" not in guest.out

    listing = await env.http.get(f"/api/v1/sessions/{sid}/shares", headers=_auth(env.admin_token))
    roles = sorted(p["role"] for p in listing.json()["participants"])
    assert roles == ["owner", "participant"]

    # Revoking the link removes whoever joined through it, at once.
    started = time.monotonic()
    response = await env.http.delete(
        f"/api/v1/sessions/{sid}/shares/{link['id']}", headers=_auth(env.admin_token)
    )
    assert response.status_code == 204
    final, code = await _terminated_within(guest, 1.0, started)
    assert "revoked" in final.reason and code == 4042
    assert await wait_event(owner, ParticipantLeft) == ParticipantLeft(user="guest@example.com")
    again = await env.http.post(link["join_url"], headers=_auth(guest_token))
    assert again.status_code == 404
    assert again.headers["content-type"] == "application/problem+json"

    await owner.type("exit 0\n")
    assert isinstance(await owner.final(), Exit)
    await wait_ended(env, sid)
    actions = await _audit(env, env.ws)
    for expected in [
        ("session.shared", "success"),
        ("session.joined", "success"),
        ("session.input_refused", "denied"),
        ("session.unshared", "success"),
        ("session.participant_removed", "denied"),
        ("session.join_refused", "denied"),
    ]:
        assert expected in actions


async def test_read_write_share_needs_a_write_token(env: Env) -> None:
    """A read-scope token may watch through a read-only link but not type through a
    read-write one, even when its user could open a terminal; the refusal is audited."""
    opened = await env.opened()
    sid = opened["session_id"]
    owner = await Term.connect(opened["websocket_url"])
    writable = await share(env, sid, mode="read-write")
    watch_only = await share(env, sid, mode="read-only")
    reader_id, reader = await env.token("reader@example.com", scope=TokenScope.READ)
    await env.services.grants.grant(
        env.ws, level=AccessLevel.TERMINAL, user_id=reader_id, server_pattern=SERVER
    )
    refused = await env.http.post(writable["join_url"], headers=_auth(reader))
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:corral:problem:forbidden"
    assert ("session.join_refused", "denied") in await _audit(env, env.ws)
    watcher = await join(env, watch_only["join_url"], reader)
    assert watcher.welcome.read_only is True
    _, writer = await env.token("reader@example.com", scope=TokenScope.WRITE)
    pair = await join(env, writable["join_url"], writer)
    assert pair.welcome.read_only is False
    await owner.type("exit 0\n")
    assert isinstance(await owner.final(), Exit)


async def test_read_write_share_needs_terminal_access(env: Env) -> None:
    opened = await env.opened()
    sid = opened["session_id"]
    owner = await Term.connect(opened["websocket_url"])
    link = await share(env, sid, mode="read-write")
    stranger_id, stranger_token = await env.token("stranger@example.com")

    refused = await env.http.post(link["join_url"], headers=_auth(stranger_token))
    assert refused.status_code == 404  # no grant for this server: same answer as a bad link

    await env.services.grants.grant(
        env.ws, level=AccessLevel.TERMINAL, user_id=stranger_id, server_pattern=SERVER
    )
    pair = await join(env, link["join_url"], stranger_token)
    assert pair.welcome.read_only is False
    await pair.type("echo PAIR''TYPED\n")
    await owner.until(b"PAIRTYPED\r\n")
    await pair.until(b"PAIRTYPED\r\n")

    # Disabling the participant removes them from the owner's session; the owner stays.
    started = time.monotonic()
    response = await env.http.post(
        f"/api/v1/users/{stranger_id}/disable", headers=_auth(env.admin_token)
    )
    assert response.status_code == 200
    final, code = await _terminated_within(pair, 1.0, started)
    assert final.reason == "user disabled" and code == 4042
    await owner.type("echo still''here\n")
    await owner.until(b"stillhere\r\n")
    await owner.type("exit 0\n")
    assert isinstance(await owner.final(), Exit)


async def test_bad_share_requests(env: Env) -> None:
    opened = await env.opened()
    sid = opened["session_id"]
    owner = await Term.connect(opened["websocket_url"])
    _, other_token = await env.token("other@example.com")
    for body in ({"mode": "write"}, {"expires_in": 5}, {"expires_in": "1h"}, {"mode": 1}):
        response = await env.http.post(
            f"/api/v1/sessions/{sid}/shares", json=body, headers=_auth(env.admin_token)
        )
        assert response.status_code == 400, body
        assert response.headers["content-type"] == "application/problem+json"
    # Only the owner shares; someone else's (or an unknown) session is a 404.
    for target, token in ((sid, other_token), ("nope", env.admin_token)):
        response = await env.http.post(
            f"/api/v1/sessions/{target}/shares", json={}, headers=_auth(token)
        )
        assert response.status_code == 404
    guess = await env.http.post("/api/v1/shares/crlshr_guessed/join", headers=_auth(other_token))
    assert guess.status_code == 404

    # A link is only good inside its own workspace.
    link = await share(env, sid)
    other_ws = await env.services.workspaces.create("elsewhere")
    outsider = await env.services.users.create(other_ws.id, "x@elsewhere.test", role=Role.STAFF)
    _, outsider_token = await env.services.tokens.create(
        other_ws.id, outsider.id, name="t", scope=TokenScope.ADMIN, expires_in_days=30
    )
    response = await env.http.post(link["join_url"], headers=_auth(outsider_token))
    assert response.status_code == 404
    observe = await env.http.post(f"/api/v1/sessions/{sid}/observe", headers=_auth(outsider_token))
    assert observe.status_code == 404
    assert ("session.join_refused", "denied") in await _audit(env, other_ws.id)
    await owner.type("exit 0\n")
    assert isinstance(await owner.final(), Exit)


async def test_staff_observe_and_moderate(env: Env) -> None:
    user_id, user_token = await env.token("dev@example.com")
    await env.services.grants.grant(
        env.ws, level=AccessLevel.TERMINAL, user_id=user_id, server_pattern="*"
    )
    opened = await env.opened(user_token)
    sid = opened["session_id"]
    owner = await Term.connect(opened["websocket_url"])
    _, staff_token = await env.token("lead@example.com", role=Role.STAFF)
    _, peer_token = await env.token("peer@example.com")

    listing = await env.http.get("/api/v1/sessions", headers=_auth(staff_token))
    assert sid in [s["id"] for s in listing.json()["sessions"]]
    refused = await env.http.post(f"/api/v1/sessions/{sid}/observe", headers=_auth(peer_token))
    assert refused.status_code == 404

    response = await env.http.post(f"/api/v1/sessions/{sid}/observe", headers=_auth(staff_token))
    assert response.status_code == 201
    observer = await Term.connect(response.json()["websocket_url"])
    assert observer.welcome.read_only is True
    assert await wait_event(owner, ParticipantJoined) == ParticipantJoined(
        user="lead@example.com", role="observer"
    )
    await owner.type("echo LIVE''OUTPUT\n")
    await observer.until(b"LIVEOUTPUT\r\n")
    await observer.type("echo nope\n")
    assert isinstance(await wait_event(observer, ErrorMessage), ErrorMessage)

    # The moderator ends the session: both sides are told who did it.
    response = await env.http.delete(f"/api/v1/sessions/{sid}", headers=_auth(staff_token))
    assert response.status_code == 204
    for term in (owner, observer):
        final = await term.final()
        assert isinstance(final, Terminated) and final.by == "lead@example.com"
    await wait_ended(env, sid)
    _, events = await recorded_output(env, sid)
    assert "LIVEOUTPUT" in "".join(e[2] for e in events if e[1] == "o")
    actions = await _audit(env, env.ws)
    assert ("action.denied", "denied") in actions  # the peer's sessions.observe
    assert ("session.terminated", "success") in actions


async def test_group_membership_and_server_removal_revoke(env: Env) -> None:
    services = env.services
    user_id, token = await env.token("member@example.com")
    group = await services.groups.create(env.ws, "devs")
    await services.groups.add_member(env.ws, group.id, user_id, actor=SYSTEM)
    await services.grants.grant(
        env.ws, level=AccessLevel.TERMINAL, group_id=group.id, server_pattern="test-*"
    )
    term = await Term.connect((await env.opened(token))["websocket_url"])
    admin = await Term.connect((await env.opened())["websocket_url"])
    for t in (term, admin):
        await t.type("echo ready\n")
        await t.until(b"ready\r\n")

    started = time.monotonic()
    response = await env.http.delete(
        f"/api/v1/groups/{group.id}/members/{user_id}", headers=_auth(env.admin_token)
    )
    assert response.status_code == 200
    final, code = await _terminated_within(term, 1.0, started)
    assert final.reason == "access revoked" and code == 4042

    started = time.monotonic()
    response = await env.http.delete(
        f"/api/v1/servers/{env.server_id}", headers=_auth(env.admin_token)
    )
    assert response.status_code == 200, response.text
    final, code = await _terminated_within(admin, 1.0, started)
    assert final.reason == "server removed"
    # The agent was hung up with "revoked" and does not come back.
    await asyncio.sleep(1.0)
    assert env.server_id not in env.broker.hub.links
    with pytest.raises(websockets.ConnectionClosed):
        await term.next()
    # The sessions' history and recordings outlive the server: the id is cleared, the
    # name kept, and the asciicast still downloads.
    listing = await env.http.get("/api/v1/recordings", headers=_auth(env.admin_token))
    recordings = listing.json()["recordings"]
    assert len(recordings) >= 2
    assert all(r["server_id"] is None and r["server_name"] for r in recordings)
    assert {r["ended_at"] is not None for r in recordings} == {True}
    cast = await env.http.get(
        f"/api/v1/recordings/{recordings[-1]['id']}/download", headers=_auth(env.admin_token)
    )
    assert cast.status_code == 200 and b"echo ready" in cast.content
