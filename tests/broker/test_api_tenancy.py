"""Tenancy at the API edge: every id-bearing route of the real app, called by workspace
A's superuser (admin token, fresh MFA) with workspace B's ids, answers the same 404
``not-found`` as a missing id, and each answer is audited in A as ``api.not_found``.

The test first compares the app's id-bearing routes with :data:`CASES`: a route with a
path parameter that has no case here fails it, so a new route cannot skip the check.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select
from starlette.applications import Starlette
from starlette.routing import Route

from broker.app import create_app
from broker.policy import PolicyRuntime, PolicySource
from broker.runtime import Runtime
from broker.services import Services
from broker.settings import Settings
from broker.store.models import AuditEvent, BrowserSessionState, Role, TokenScope
from idp.sessions import COOKIE, CSRF_HEADER
from tests.broker.test_api_apps import ORIGIN, FreshMfa
from tests.broker.test_tenancy import World, build_world

Path_ = Callable[[World], str]
Body = Callable[[World], dict[str, Any]] | None


@dataclass(frozen=True)
class Case:
    path: Path_
    body: Body = None
    cookie: bool = False  # the route takes a browser session, not a bearer token


# (method, route template) -> how to call it with B's ids.
CASES: dict[tuple[str, str], Case] = {
    ("GET", "/api/v1/approvals/{approval_id}"): Case(lambda b: f"/api/v1/approvals/{b.approval}"),
    ("POST", "/api/v1/approvals/{approval_id}/approve"): Case(
        lambda b: f"/api/v1/approvals/{b.approval}/approve", lambda b: {}
    ),
    ("POST", "/api/v1/approvals/{approval_id}/deny"): Case(
        lambda b: f"/api/v1/approvals/{b.approval}/deny", lambda b: {}
    ),
    ("GET", "/api/v1/grants/{grant_id}"): Case(lambda b: f"/api/v1/grants/{b.grant}"),
    ("DELETE", "/api/v1/grants/{grant_id}"): Case(lambda b: f"/api/v1/grants/{b.grant}"),
    ("GET", "/api/v1/groups/{group_id}"): Case(lambda b: f"/api/v1/groups/{b.group}"),
    ("PATCH", "/api/v1/groups/{group_id}"): Case(
        lambda b: f"/api/v1/groups/{b.group}", lambda b: {"description": "x"}
    ),
    ("DELETE", "/api/v1/groups/{group_id}"): Case(lambda b: f"/api/v1/groups/{b.group}"),
    ("GET", "/api/v1/groups/{group_id}/members"): Case(
        lambda b: f"/api/v1/groups/{b.group}/members"
    ),
    ("POST", "/api/v1/groups/{group_id}/members"): Case(
        lambda b: f"/api/v1/groups/{b.group}/members", lambda b: {"user_id": b.user}
    ),
    ("DELETE", "/api/v1/groups/{group_id}/members/{user_id}"): Case(
        lambda b: f"/api/v1/groups/{b.group}/members/{b.user}"
    ),
    ("DELETE", "/api/v1/auth/sessions/{session_id:str}"): Case(
        lambda b: f"/api/v1/auth/sessions/{b.browser}"
    ),
    ("POST", "/api/v1/users/{user_id:str}/mfa/reset"): Case(
        lambda b: f"/api/v1/users/{b.user}/mfa/reset", lambda b: {}
    ),
    ("POST", "/api/v1/auth/mfa/factors/{factor_id:str}/confirm"): Case(
        lambda b: f"/api/v1/auth/mfa/factors/{b.factor}/confirm",
        lambda b: {"code": "123456"},
        cookie=True,
    ),
    ("DELETE", "/api/v1/auth/mfa/factors/{factor_id:str}"): Case(
        lambda b: f"/api/v1/auth/mfa/factors/{b.factor}", cookie=True
    ),
    ("POST", "/api/v1/servers/{server}/exec/stream"): Case(
        lambda b: f"/api/v1/servers/{b.server}/exec/stream",
        lambda b: {"command": "true", "unix_user": "root"},
    ),
    ("POST", "/api/v1/servers/{server}/exec"): Case(
        lambda b: f"/api/v1/servers/{b.server}/exec",
        lambda b: {"command": "true", "unix_user": "root"},
    ),
    ("GET", "/api/v1/server-groups/{group_id}"): Case(
        lambda b: f"/api/v1/server-groups/{b.server_group}"
    ),
    ("DELETE", "/api/v1/server-groups/{group_id}"): Case(
        lambda b: f"/api/v1/server-groups/{b.server_group}"
    ),
    ("POST", "/api/v1/server-groups/{group_id}/servers"): Case(
        lambda b: f"/api/v1/server-groups/{b.server_group}/servers",
        lambda b: {"server_id": b.server},
    ),
    ("DELETE", "/api/v1/server-groups/{group_id}/servers/{server_id}"): Case(
        lambda b: f"/api/v1/server-groups/{b.server_group}/servers/{b.server}"
    ),
    ("GET", "/api/v1/servers/{server_id}"): Case(lambda b: f"/api/v1/servers/{b.server}"),
    ("PATCH", "/api/v1/servers/{server_id}"): Case(
        lambda b: f"/api/v1/servers/{b.server}", lambda b: {"tags": {}}
    ),
    ("DELETE", "/api/v1/servers/{server_id}"): Case(lambda b: f"/api/v1/servers/{b.server}"),
    ("GET", "/api/v1/service-accounts/{account_id}"): Case(
        lambda b: f"/api/v1/service-accounts/{b.service_account}"
    ),
    ("PATCH", "/api/v1/service-accounts/{account_id}"): Case(
        lambda b: f"/api/v1/service-accounts/{b.service_account}", lambda b: {"description": "x"}
    ),
    ("DELETE", "/api/v1/service-accounts/{account_id}"): Case(
        lambda b: f"/api/v1/service-accounts/{b.service_account}"
    ),
    ("GET", "/api/v1/service-accounts/{account_id}/tokens"): Case(
        lambda b: f"/api/v1/service-accounts/{b.service_account}/tokens"
    ),
    ("POST", "/api/v1/service-accounts/{account_id}/tokens"): Case(
        lambda b: f"/api/v1/service-accounts/{b.service_account}/tokens",
        lambda b: {"name": "x", "scope": "read"},
    ),
    ("POST", "/api/v1/sessions/{session_id}/tickets"): Case(
        lambda b: f"/api/v1/sessions/{b.session}/tickets", lambda b: {}
    ),
    ("DELETE", "/api/v1/sessions/{session_id}"): Case(lambda b: f"/api/v1/sessions/{b.session}"),
    ("GET", "/api/v1/recordings/{recording_id}/download"): Case(
        lambda b: f"/api/v1/recordings/{b.recording}/download"
    ),
    ("POST", "/api/v1/users/{user_id}/disable"): Case(
        lambda b: f"/api/v1/users/{b.user}/disable", lambda b: {}
    ),
    ("GET", "/api/v1/tokens/{token_id}"): Case(lambda b: f"/api/v1/tokens/{b.token}"),
    ("DELETE", "/api/v1/tokens/{token_id}"): Case(lambda b: f"/api/v1/tokens/{b.token}"),
    ("POST", "/api/v1/sessions/{session_id}/shares"): Case(
        lambda b: f"/api/v1/sessions/{b.session}/shares", lambda b: {}
    ),
    ("GET", "/api/v1/sessions/{session_id}/shares"): Case(
        lambda b: f"/api/v1/sessions/{b.session}/shares"
    ),
    ("DELETE", "/api/v1/sessions/{session_id}/shares/{share_id}"): Case(
        lambda b: f"/api/v1/sessions/{b.session}/shares/{b.token}"
    ),
    ("POST", "/api/v1/sessions/{session_id}/observe"): Case(
        lambda b: f"/api/v1/sessions/{b.session}/observe", lambda b: {}
    ),
    ("GET", "/api/v1/users/{user_id}"): Case(lambda b: f"/api/v1/users/{b.user}"),
    ("GET", "/api/v1/sso/providers/{provider_id}"): Case(
        lambda b: f"/api/v1/sso/providers/{b.provider}"
    ),
    ("PATCH", "/api/v1/sso/providers/{provider_id}"): Case(
        lambda b: f"/api/v1/sso/providers/{b.provider}", lambda b: {"enabled": False}
    ),
    ("DELETE", "/api/v1/sso/providers/{provider_id}"): Case(
        lambda b: f"/api/v1/sso/providers/{b.provider}"
    ),
    ("PATCH", "/api/v1/users/{user_id}"): Case(
        lambda b: f"/api/v1/users/{b.user}", lambda b: {"display_name": "x"}
    ),
}

# Path parameters that are not ids: a share's join secret is a bearer credential
# (a wrong one is 401/404 by design, tested with sharing).
# The SSO protocol routes are unauthenticated and addressed by the IdP or the login page
# with a provider id alone; their 404s (another workspace's provider included, audited in
# the named workspace) are tested in tests/idp/test_saml.py and test_sso_oidc.py.
NOT_IDS = {
    ("POST", "/api/v1/shares/{secret}/join"),
    ("GET", "/api/v1/sso/saml/{provider_id}/metadata"),
    ("GET", "/api/v1/sso/saml/{provider_id}/login"),
    ("POST", "/api/v1/sso/saml/{provider_id}/acs"),
    ("GET", "/api/v1/sso/oidc/{provider_id}/login"),
    ("GET", "/api/v1/sso/oidc/{provider_id}/callback"),
}

# B's ids inside A's own paths or bodies: the inner lookups are scoped too.
MIXED: list[tuple[str, Callable[[World, World], str], Callable[[World, World], dict[str, Any]]]] = [
    (
        "POST",
        lambda a, b: f"/api/v1/groups/{a.group}/members",
        lambda a, b: {"user_id": b.user},
    ),
    (
        "POST",
        lambda a, b: f"/api/v1/server-groups/{a.server_group}/servers",
        lambda a, b: {"server_id": b.server},
    ),
    (
        "POST",
        lambda a, b: "/api/v1/grants",
        lambda a, b: {"user_id": b.user, "server_pattern": "*", "level": "full"},
    ),
    (
        "POST",
        lambda a, b: "/api/v1/grants",
        lambda a, b: {"group_id": a.group, "server_group_id": b.server_group, "level": "full"},
    ),
    ("GET", lambda a, b: f"/api/v1/grants?server_id={b.server}", lambda a, b: {}),
    ("GET", lambda a, b: f"/api/v1/grants?user_id={b.user}", lambda a, b: {}),
    ("GET", lambda a, b: f"/api/v1/tokens?user_id={b.user}", lambda a, b: {}),
]


def id_routes(app: Starlette) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/api/v1/") and "{" in route.path
        for method in route.methods or ()
        if method != "HEAD"
    }


@dataclass
class Env:
    client: httpx.AsyncClient
    services: Services
    app: Starlette
    a: World
    b: World
    bearer: str
    cookie: str
    csrf: str


@pytest.fixture
async def env(services: Services, tmp_path: Path) -> AsyncIterator[Env]:
    a = await build_world(services, "a")
    b = await build_world(services, "b")
    root = await services.users.create(a.ws, "root@a.test", role=Role.SUPERUSER)
    _, bearer = await services.tokens.create(
        a.ws, root.id, name="root", scope=TokenScope.ADMIN, expires_in_days=30
    )
    _, cookie = await services.browser_sessions.create(
        a.ws, root.id, state=BrowserSessionState.ACTIVE, lifetime_seconds=3600
    )
    settings = Settings(data_dir=tmp_path, public_url=ORIGIN)
    policy = PolicyRuntime(PolicySource.from_settings(settings), services)
    app = create_app(Runtime(settings, services.db, services, policy), mfa=FreshMfa())
    csrf = app.state.identity.browser.csrf_token(cookie)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield Env(client, services, app, a, b, bearer, cookie, csrf)


async def _not_found_events(env: Env) -> list[AuditEvent]:
    async with env.services.db.transaction() as s:
        query = select(AuditEvent).where(
            AuditEvent.workspace_id == env.a.ws, AuditEvent.action == "api.not_found"
        )
        return list((await s.exec(query)).all())


async def _call(env: Env, method: str, path: str, body: Any, cookie: bool) -> httpx.Response:
    if cookie:
        headers = {"Cookie": f"{COOKIE}={env.cookie}", CSRF_HEADER: env.csrf}
    else:
        headers = {"Authorization": f"Bearer {env.bearer}"}
    return await env.client.request(method, path, headers=headers, json=body)


async def test_other_workspace_ids_are_not_found_and_audited(env: Env) -> None:
    routes = id_routes(env.app)
    assert routes - NOT_IDS == set(CASES), "add a case for every id-bearing route"
    failures: list[str] = []
    for (method, template), case in sorted(CASES.items()):
        path = case.path(env.b)
        body = case.body(env.b) if case.body is not None else None
        before = len(await _not_found_events(env))
        answer = await _call(env, method, path, body, case.cookie)
        if answer.status_code != 404 or answer.json().get("type") != "urn:corral:problem:not-found":
            failures.append(f"{method} {template}: {answer.status_code} {answer.text[:200]}")
            continue
        events = await _not_found_events(env)
        if len(events) != before + 1 or events[-1].target != path:
            failures.append(f"{method} {template}: 404 not audited as api.not_found")
            continue
        assert json.loads(events[-1].details)["method"] == method
    for method, path_of, body_of in MIXED:
        path = path_of(env.a, env.b)
        body = body_of(env.a, env.b) if method != "GET" else None
        answer = await _call(env, method, path, body, False)
        if answer.status_code != 404:
            failures.append(
                f"{method} {path} (mixed ids): {answer.status_code} {answer.text[:200]}"
            )
    assert not failures, "\n".join(failures)
    assert len(await _not_found_events(env)) >= len(CASES) + len(MIXED)
    # B saw nothing of this: its chain holds none of A's refusals, and still verifies.
    assert (await env.services.audit.verify(env.b.ws)).ok
