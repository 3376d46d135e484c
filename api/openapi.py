"""The OpenAPI 3.1 document, generated from the routes' own :func:`api.spec.operation`
declarations, so the document and the request validation cannot drift apart.

Walks the app's routes (through mounts); every HTTP route whose handler carries an
operation becomes one operation per method. Besides what a route declares, the document
adds the answers every route of its kind can give:

- ``500`` always (an unexpected error, without details);
- ``401`` and ``429`` for authenticated routes (too many failed bearer attempts from one
  address answer 429 before any token is checked, :mod:`api.ratelimits`), and ``403`` for
  authenticated unsafe methods (a cookie request without the CSRF header is refused
  before the handler runs);
- ``400`` when the route takes a body or a query string (validation);
- ``404`` when the path has parameters (an unknown or foreign id).

Errors are RFC 9457 problem+json with the shared ``Problem`` schema. Models become
``components.schemas`` (request models in validation mode, responses in serialization
mode); pydantic's ``$defs`` are hoisted there too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel, RootModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from api.spec import Operation, operation, operation_of

__all__ = ["OPENAPI_PATH", "RoutedOperation", "build_document", "openapi_routes", "operations"]

OPENAPI_PATH = "/api/v1/openapi.json"
REF = "#/components/schemas/{model}"
PROBLEM_MEDIA_TYPE = "application/problem+json"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CONVERTER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z_]+)?\}")

TAGS: dict[str, str] = {
    "meta": "The API itself: health and this document.",
    "identity": "Who is calling, logging in and out, passwords, invitations.",
    "mfa": "Second factors and step-up (browser sessions only).",
    "admin": "Workspace security rules and administrative resets.",
    "servers": "Servers, their agents and registration.",
    "sessions": "Terminal sessions, tickets and recordings.",
    "sharing": "Share links, joining and observing live sessions.",
    "approvals": "Approval requests and live events.",
    "policy": "The policy in force and exec-mode commands.",
    "revocation": "Calls that take access away and end the sessions it allowed.",
    "audit": "The audit log.",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": (
        "RFC 9457 problem details. `type` is a stable `urn:corral:problem:<code>`; "
        "`detail` is safe to show; some problems add fields (e.g. `rule_id`, `retry_after`)."
    ),
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "pattern": "^urn:corral:problem:[a-z0-9-]+$"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A personal access token (`crlpat_…`) with scope read, write or admin.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "corral_session",
        "description": "The browser session from `POST /api/v1/auth/login`.",
    },
    "csrfHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Corral-CSRF",
        "description": "The login answer's `csrf_token`; cookie requests with unsafe methods.",
    },
}


@dataclass(frozen=True)
class RoutedOperation:
    """One method of one route, with the declaration its handler carries (if any)."""

    path: str
    """The OpenAPI path template (converters like ``{id:str}`` stripped)."""
    method: str
    route: Route
    spec: Operation | None


def _walk(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _walk(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            yield prefix + route.path, route


def operations(routes: Sequence[BaseRoute]) -> Iterator[RoutedOperation]:
    """Every HTTP method of every route (HEAD, which Starlette adds to GET, left out)."""
    for raw_path, route in _walk(routes):
        path = _CONVERTER.sub(r"{\1}", raw_path)
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            yield RoutedOperation(path, method, route, operation_of(route.endpoint))


def package_version() -> str:
    try:
        return version("corral")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def _operation_ids(found: list[RoutedOperation]) -> dict[tuple[str, str], str]:
    """The declared ``operation_id``, else the handler's name, or ``module_name`` where two
    handlers share a name; a handler serving several methods gets the method appended (and
    a number, if still taken)."""
    names: dict[tuple[str, str], str] = {}
    by_name: dict[str, set[object]] = {}
    for op in found:
        by_name.setdefault(op.route.endpoint.__name__, set()).add(op.route.endpoint)
    seen: set[str] = set()
    for op in found:
        endpoint = op.route.endpoint
        name = endpoint.__name__
        if op.spec is not None and op.spec.operation_id:
            name = op.spec.operation_id
        elif len(by_name[name]) > 1:
            name = f"{endpoint.__module__.rsplit('.', 1)[-1]}_{name}"
        if name in seen:
            name = f"{name}_{op.method.lower()}"
        base, n = name, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        names[(op.path, op.method)] = name
    return names


def _schemas(
    found: list[RoutedOperation],
) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]], dict[str, Any]]:
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = set()
    for op in found:
        assert op.spec is not None
        for model, mode in (
            (op.spec.body, "validation"),
            (op.spec.query, "validation"),
            (op.spec.ok, "serialization"),
        ):
            if model is not None:
                wanted.add((model, mode))  # type: ignore[arg-type]
    ordered = sorted(wanted, key=lambda pair: (pair[0].__module__, pair[0].__name__, pair[1]))
    found_refs, top = models_json_schema(ordered, ref_template=REF)
    refs = {pair: found_refs[pair] for pair in ordered}
    return refs, dict(top.get("$defs", {}))


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        resolved: dict[str, Any] = components[ref.rsplit("/", 1)[-1]]
        return resolved
    return schema


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in prop.items() if k not in ("title", "description")},
        }
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _path_parameters(op: RoutedOperation) -> list[dict[str, Any]]:
    params = []
    for name, convertor in op.route.param_convertors.items():
        kind = (
            "integer"
            if isinstance(convertor, IntegerConvertor)
            else "number"
            if isinstance(convertor, FloatConvertor)
            else "string"
        )
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": kind}})
    return params


def _security(op: RoutedOperation) -> list[dict[str, list[str]]]:
    assert op.spec is not None
    if not op.spec.authenticated:
        return []
    cookie: dict[str, list[str]] = {"sessionCookie": []}
    if op.method in UNSAFE:
        cookie["csrfHeader"] = []
    return [cookie] if op.spec.cookie_only else [{"bearerToken": []}, cookie]


def _error_statuses(op: RoutedOperation) -> list[int]:
    assert op.spec is not None
    statuses = set(op.spec.errors) | {500}
    if op.spec.authenticated:
        statuses.update((401, 429))
        if op.method in UNSAFE:
            statuses.add(403)
    if op.spec.body is not None or op.spec.query is not None:
        statuses.add(400)
    if op.route.param_convertors:
        statuses.add(404)
    return sorted(statuses)


def _success(
    spec: Operation, refs: dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]]
) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": HTTPStatus(spec.status).phrase}
    if spec.status == 204:
        return answer
    if spec.ok is not None:
        answer["content"] = {spec.media_type: {"schema": refs[(spec.ok, "serialization")]}}
    else:
        answer["content"] = {spec.media_type: {}}
    return answer


def _operation_object(
    op: RoutedOperation,
    operation_id: str,
    refs: dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]],
    components: dict[str, Any],
) -> dict[str, Any]:
    spec = op.spec
    assert spec is not None
    doc = (spec.description or (op.route.endpoint.__doc__ or "")).strip()
    if spec.authenticated:
        needs = f"Token scope: `{spec.scope}`."
        if spec.cookie_only:
            needs = "Browser session cookie only (a bearer token is refused)."
        doc = f"{doc}\n\n{needs}".strip()
    out: dict[str, Any] = {
        "operationId": operation_id,
        "summary": spec.summary,
        "tags": [spec.tag],
        "security": _security(op),
    }
    if doc:
        out["description"] = doc
    if spec.authenticated:
        out["x-corral-scope"] = spec.scope
    parameters = _path_parameters(op)
    if spec.query is not None:
        parameters += _query_parameters(_resolve(refs[(spec.query, "validation")], components))
    if parameters:
        out["parameters"] = parameters
    if spec.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
        }
    responses: dict[str, Any] = {str(spec.status): _success(spec, refs)}
    for status in _error_statuses(op):
        answer: dict[str, Any] = {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": REF.format(model="Problem")}}},
        }
        if status == 429:
            answer["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "schema": {"type": "integer"},
                }
            }
        responses[str(status)] = answer
    out["responses"] = responses
    return out


def build_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document for every declared operation among ``routes``."""
    found = [op for op in operations(routes) if op.spec is not None and op.spec.in_document]
    refs, components = _schemas(found)
    if "Problem" in components:
        raise ValueError("a request or answer model must not be named Problem (the errors' schema)")
    components["Problem"] = PROBLEM_SCHEMA
    ids = _operation_ids(found)
    paths: dict[str, dict[str, Any]] = {}
    for op in found:
        item = paths.setdefault(op.path, {})
        item[op.method.lower()] = _operation_object(op, ids[(op.path, op.method)], refs, components)
    used_tags = sorted({op.spec.tag for op in found if op.spec is not None})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Corral",
            "version": package_version(),
            "description": (
                "The Corral access broker's REST API. Conventions (errors, tenancy, "
                "authentication) are in docs/api.md."
            ),
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [{"name": tag, "description": TAGS.get(tag, "")} for tag in used_tags],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


class OpenApiDocument(RootModel[dict[str, Any]]):
    """An OpenAPI 3.1 document (see https://spec.openapis.org/oas/v3.1.0)."""


@operation(
    summary="This API's OpenAPI 3.1 document",
    tag="meta",
    ok=OpenApiDocument,
    authenticated=False,
)
async def openapi_document(request: Request) -> Response:
    """Built from the app's routes on first request and kept for the life of the process."""
    body: bytes | None = getattr(request.app.state, "openapi_document", None)
    if body is None:
        document = build_document(request.app.routes)
        body = json.dumps(document, separators=(",", ":")).encode()
        request.app.state.openapi_document = body
    return Response(body, media_type="application/json")


def openapi_routes() -> list[BaseRoute]:
    return [Route(OPENAPI_PATH, openapi_document, methods=["GET"])]
