"""The REST API for apps over the real app in-process (httpx over ASGI), on SQLite and on
PostgreSQL: workspace settings and deletion, users, groups, server groups and tags,
grants, personal access tokens, service accounts, audit queries and export, roles decided
by the policy, token scopes, rate limits, and tenancy (another workspace's id is a 404,
audited) on every id-bearing route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select
from starlette.applications import Starlette
from starlette.routing import Route

from api.spec import operation_of
from broker.app import create_app
from broker.audit import SYSTEM
from broker.errors import AuthenticationFailed
from broker.policy import NoMfa, PolicyRuntime, PolicySource
from broker.runtime import Runtime
from broker.services import Services
from broker.services.sso import SsoAssertion
from broker.settings import Settings
from broker.store.models import AuditEvent, Role, SsoProtocol, TokenScope
from tests.broker.test_api import assert_problem
from tests.conftest import Clock

ORIGIN = "https://corral.test"
BROWSER_ONLY = (
    "/api/v1/auth/login",
    "/api/v1/auth/logout",
    "/api/v1/auth/signup",
    "/api/v1/auth/step-up",
    "/api/v1/auth/mfa/",
)


class FreshMfa:
    """Everybody passed MFA ten seconds ago (step-up rules are tested with NoMfa)."""

    async def mfa_age(self, workspace_id: str, user_id: str) -> float | None:
        return 10.0


@dataclass
class Api:
    client: httpx.AsyncClient
    services: Services
    app: Starlette
    clock: Clock
    ws: str
    root: str
    root_token: str
    root_token_id: str
    staff: str
    staff_token: str
    user: str
    user_token: str

    async def call(
        self, method: str, path: str, token: str | None = None, body: Any = None, **params: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.root_token}"}
        return await self.client.request(
            method, path, headers=headers, json=body, params=params or None
        )

    async def token(self, user_id: str, scope: TokenScope = TokenScope.ADMIN) -> tuple[str, str]:
        row, secret = await self.services.tokens.create(
            self.ws, user_id, name="t", scope=scope, expires_in_days=30, actor=SYSTEM
        )
        return row.id, secret

    async def events(self, action: str, ws: str | None = None) -> list[AuditEvent]:
        async with self.services.db.transaction() as s:
            query = (
                select(AuditEvent)
                .where(AuditEvent.workspace_id == (ws or self.ws), AuditEvent.action == action)
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            )
            return list((await s.exec(query)).all())


@pytest.fixture
async def api(services: Services, clock: Clock, tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(services, clock, Settings(data_dir=tmp_path, public_url=ORIGIN)) as ready:
        yield ready


@asynccontextmanager
async def open_api(services: Services, clock: Clock, settings: Settings) -> AsyncIterator[Api]:
    """The broker app over ``settings`` with a workspace, three people and their tokens."""
    ws = await services.workspaces.create("acme")
    root = await services.users.create(ws.id, "root@acme.test", role=Role.SUPERUSER)
    staff = await services.users.create(ws.id, "sam@acme.test", role=Role.STAFF)
    user = await services.users.create(ws.id, "dev@acme.test")
    tokens = {}
    for who, scope in ((root, TokenScope.ADMIN), (staff, TokenScope.ADMIN), (user, "write")):
        tokens[who.id] = await services.tokens.create(
            ws.id, who.id, name="t", scope=TokenScope(scope), expires_in_days=30
        )
    policy = PolicyRuntime(PolicySource.from_settings(settings), services)
    runtime = Runtime(settings, services.db, services, policy)
    app = create_app(runtime, mfa=FreshMfa())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield Api(
            client,
            services,
            app,
            clock,
            ws.id,
            root.id,
            tokens[root.id][1],
            tokens[root.id][0].id,
            staff.id,
            tokens[staff.id][1],
            user.id,
            tokens[user.id][1],
        )


# -- workspace ----------------------------------------------------------------------------


async def test_workspace_settings(api: Api) -> None:
    got = await api.call("GET", "/api/v1/workspace", api.staff_token)
    assert got.status_code == 200
    assert got.json()["name"] == "acme" and got.json()["audit_retention_days"] == 365
    assert_problem(await api.call("GET", "/api/v1/workspace", api.user_token), 403, "policy-denied")
    change = {"name": "acme-corp", "audit_retention_days": 90}
    refused = await api.call("PATCH", "/api/v1/workspace", api.staff_token, change)
    assert_problem(refused, 403, "policy-denied")
    denied = [e for e in await api.events("action.denied") if e.actor_id == api.staff]
    assert [e.target for e in denied] == ["workspace.settings.update"]
    changed = await api.call("PATCH", "/api/v1/workspace", body=change)
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "acme-corp"
    assert changed.json()["audit_retention_days"] == 90
    (event,) = await api.events("workspace.settings_changed")
    assert event.credential_id == api.root_token_id  # the write carries the token's id
    for bad in ({"audit_retention_days": 0}, {"name": ""}, {"mfa_required": True}):
        assert_problem(
            await api.call("PATCH", "/api/v1/workspace", body=bad), 400, "invalid-request"
        )


async def test_workspace_delete(api: Api) -> None:
    _, invitation = await api.services.accounts.invite(api.ws, "late@acme.test")
    _, registration = await api.services.agents.create_registration_token(api.ws)
    provider = await api.services.sso.create_provider(
        api.ws, "okta", SsoProtocol.OIDC, config={"issuer": "https://idp.example"}
    )
    wrong = await api.call("DELETE", "/api/v1/workspace", body={"confirm_name": "acme2"})
    assert_problem(wrong, 400, "invalid-request")
    staff = await api.call("DELETE", "/api/v1/workspace", api.staff_token, {"confirm_name": "acme"})
    assert_problem(staff, 403, "policy-denied")
    api.app.state.mfa = NoMfa()  # the default policy wants an MFA within 5 minutes
    stale = await api.call("DELETE", "/api/v1/workspace", body={"confirm_name": "acme"})
    assert_problem(stale, 403, "mfa-required")
    api.app.state.mfa = FreshMfa()
    deleted = await api.call("DELETE", "/api/v1/workspace", body={"confirm_name": "acme"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted"] is True and deleted.json()["tokens_revoked"] == 3
    assert deleted.json()["accounts_disabled"] == 3
    for token in (api.root_token, api.staff_token, api.user_token):  # refused at once
        assert_problem(await api.call("GET", "/api/v1/whoami", token), 401, "unauthenticated")
    (event,) = await api.events("workspace.deleted")
    assert event.actor_id == api.root and (await api.services.audit.verify(api.ws)).ok
    # Nothing brings a new account or host in afterwards.
    with pytest.raises(AuthenticationFailed, match="already used"):
        await api.services.accounts.accept_invitation(invitation, password_hash="h")
    with pytest.raises(AuthenticationFailed, match="already used"):
        await api.services.agents.register(registration, name="late-host")
    with pytest.raises(AuthenticationFailed):
        closed = await api.services.sso.provider(api.ws, provider.id)
        await api.services.sso.sign_in(closed, SsoAssertion("sub", "new@acme.test"))


# -- users --------------------------------------------------------------------------------


async def test_users_list_filters_and_cursor(api: Api) -> None:
    for n in range(5):
        await api.services.users.create(api.ws, f"temp{n}@acme.test")
    await api.services.users.set_disabled(
        api.ws,
        (await api.services.users.find_by_email(api.ws, "temp3@acme.test")).id,  # type: ignore[union-attr]
        True,
        actor=SYSTEM,
    )
    await api.services.service_accounts.create(api.ws, "ci", actor=SYSTEM)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await api.call("GET", "/api/v1/users", api.staff_token, **params)
        assert page.status_code == 200, page.text
        seen += [u["email"] for u in page.json()["users"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == 8  # people only, no service account
    temp = await api.call("GET", "/api/v1/users", api.staff_token, email_prefix="TEMP")
    assert [u["email"] for u in temp.json()["users"]] == [f"temp{n}@acme.test" for n in range(5)]
    off = await api.call("GET", "/api/v1/users", api.staff_token, disabled="true")
    assert [u["email"] for u in off.json()["users"]] == ["temp3@acme.test"]
    staff = await api.call("GET", "/api/v1/users", api.staff_token, role="staff")
    assert [u["id"] for u in staff.json()["users"]] == [api.staff]
    first = await api.call("GET", "/api/v1/users", api.staff_token, limit=1)
    good = first.json()["next_cursor"]
    for bad in (good[:-2] + "AA", "!!!", "e30", good + "x"):
        answer = await api.call("GET", "/api/v1/users", api.staff_token, cursor=bad)
        assert_problem(answer, 400, "invalid-request")
    other_list = await api.call("GET", "/api/v1/groups", api.staff_token, cursor=good)
    assert_problem(other_list, 400, "invalid-request")  # a cursor is bound to its list
    for bad_query in ({"limit": 0}, {"limit": 501}, {"role": "king"}, {"colour": "red"}):
        answer = await api.call("GET", "/api/v1/users", api.staff_token, **bad_query)
        assert_problem(answer, 400, "invalid-request")
    assert_problem(await api.call("GET", "/api/v1/users", api.user_token), 403, "policy-denied")


async def test_users_get_invite_and_change(api: Api) -> None:
    me = await api.call("GET", f"/api/v1/users/{api.user}", api.user_token)
    assert me.status_code == 200 and me.json()["email"] == "dev@acme.test"
    other = await api.call("GET", f"/api/v1/users/{api.staff}", api.user_token)
    assert_problem(other, 403, "policy-denied")
    invited = await api.call("POST", "/api/v1/users", api.staff_token, {"email": "new@acme.test"})
    assert invited.status_code == 201 and invited.json()["invitation"].startswith("crlinv_")
    promote = await api.call(
        "POST", "/api/v1/users", api.staff_token, {"email": "boss@acme.test", "role": "staff"}
    )
    assert_problem(promote, 403, "policy-denied")
    again = await api.call("POST", "/api/v1/users", body={"email": "dev@acme.test"})
    assert_problem(again, 409, "conflict")

    renamed = await api.call(
        "PATCH", f"/api/v1/users/{api.user}", api.staff_token, {"display_name": "Dev"}
    )
    assert renamed.status_code == 200 and renamed.json()["display_name"] == "Dev"
    to_staff = await api.call(
        "PATCH", f"/api/v1/users/{api.user}", api.staff_token, {"role": "staff"}
    )
    assert_problem(to_staff, 403, "policy-denied")
    on_root = await api.call(
        "PATCH", f"/api/v1/users/{api.root}", api.staff_token, {"disabled": True}
    )
    assert_problem(on_root, 403, "policy-denied")
    myself = await api.call("PATCH", f"/api/v1/users/{api.root}", body={"role": "user"})
    assert_problem(myself, 409, "conflict")
    promoted = await api.call("PATCH", f"/api/v1/users/{api.user}", body={"role": "staff"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "staff"
    disabled = await api.call("PATCH", f"/api/v1/users/{api.user}", body={"disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert_problem(await api.call("GET", "/api/v1/whoami", api.user_token), 401, "unauthenticated")
    assert [e.target for e in await api.events("user.disabled")] == [api.user]


# -- groups, server groups, tags, grants --------------------------------------------------


async def test_groups_and_members(api: Api) -> None:
    made = await api.call("POST", "/api/v1/groups", api.staff_token, {"name": "ops"})
    assert made.status_code == 201
    group = made.json()["id"]
    dup = await api.call("POST", "/api/v1/groups", api.staff_token, {"name": "ops"})
    assert_problem(dup, 409, "conflict")
    bad = await api.call("POST", "/api/v1/groups", api.staff_token, {"name": "no spaces"})
    assert_problem(bad, 400, "invalid-request")
    added = await api.call(
        "POST", f"/api/v1/groups/{group}/members", api.staff_token, {"user_id": api.user}
    )
    assert added.status_code == 201 and added.json()["member_count"] == 1
    members = await api.call("GET", f"/api/v1/groups/{group}/members", api.staff_token)
    assert [m["id"] for m in members.json()["members"]] == [api.user]
    patched = await api.call(
        "PATCH", f"/api/v1/groups/{group}", api.staff_token, {"description": "operations"}
    )
    assert patched.json()["description"] == "operations" and patched.json()["name"] == "ops"
    listed = await api.call("GET", "/api/v1/groups", api.staff_token)
    assert [g["name"] for g in listed.json()["groups"]] == ["ops"]
    assert listed.json()["next_cursor"] is None
    removed = await api.call(
        "DELETE", f"/api/v1/groups/{group}/members/{api.user}", api.staff_token
    )
    assert removed.status_code == 200
    assert_problem(await api.call("GET", "/api/v1/groups", api.user_token), 403, "policy-denied")
    gone = await api.call("DELETE", f"/api/v1/groups/{group}", api.staff_token)
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert_problem(
        await api.call("GET", f"/api/v1/groups/{group}", api.staff_token), 404, "not-found"
    )


async def test_server_groups_tags_and_grants(api: Api) -> None:
    web = await api.services.servers.create(api.ws, "web-1", tags={"env": "prod"})
    await api.services.servers.create(api.ws, "db-1")
    made = await api.call("POST", "/api/v1/server-groups", api.staff_token, {"name": "web"})
    assert made.status_code == 201
    sg = made.json()["id"]
    put = await api.call(
        "POST", f"/api/v1/server-groups/{sg}/servers", api.staff_token, {"server_id": web.id}
    )
    assert put.status_code == 201 and put.json()["servers"] == [{"id": web.id, "name": "web-1"}]
    tags = await api.call(
        "PATCH", f"/api/v1/servers/{web.id}", api.staff_token, {"tags": {"env": "staging"}}
    )
    assert tags.status_code == 200 and tags.json()["tags"] == {"env": "staging"}
    bad_tags = await api.call("PATCH", f"/api/v1/servers/{web.id}", body={"tags": {"a b": "x"}})
    assert_problem(bad_tags, 400, "invalid-request")

    group = await api.services.groups.create(api.ws, "devs")
    await api.services.groups.add_member(api.ws, group.id, api.user, actor=SYSTEM)
    by_group = await api.call(
        "POST",
        "/api/v1/grants",
        api.staff_token,
        {"group_id": group.id, "server_group_id": sg, "level": "terminal", "unix_users": ["app"]},
    )
    assert by_group.status_code == 201, by_group.text
    direct = await api.call(
        "POST",
        "/api/v1/grants",
        api.staff_token,
        {"user_id": api.staff, "server_tag": "env=staging", "level": "full"},
    )
    pattern = await api.call(
        "POST",
        "/api/v1/grants",
        api.staff_token,
        {"user_id": api.root, "server_pattern": "db-*", "level": "read-only"},
    )
    assert direct.status_code == pattern.status_code == 201
    for bad in (
        {"user_id": api.user, "group_id": group.id, "server_pattern": "*", "level": "full"},
        {"user_id": api.user, "level": "full"},
        {"user_id": api.user, "server_pattern": "*", "level": "root"},
        {"user_id": api.user, "server_pattern": "*", "level": "full", "unix_users": ["-x"]},
    ):
        assert_problem(await api.call("POST", "/api/v1/grants", body=bad), 400, "invalid-request")

    async def ids(**params: str) -> list[str]:
        answer = await api.call("GET", "/api/v1/grants", api.staff_token, **params)
        assert answer.status_code == 200, answer.text
        return [g["id"] for g in answer.json()["grants"]]

    assert await ids(user_id=api.user) == [by_group.json()["id"]]  # through the group
    assert await ids(group_id=group.id) == [by_group.json()["id"]]
    assert set(await ids(server_id=web.id)) == {by_group.json()["id"], direct.json()["id"]}
    assert len(await ids()) == 3
    one = await api.call("GET", f"/api/v1/grants/{pattern.json()['id']}", api.staff_token)
    assert one.json()["server_pattern"] == "db-*" and one.json()["level"] == "read-only"
    assert_problem(await api.call("GET", "/api/v1/grants", api.user_token), 403, "policy-denied")
    out = await api.call("DELETE", f"/api/v1/server-groups/{sg}/servers/{web.id}", api.staff_token)
    assert out.status_code == 200
    gone = await api.call("DELETE", f"/api/v1/server-groups/{sg}", api.staff_token)
    assert gone.status_code == 200
    assert await ids(group_id=group.id) == []  # the grant on the server group went with it


# -- tokens -------------------------------------------------------------------------------


async def test_tokens_create_list_and_scopes(api: Api) -> None:
    made = await api.call(
        "POST",
        "/api/v1/tokens",
        api.user_token,
        {"name": "ci", "scope": "read", "expires_in_days": 30},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["secret"].startswith(f"crlpat_{body['id']}_") and body["scope"] == "read"
    assert body["last_used_at"] is None
    read_token = body["secret"]
    shown = await api.call("GET", f"/api/v1/tokens/{body['id']}", api.user_token)
    assert shown.status_code == 200 and "secret" not in shown.json()
    assert read_token not in shown.text

    await api.call("GET", "/api/v1/whoami", read_token)
    listed = await api.call("GET", "/api/v1/tokens", read_token)
    mine = {t["id"]: t for t in listed.json()["tokens"]}
    assert mine[body["id"]]["last_used_at"] is not None and len(mine) == 2
    wider = await api.call(
        "POST", "/api/v1/tokens", api.user_token, {"name": "x", "scope": "admin"}
    )
    assert_problem(wider, 403, "forbidden")  # a write token cannot mint an admin token
    never = await api.call(
        "POST", "/api/v1/tokens", body={"name": "forever", "scope": "read", "expires_in_days": None}
    )
    assert never.status_code == 201 and never.json()["expires_at"] is None
    odd = await api.call(
        "POST", "/api/v1/tokens", body={"name": "x", "scope": "read", "expires_in_days": 7}
    )
    assert_problem(odd, 400, "invalid-request")

    others = await api.call("GET", "/api/v1/tokens", api.user_token, user_id=api.staff)
    assert_problem(others, 403, "policy-denied")
    staff_view = await api.call("GET", "/api/v1/tokens", api.staff_token, user_id=api.user)
    assert len(staff_view.json()["tokens"]) == 2

    # Every call made with a token is audited under the token's id.
    requests = [e for e in await api.events("api.request") if e.credential_id == body["id"]]
    assert [e.target for e in requests] == ["/api/v1/whoami", "/api/v1/tokens"]
    (created,) = [e for e in await api.events("token.created") if e.target == body["id"]]
    assert created.credential_id != "" and created.actor_id == api.user


async def test_read_scope_token_cannot_write(api: Api) -> None:
    """Every write route that takes tokens (declared scope write or admin) refuses a read
    token with 403, audited, before it touches anything; with a superuser's token, so only
    scope counts. Browser-only flows (login, MFA ceremonies) never take a token."""
    _, read = await api.token(api.root, TokenScope.READ)
    routes = [
        (method, route.path)
        for route in api.app.routes
        if isinstance(route, Route)
        and (spec := operation_of(route.endpoint)) is not None
        and spec.authenticated
        and spec.scope != "read"
        and not route.path.startswith(BROWSER_ONLY)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]
    assert len(routes) >= 15
    for method, path in routes:
        url = path.replace("{", "").replace("}", "")  # any id: scope is checked first
        answer = await api.call(method, url, read, {})
        assert_problem(answer, 403, "forbidden")
    denied = [e for e in await api.events("action.denied") if e.actor_id == api.root]
    assert len(denied) == len(routes)
    assert all(json.loads(e.details)["reason"] == "token scope" for e in denied)


async def test_revoked_and_expired_tokens_are_refused_at_once(api: Api) -> None:
    made = await api.call("POST", "/api/v1/tokens", api.user_token, {"name": "x", "scope": "write"})
    token_id, secret = made.json()["id"], made.json()["secret"]
    assert (await api.call("GET", "/api/v1/whoami", secret)).status_code == 200
    revoked = await api.call("DELETE", f"/api/v1/tokens/{token_id}", api.user_token)
    assert revoked.status_code == 200
    body = assert_problem(await api.call("GET", "/api/v1/whoami", secret), 401, "unauthenticated")
    assert body["detail"] == "token revoked"
    api.clock.advance(days=31)  # the fixture's tokens live 30 days
    body = assert_problem(await api.call("GET", "/api/v1/whoami"), 401, "unauthenticated")
    assert body["detail"] == "token expired"
    reasons = [json.loads(e.details)["reason"] for e in await api.events("token.refused")]
    assert reasons == ["revoked", "expired"]


# -- service accounts ---------------------------------------------------------------------


async def test_service_accounts(api: Api) -> None:
    made = await api.call(
        "POST",
        "/api/v1/service-accounts",
        api.staff_token,
        {"name": "deployer", "description": "CI"},
    )
    assert made.status_code == 201, made.text
    account = made.json()
    assert account["kind"] == "service" and account["email"] == "deployer@service.invalid"
    as_staff = await api.call(
        "POST", "/api/v1/service-accounts", api.staff_token, {"name": "boss", "role": "staff"}
    )
    assert_problem(as_staff, 403, "policy-denied")  # a staff account is a superuser's call
    _, user_admin = await api.token(api.user)  # an admin-scope token: the role decides
    assert_problem(
        await api.call("POST", "/api/v1/service-accounts", user_admin, {"name": "mine"}),
        403,
        "policy-denied",
    )
    base = f"/api/v1/service-accounts/{account['id']}"
    minted = await api.call(
        "POST", base + "/tokens", api.staff_token, {"name": "ci", "scope": "write"}
    )
    assert minted.status_code == 201
    secret = minted.json()["secret"]
    who = await api.call("GET", "/api/v1/whoami", secret)
    assert who.json()["user"]["id"] == account["id"]
    (request,) = [e for e in await api.events("api.request") if e.actor_id == account["id"]]
    assert request.actor_type == "service" and request.credential_id == minted.json()["id"]
    assert_problem(await api.call("GET", "/api/v1/users", secret), 403, "policy-denied")
    assert_problem(
        await api.call("GET", f"/api/v1/users/{account['id']}"), 404, "not-found"
    )  # not a person
    listed = await api.call("GET", "/api/v1/service-accounts", api.staff_token)
    assert [a["id"] for a in listed.json()["service_accounts"]] == [account["id"]]
    tokens = await api.call("GET", base + "/tokens", api.staff_token)
    assert [t["created_by"] for t in tokens.json()["tokens"]] == [api.staff]

    with pytest.raises(Exception, match="no password"):
        await api.services.accounts.set_password(api.ws, account["id"], "x", actor=SYSTEM)
    login = await api.client.post(
        "/api/v1/auth/login", json={"email": account["email"], "password": "whatever-it-is"}
    )
    assert_problem(login, 401, "unauthenticated")
    provider = await api.services.sso.create_provider(
        api.ws, "okta", SsoProtocol.OIDC, config={"issuer": "https://idp.example"}
    )
    with pytest.raises(AuthenticationFailed):  # an IdP asserting its address gets nowhere
        await api.services.sso.sign_in(provider, SsoAssertion("sub-ci", account["email"]))
    refused = [json.loads(e.details) for e in await api.events("sso.refused")]
    assert refused[-1]["reason"] == "a service account cannot sign in"

    off = await api.call("PATCH", base, api.staff_token, {"disabled": True})
    assert off.status_code == 200 and off.json()["disabled"] is True
    assert_problem(await api.call("GET", "/api/v1/whoami", secret), 401, "unauthenticated")
    await api.call("PATCH", base, api.staff_token, {"disabled": False})
    retired = await api.call("DELETE", base, api.staff_token)
    assert retired.json() == {"retired": True, "tokens_revoked": 1, "sessions_ended": 0}
    assert (await api.services.users.get(api.ws, account["id"])).disabled


# -- audit --------------------------------------------------------------------------------


async def test_audit_query_cursor_and_export(api: Api) -> None:
    for n in range(4):
        await api.services.groups.create(api.ws, f"g{n}", actor=SYSTEM)
        api.clock.advance(minutes=1)
    assert_problem(
        await api.call("GET", "/api/v1/audit/events", api.user_token), 403, "policy-denied"
    )
    walked: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"action": "group.*", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await api.call("GET", "/api/v1/audit/events", api.staff_token, **params)
        assert page.status_code == 200, page.text
        walked += [e["seq"] for e in page.json()["events"]]
        assert all(e["action"] == "group.created" for e in page.json()["events"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(walked) == 4 and walked == sorted(walked)
    newest = await api.call(
        "GET",
        "/api/v1/audit/events",
        api.staff_token,
        action="group.created",
        order="desc",
        limit=2,
    )
    assert [e["seq"] for e in newest.json()["events"]] == walked[::-1][:2]
    rest = await api.call(
        "GET",
        "/api/v1/audit/events",
        api.staff_token,
        action="group.created",
        order="desc",
        cursor=newest.json()["next_cursor"],
    )
    assert [e["seq"] for e in rest.json()["events"]] == walked[::-1][2:]
    mixed = await api.call(
        "GET", "/api/v1/audit/events", api.staff_token, cursor=newest.json()["next_cursor"]
    )
    assert_problem(mixed, 400, "invalid-request")  # a desc cursor is not an asc one
    window = await api.call(
        "GET",
        "/api/v1/audit/events",
        api.staff_token,
        action="group.created",
        since="2026-01-01T12:01:00",
        until="2026-01-01T12:03:00+00:00",
    )
    assert [e["details"]["name"] for e in window.json()["events"]] == ["g1", "g2"]
    mine = await api.call(
        "GET", "/api/v1/audit/events", api.staff_token, actor=api.staff, category="resource_access"
    )
    assert {e["action"] for e in mine.json()["events"]} == {"api.request"}
    assert all(e["actor_id"] == api.staff for e in mine.json()["events"])
    await api.call("GET", "/api/v1/workspace", api.user_token)  # a denial to find
    denied = await api.call("GET", "/api/v1/audit/events", api.staff_token, outcome="denied")
    assert {e["action"] for e in denied.json()["events"]} == {"action.denied"}
    server = await api.services.servers.create(api.ws, "web-1")
    on_server = await api.call("GET", "/api/v1/audit/events", api.staff_token, server=server.id)
    assert [e["action"] for e in on_server.json()["events"]] == ["server.created"]
    for bad in ({"since": "yesterday"}, {"category": "gossip"}, {"order": "up"}):
        answer = await api.call("GET", "/api/v1/audit/events", api.staff_token, **bad)
        assert_problem(answer, 400, "invalid-request")

    export = await api.call("GET", "/api/v1/audit/export", api.staff_token, action="group.*")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [e["seq"] for e in lines] == walked
    backwards = await api.call(
        "GET", "/api/v1/audit/export", api.staff_token, action="group.*", order="desc"
    )
    assert [json.loads(line)["seq"] for line in backwards.text.splitlines()] == walked[::-1]
    everything = await api.call("GET", "/api/v1/audit/export", api.staff_token)
    seqs = [json.loads(line)["seq"] for line in everything.text.splitlines()]
    assert seqs == list(range(1, seqs[-1] + 1))  # the whole chain, in order, no gaps
    assert json.loads(everything.text.splitlines()[-1])["action"] == "audit.exported"


# -- rate limits --------------------------------------------------------------------------


async def test_token_creation_and_bearer_guessing_are_rate_limited(api: Api) -> None:
    from api.ratelimits import TOKENS_PER_HOUR

    for n in range(TOKENS_PER_HOUR):
        made = await api.call("POST", "/api/v1/tokens", body={"name": f"t{n}", "scope": "read"})
        assert made.status_code == 201
    limited = await api.call("POST", "/api/v1/tokens", body={"name": "one-more", "scope": "read"})
    assert_problem(limited, 429, "rate-limited")
    assert int(limited.headers["retry-after"]) >= 1
    (event,) = await api.events("api.rate_limited")
    assert event.outcome == "denied" and event.actor_id == api.root

    from api.ratelimits import BEARER_FAILURES_PER_MINUTE

    guess = f"crlpat_{'a' * 32}_{'b' * 48}"
    for _ in range(BEARER_FAILURES_PER_MINUTE):
        assert_problem(await api.call("GET", "/api/v1/whoami", guess), 401, "unauthenticated")
    blocked = await api.call("GET", "/api/v1/whoami", api.user_token)  # same address
    assert_problem(blocked, 429, "rate-limited")
    assert int(blocked.headers["retry-after"]) >= 1


async def test_nul_characters_are_a_bad_request_not_a_crash(api: Api) -> None:
    """PostgreSQL cannot store or even compare a NUL: refused at the edge, on every route
    (api/guard.py): in a path no id can match, so 404; in a query or a body, 400."""
    for method, path in (
        ("GET", "/api/v1/users/a%00b"),
        ("GET", "/api/v1/servers/a%00b"),
        ("DELETE", "/api/v1/tokens/%00"),
    ):
        assert_problem(await api.call(method, path), 404, "not-found")
    for method, path, body in (
        ("GET", "/api/v1/users?email_prefix=a%00", None),
        ("GET", "/api/v1/audit/events?actor=%00", None),
        ("POST", "/api/v1/groups", {"name": "ops", "description": "a\u0000"}),
        ("POST", "/api/v1/users", {"email": "a\u0000@acme.test"}),
        ("PATCH", "/api/v1/servers/x", {"tags": {"env\u0000": "x"}}),
    ):
        answer = await api.call(method, path, body=body)
        body_text = assert_problem(answer, 400, "invalid-request")["detail"]
        assert "NUL" in str(body_text), (method, path)
    login = await api.client.post(
        "/api/v1/auth/login", json={"email": "root@acme.test", "password": "x\u0000"}
    )
    assert_problem(login, 400, "invalid-request")


async def test_login_is_rate_limited_per_source_address(api: Api) -> None:
    """Different accounts, one address: the per-source limit answers 429 with Retry-After,
    audited (the per-account lockout is tested with browser sessions)."""
    limit = api.app.state.identity.login.per_source.limit
    for n in range(limit):
        answer = await api.client.post(
            "/api/v1/auth/login",
            json={"workspace": "acme", "email": f"nobody{n}@acme.test", "password": "pw-x"},
        )
        assert_problem(answer, 401, "unauthenticated")
    limited = await api.client.post(
        "/api/v1/auth/login",
        json={"workspace": "acme", "email": "root@acme.test", "password": "pw-x"},
    )
    assert_problem(limited, 429, "rate-limited")
    assert int(limited.headers["retry-after"]) >= 1
    reasons = [json.loads(e.details)["reason"] for e in await api.events("login.failed")]
    assert reasons == ["unknown user"] * limit + ["rate limited"]
