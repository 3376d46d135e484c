"""Rate limits on the token endpoints, per source address and per account.

Password login is limited inside ``idp/passwords.py`` (per source and per account, with
lockout); this module limits what the REST API adds: failed bearer-token attempts per
source address (a guessing client gets 429 before it gets another 401), and minting
tokens per source and per account. It reuses :class:`idp.ratelimit.RateLimiter` (per
process, sliding window) and answers with :class:`idp.errors.RateLimited`, which the
problem handler turns into 429 ``rate-limited`` with ``Retry-After``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from broker.audit import Actor, Category, Outcome
from broker.services import Services
from idp.errors import RateLimited
from idp.ratelimit import RateLimiter

__all__ = [
    "ApiLimits",
    "bearer_failed",
    "bearer_gate",
    "limit_token_creation",
]

log = logging.getLogger("corral.api")

BEARER_FAILURES_PER_MINUTE = 30
TOKENS_PER_HOUR = 30


@dataclass
class ApiLimits:
    bearer_failures: RateLimiter = field(
        default_factory=lambda: RateLimiter(BEARER_FAILURES_PER_MINUTE, 60.0)
    )
    token_source: RateLimiter = field(default_factory=lambda: RateLimiter(TOKENS_PER_HOUR, 3600.0))
    token_account: RateLimiter = field(default_factory=lambda: RateLimiter(TOKENS_PER_HOUR, 3600.0))


def limits_of(conn: HTTPConnection) -> ApiLimits:
    limits: ApiLimits | None = getattr(conn.app.state, "api_limits", None)
    if limits is None:
        limits = conn.app.state.api_limits = ApiLimits()
    return limits


def _source(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client is not None else ""


def bearer_gate(conn: HTTPConnection) -> None:
    """429 while this source address is over its budget of failed bearer attempts."""
    wait = limits_of(conn).bearer_failures.wait(_source(conn))
    if wait:
        log.warning("bearer attempts from %s rate limited", _source(conn))
        raise RateLimited("too many failed token attempts from this address; slow down", wait)


def bearer_failed(conn: HTTPConnection) -> None:
    """Count one failed bearer attempt (the refusal itself is audited by the token service
    when the token names a workspace; an unknown token has no workspace to audit in)."""
    limits_of(conn).bearer_failures.hit(_source(conn))


async def limit_token_creation(
    conn: HTTPConnection, services: Services, workspace_id: str, account: str, actor: Actor
) -> None:
    """Count one token minted by ``account``; past the limit, audit and answer 429."""
    limits = limits_of(conn)
    for limiter, key, per in (
        (limits.token_source, _source(conn), "source"),
        (limits.token_account, f"{workspace_id}|{account}", "account"),
    ):
        wait = limiter.hit(key)
        if wait:
            await services.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "api.rate_limited",
                outcome=Outcome.DENIED,
                actor=actor,
                target=conn.url.path[:200],
                details={"limit": "token creation", "per": per, "source": _source(conn)},
            )
            raise RateLimited("too many tokens created; try again later", wait)
