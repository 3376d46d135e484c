"""Tenancy at the API edge: another workspace's id answers exactly like a missing one
(404 ``not-found``), and every such answer to an authenticated caller is audited.

The problem handler calls :func:`audit_not_found` for every 404 it renders, so no route
has to remember to: a route only has to look ids up through the tenant-scoped services
(which raise :class:`broker.errors.NotFound` for another workspace's rows) or raise
:class:`api.problems.NotFoundProblem` for an id the caller may not see.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request

from broker.audit import Actor, Category, Outcome

__all__ = ["audit_not_found"]

log = logging.getLogger("corral.api")


async def audit_not_found(request: Request, detail: str) -> None:
    """Audit ``api.not_found`` (denied) for the authenticated caller of this request."""
    principal: Any = getattr(request.state, "principal", None)
    if principal is None:
        return  # unauthenticated callers never get as far as an id lookup
    actor = principal.actor
    assert isinstance(actor, Actor)
    try:
        await request.app.state.services.audit.emit(
            principal.workspace_id,
            Category.AUTHORIZATION,
            "api.not_found",
            outcome=Outcome.DENIED,
            actor=actor,
            target=request.url.path[:200],
            details={"method": request.method, "detail": detail[:200]},
        )
    except Exception:  # the 404 still goes out; the failure is logged, never shown
        log.exception("could not audit a not-found answer on %s", request.url.path)
