"""Policy text over the API: read the source in force, validate or test a candidate, and
replace the policy file (issue #7).

``GET /api/v1/policy/source``, ``POST /api/v1/policy/validate`` and
``POST /api/v1/policy/test`` are ``policy.read``; ``PUT /api/v1/policy`` is
``policy.update`` with an admin-scope token. A candidate is loaded into a fresh engine
(:mod:`broker.policy.candidate`); the one in force changes only through ``PUT``, which
validates first, writes the configured file(s) atomically (``<file>.prev`` kept) and
reloads. The policy file is broker-wide, so ``PUT`` is refused (409) while more than one
workspace shares it, and for the policy shipped in the package (set
``CORRAL_POLICY_FILE``). Every refusal is audited (``action.denied``); a replacement is
audited as ``policy.replaced`` with both versions, never the text.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate
from api.authz import authorize, refuse
from api.policy import PolicyRefusedProblem, PolicyReloaded, reloaded
from api.problems import ApiError, BadRequest, ConflictProblem
from api.spec import Model, body_of, operation
from api.state import runtime_of, services_of
from broker.audit import Category, Outcome
from broker.errors import InvalidInput
from broker.policy.candidate import (
    Candidate,
    LoadProblem,
    PolicyText,
    candidate_of,
    check_isolated,
    is_packaged,
    load_candidate,
    source_texts,
    write_files,
    writes_for,
)
from broker.policy.cases import CaseError, judge, parse_cases
from policies import PolicyEngine, compile_engine
from policies.engine import RuleEngine

__all__ = ["policy_admin_routes"]

MAX_POLICY_CHARS = 256 * 1024
"""Per file; a body carries at most a model and a policy, plus cases for ``/test``."""
MAX_BODY = 3 * MAX_POLICY_CHARS + 4096
MAX_CASES = 2000


class PolicyFile(Model):
    name: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^/\\]+$")]
    """A label for error messages (``name:line``), never a path on the broker."""
    text: Annotated[str, Field(max_length=MAX_POLICY_CHARS)]


class PolicyIn(Model):
    backend: Literal["polar", "casbin"] | None = None
    """Default: the backend in force."""
    files: Annotated[list[PolicyFile], Field(min_length=1, max_length=2)]
    """Polar: one file. Casbin: the policy (``*.csv``) and optionally its model."""


class PolicyTestIn(Model):
    cases_yaml: Annotated[str, Field(min_length=1, max_length=MAX_POLICY_CHARS)]
    """A decision table, the format of ``corral policy test`` (see docs/policy.md)."""
    backend: Literal["polar", "casbin"] | None = None
    files: Annotated[list[PolicyFile], Field(min_length=1, max_length=2)] | None = None
    """The policy to test; absent: the policy in force."""


class PolicySourceOut(BaseModel):
    backend: str
    files: list[PolicyFile]
    version: str


class PolicyErrorOut(BaseModel):
    file: str
    line: int | None
    message: str


class ValidationOut(BaseModel):
    valid: bool
    errors: list[PolicyErrorOut]
    version: str | None
    """The candidate's version hash when it loads."""


class CaseResultOut(BaseModel):
    line: int
    name: str
    ok: bool
    expected: str
    got: str
    rule_id: str
    problem: str | None


class TestReportOut(BaseModel):
    passed: int
    failed: int
    version: str
    """The version of the policy the cases ran against."""
    results: list[CaseResultOut]


class NotReplaceable(ConflictProblem):
    code, title = "policy-not-replaceable", "The policy cannot be replaced over the API here"


def _problems(found: LoadProblem) -> list[dict[str, object]]:
    return [{"file": found.file, "line": found.line, "message": found.message}]


def _candidate(request: Request, body: PolicyIn | PolicyTestIn) -> Candidate:
    source = runtime_of(request).policy.source
    files = [PolicyText(f.name, f.text) for f in body.files or ()]
    try:
        return candidate_of(body.backend or source.backend, files, source)
    except InvalidInput as exc:
        raise BadRequest(str(exc), field="files") from None


async def _load(candidate: Candidate) -> RuleEngine | LoadProblem:
    """A fresh engine from the candidate, loaded in-process only after a child process
    loaded it without error (:func:`check_isolated`)."""
    checked = await check_isolated(candidate)
    if isinstance(checked, LoadProblem):
        return checked
    return await asyncio.to_thread(load_candidate, candidate)


@operation(summary="The policy text in force", tag="policy", ok=PolicySourceOut, errors=(403, 409))
async def policy_source(request: Request) -> JSONResponse:
    principal = await authenticate(request, services_of(request))
    await authorize(request, principal, "policy.read")
    policy = runtime_of(request).policy
    try:
        texts = await asyncio.to_thread(source_texts, policy.source)
    except (OSError, UnicodeDecodeError):
        raise ApiError("the policy file cannot be read on the broker") from None
    return JSONResponse(
        {
            "backend": policy.source.backend,
            "files": [{"name": t.name, "text": t.text} for t in texts],
            "version": policy.version,
        }
    )


