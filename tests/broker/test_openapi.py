"""The OpenAPI document in-process: every route declares an operation (so a route added
later cannot skip it), the document is valid OpenAPI 3.1 and consistent with itself, it is
served without authentication and built once; and the declared models really validate
requests (400 naming the field), with text no store can hold refused at the boundary."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from pydantic import BaseModel
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

import api.openapi
from api.openapi import OPENAPI_PATH, build_document, operations
from api.spec import operation
from broker.app import create_app
from broker.audit import SYSTEM
from broker.policy import PolicyRuntime, PolicySource
from broker.runtime import Runtime
from broker.services import Services
from broker.settings import Settings
from broker.store.models import Role, TokenScope

PROBLEM = "application/problem+json"


@dataclass
class Env:
    app: Starlette
    client: httpx.AsyncClient
    headers: dict[str, str]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The document does not depend on the backend: SQLite only."""
    return f"sqlite+aiosqlite:///{tmp_path / 'corral.db'}"


@pytest.fixture
async def env(services: Services, tmp_path: Path) -> AsyncIterator[Env]:
    ws = await services.workspaces.create("acme")
    user = await services.users.create(ws.id, "root@acme.test", role=Role.SUPERUSER)
    _, secret = await services.tokens.create(
        ws.id, user.id, name="t", scope=TokenScope.ADMIN, expires_in_days=30, actor=SYSTEM
    )
    settings = Settings(data_dir=tmp_path)
    policy = PolicyRuntime(PolicySource.from_settings(settings), services)
    app = create_app(Runtime(settings, services.db, services, policy))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://corral.test") as client:
        yield Env(app, client, {"Authorization": f"Bearer {secret}"})