@operation(
    summary="Check that a candidate policy loads, without putting it in force",
    tag="policy",
    body=PolicyIn,
    ok=ValidationOut,
    errors=(400, 403, 409),
)
async def policy_validate(request: Request) -> JSONResponse:
    principal = await authenticate(request, services_of(request))
    await authorize(request, principal, "policy.read")
    body = await body_of(request, PolicyIn, max_bytes=MAX_BODY)
    checked = await check_isolated(_candidate(request, body))
    if isinstance(checked, LoadProblem):
        return JSONResponse({"valid": False, "errors": _problems(checked), "version": None})
    return JSONResponse({"valid": True, "errors": [], "version": checked})


@operation(
    summary="Run a decision table against a candidate policy or the one in force",
    tag="policy",
    body=PolicyTestIn,
    ok=TestReportOut,
    errors=(400, 403, 409, 422),
)
async def policy_test(request: Request) -> JSONResponse:
    principal = await authenticate(request, services_of(request))
    await authorize(request, principal, "policy.read")
    body = await body_of(request, PolicyTestIn, max_bytes=MAX_BODY)
    try:
        cases = await asyncio.to_thread(parse_cases, body.cases_yaml, "cases_yaml")
    except CaseError as exc:
        raise BadRequest(str(exc), field="cases_yaml", line=exc.line) from None
    if len(cases) > MAX_CASES:
        raise BadRequest(f"at most {MAX_CASES} cases per request", field="cases_yaml")
    engine: PolicyEngine
    fast: PolicyEngine | None = None
    if body.files is None:
        engine = runtime_of(request).policy.engine()  # exactly what decides now
    else:
        loaded = await _load(_candidate(request, body))
        if isinstance(loaded, LoadProblem):
            raise PolicyRefusedProblem(
                f"{loaded.file}:{loaded.line or '?'}: {loaded.message}",
                errors=_problems(loaded),
            )
        engine, fast = loaded, await asyncio.to_thread(compile_engine, loaded)
    verdicts = await asyncio.to_thread(judge, cases, engine, fast)
    failed = sum(1 for v in verdicts if v.problem is not None)
    return JSONResponse(
        {
            "passed": len(verdicts) - failed,
            "failed": failed,
            "version": engine.version,
            "results": [
                {
                    "line": v.case.line,
                    "name": v.case.name,
                    "ok": v.problem is None,
                    "expected": v.case.effect.value,
                    "got": v.decision.effect.value,
                    "rule_id": v.decision.rule_id,
                    "problem": v.problem,
                }
                for v in verdicts
            ],
        }
    )


async def _refuse_replace(request: Request, principal: Principal, reason: str) -> None:
    await refuse(request, principal, "policy.update", reason=reason)


@operation(
    summary="Replace the policy file and put it in force",
    tag="policy",
    body=PolicyIn,
    ok=PolicyReloaded,
    scope="admin",
    errors=(400, 403, 409, 422),
)
async def policy_replace(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "policy.update")
    body = await body_of(request, PolicyIn, max_bytes=MAX_BODY)
    policy = runtime_of(request).policy
    source = policy.source
    candidate = _candidate(request, body)
    if candidate.backend != source.backend:
        await _refuse_replace(request, principal, "backend")
        raise NotReplaceable(
            f"the broker runs the {source.backend} backend; changing it is a setting "
            "(CORRAL_POLICY_BACKEND) on the broker host"
        )
    live = [w for w in await services.workspaces.list_all() if w.deleted_at is None]
    if len(live) > 1:
        await _refuse_replace(request, principal, "shared")
        raise NotReplaceable(
            f"the policy is shared by {len(live)} workspaces; replace it on the broker host"
        )
    writes = writes_for(source, candidate)
    if any(is_packaged(path) for path, _ in writes):
        await _refuse_replace(request, principal, "packaged default")
        raise NotReplaceable(
            "the broker runs a policy file shipped with Corral; set CORRAL_POLICY_FILE "
            "(and CORRAL_CASBIN_MODEL_FILE for a Casbin model) to a file of your own "
            "to replace it over the API"
        )
    loaded = await check_isolated(candidate)
    if isinstance(loaded, LoadProblem):
        await _refuse_replace(request, principal, "invalid")
        raise PolicyRefusedProblem(
            f"{loaded.file}:{loaded.line or '?'}: {loaded.message}; nothing was written",
            errors=_problems(loaded),
            version=policy.version,
        )
    result = await policy.replace(
        lambda: write_files(writes),
        actor=principal.actor,
        workspace_id=principal.workspace_id,
    )
    answer = reloaded(policy, result)  # a refusal: the files changed between check and load
    await services.audit.emit(
        principal.workspace_id,
        Category.CONFIGURATION,
        "policy.replaced",
        outcome=Outcome.SUCCESS,
        actor=principal.actor,
        target=str(source.file)[-200:],
        details={
            "backend": source.backend,
            "version": result.new_version,
            "old_version": result.old_version,
            "changed": result.swapped,
        },
    )
    return answer


def policy_admin_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/policy/source", policy_source, methods=["GET"]),
        Route("/api/v1/policy/validate", policy_validate, methods=["POST"]),
        Route("/api/v1/policy/test", policy_test, methods=["POST"]),
        Route("/api/v1/policy", policy_replace, methods=["PUT"]),
    ]