async def _document(env: Env) -> dict[str, Any]:
    response = await env.client.get(OPENAPI_PATH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


async def test_every_route_declares_an_operation(env: Env) -> None:
    found = list(operations(env.app.routes))
    missing = [f"{op.method} {op.path}" for op in found if op.spec is None]
    assert missing == [], f"routes without @operation (see api/spec.py): {missing}"
    api_v1 = [op for op in found if op.path.startswith("/api/v1/")]
    assert len(api_v1) >= 50
    # WebSockets are not operations (the terminal protocol is docs/websh.md); all else is.
    sockets = [r for r in env.app.routes if isinstance(r, WebSocketRoute)]
    assert sockets and all(not isinstance(r, Route) for r in sockets)


def test_an_undeclared_route_is_reported() -> None:
    async def bare(request: Request) -> JSONResponse:
        return JSONResponse({})

    (found,) = operations([Route("/api/v1/bare/{id:int}", bare, methods=["GET"])])
    assert (found.method, found.path, found.spec) == ("GET", "/api/v1/bare/{id}", None)
    assert build_document([Route("/api/v1/bare", bare)])["paths"] == {}


async def test_document_is_valid_openapi_3_1(env: Env) -> None:
    document = await _document(env)  # no Authorization header
    OPENAPI_31_VALIDATOR.validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "Corral"
    assert document["info"]["version"] == version("corral")
    schemas = document["components"]["schemas"]
    for schema in schemas.values():
        jsonschema_rs.meta.validate(schema)
    assert set(document["components"]["securitySchemes"]) == {
        "bearerToken",
        "sessionCookie",
        "csrfHeader",
    }


async def test_document_is_consistent(env: Env) -> None:
    document = await _document(env)
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    ids: list[str] = []
    for path, item in document["paths"].items():
        assert "{" not in path or ":" not in path, path  # converters stripped
        template = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            ids.append(op["operationId"])
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == template, (method, path)
            responses = op["responses"]
            assert "500" in responses
            if op["security"]:
                assert (
                    "401" in responses
                    and "429" in responses
                    and op["x-corral-scope"] in ("read", "write", "admin")
                )
            if template:
                assert "404" in responses
            for status, answer in responses.items():
                if int(status) >= 400:
                    assert answer["content"] == {
                        PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    assert {t["name"] for t in document["tags"]} == {
        op["tags"][0] for item in document["paths"].values() for op in item.values()
    }


async def test_document_declares_what_routes_answer(env: Env) -> None:
    paths = (await _document(env))["paths"]
    assert paths["/api/v1/openapi.json"]["get"]["security"] == []
    assert paths["/api/v1/auth/login"]["post"]["security"] == []
    assert paths["/api/v1/whoami"]["get"]["security"] == [
        {"bearerToken": []},
        {"sessionCookie": []},
    ]
    # Unsafe cookie requests need the CSRF header; MFA routes take no bearer token.
    assert {"sessionCookie": [], "csrfHeader": []} in paths["/api/v1/sessions"]["post"]["security"]
    assert paths["/api/v1/auth/mfa/totp"]["post"]["security"] == [
        {"sessionCookie": [], "csrfHeader": []}
    ]
    events = paths["/api/v1/events"]["get"]["responses"]["200"]["content"]
    assert list(events) == ["text/event-stream"]
    download = paths["/api/v1/recordings/{recording_id}/download"]["get"]["responses"]["200"]
    assert list(download["content"]) == ["application/x-asciicast"]
    assert "content" not in paths["/api/v1/sessions/{session_id}"]["delete"]["responses"]["204"]
    opened = paths["/api/v1/sessions"]["post"]
    assert opened["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenSession"
    }
    assert set(opened["responses"]) == {"201", "400", "401", "403", "404", "429", "500", "503"}
    query = paths["/api/v1/approvals"]["get"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in query] == [("status", "query", False)]


async def test_document_is_built_once(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    built = 0
    real = api.openapi.build_document

    def counting(routes: Any) -> dict[str, Any]:
        nonlocal built
        built += 1
        return real(routes)

    monkeypatch.setattr(api.openapi, "build_document", counting)
    first = await env.client.get(OPENAPI_PATH)
    second = await env.client.get(OPENAPI_PATH)
    assert first.content == second.content and built == 1


async def test_bodies_are_checked_against_their_models(env: Env) -> None:
    base = {"server": "web-1", "unix_user": "deploy"}
    for body, field in (
        ({**base, "cols": "80"}, "cols"),
        ({**base, "cols": True}, "cols"),
        ({**base, "rows": 0}, "rows"),
        ({**base, "unix_user": "bad user"}, "unix_user"),
        ({**base, "colour": "red"}, "colour"),
        ({"unix_user": "deploy"}, "server"),
    ):
        response = await env.client.post("/api/v1/sessions", json=body, headers=env.headers)
        assert response.status_code == 400, body
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["type"] == "urn:corral:problem:invalid-request"
        assert problem["field"] == field and f"'{field}'" in problem["detail"]
    query = await env.client.get("/api/v1/approvals?status=maybe", headers=env.headers)
    assert query.status_code == 400 and query.json()["field"] == "status"
    fine = await env.client.get("/api/v1/approvals?status=pending", headers=env.headers)
    assert fine.status_code == 200 and fine.json() == {"approvals": []}


async def test_text_no_store_can_hold_is_refused(env: Env) -> None:
    for raw in ('{"server": "a\\u0000b", "unix_user": "x"}', '{"server": "\\ud800"}'):
        response = await env.client.post(
            "/api/v1/sessions",
            content=raw,
            headers={**env.headers, "content-type": "application/json"},
        )
        assert response.status_code == 400 and response.headers["content-type"] == PROBLEM
        assert "NUL" in response.json()["detail"]
    login = await env.client.post(
        "/api/v1/auth/login", json={"email": "\0@acme.test", "password": "x"}
    )
    assert login.status_code == 400
    path = await env.client.get("/api/v1/servers/a%00b", headers=env.headers)
    assert path.status_code == 404 and path.headers["content-type"] == PROBLEM
    query = await env.client.get("/api/v1/recordings?session_id=%00", headers=env.headers)
    assert query.status_code == 400 and query.headers["content-type"] == PROBLEM


def test_models_with_the_same_name_stay_apart() -> None:
    """Route modules written apart may both call a model ``Out``; neither may shadow the
    shared ``Problem`` schema."""
    one = type("Out", (BaseModel,), {"__annotations__": {"a": int}, "__module__": "x.one"})
    two = type("Out", (BaseModel,), {"__annotations__": {"b": str}, "__module__": "x.two"})

    def route(path: str, ok: type[BaseModel]) -> Route:
        @operation(summary=path, tag="meta", ok=ok, authenticated=False)
        async def handler(request: Request) -> JSONResponse:
            return JSONResponse({})

        return Route(path, handler, methods=["GET"])

    document = build_document([route("/one", one), route("/two", two), route("/2", two)])
    refs = [
        document["paths"][p]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        for p in ("/one", "/two")
    ]
    assert refs[0] != refs[1]
    schemas = document["components"]["schemas"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in refs} <= set(schemas)
    assert len({document["paths"][p]["get"]["operationId"] for p in ("/one", "/two", "/2")}) == 3
    problem = type("Problem", (BaseModel,), {"__annotations__": {"a": int}})
    with pytest.raises(ValueError, match="Problem"):
        build_document([route("/three", problem)])


def test_a_declared_operation_id_wins_over_the_handlers_name() -> None:
    """A handler moved to another module keeps the operationId clients were generated with."""

    def route(path: str, **pin: str) -> Route:
        @operation(summary=path, tag="meta", authenticated=False, status=204, **pin)
        async def handler(request: Request) -> JSONResponse:
            return JSONResponse({})

        return Route(path, handler, methods=["GET"])

    document = build_document([route("/a", operation_id="old_module_handler"), route("/b")])
    ids = {p: document["paths"][p]["get"]["operationId"] for p in ("/a", "/b")}
    assert ids == {"/a": "old_module_handler", "/b": "test_openapi_handler"}
