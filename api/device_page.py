"""The ``/device`` page: the small HTML form where a person signed in in this browser
approves or denies the user code a ``corral login`` shows. The JSON side of device-code
login (start, poll, approve, deny) is :mod:`api.device`, whose :func:`decide` both share.

The page has no script, no style and no frames; it needs an active browser session and
checks the CSRF token and origin of every submission (a refusal is audited). It must never
name why a browser is not signed in, never show a pending terminal to a caller over the
per-person lookup limit, and never approve without ``tokens.own.create``.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from api.auth import Principal, client_source, identity_of
from api.authz import authorize
from api.device import decide, device_of
from api.problems import ApiError
from api.spec import operation
from api.state import services_of
from broker.audit import Category, Outcome
from broker.errors import AuthenticationFailed
from broker.store.models import BrowserSessionState
from idp.sessions import COOKIE

__all__ = ["device_page_routes"]

MAX_FORM_BYTES = 4096

_HEADERS = {
    # No script, no style, no frames: the page is a form and nothing else.
    "Content-Security-Policy": (
        "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def _page(body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>Corral: sign in a terminal</title></head><body>"
        f"<h1>Sign in a terminal</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_HEADERS)


async def _signed_in(request: Request) -> tuple[Principal, str] | None:
    """The cookie's active session and its secret, or None (no page ever says why)."""
    secret = request.cookies.get(COOKIE, "")
    if not secret:
        return None
    try:
        row, user = await identity_of(request).browser.resolve(secret)
    except AuthenticationFailed:
        return None
    if row.state is not BrowserSessionState.ACTIVE:
        return None
    return Principal(user, session=row), secret


_SIGN_IN_FIRST = "<p>Sign in to Corral in this browser first, then open this page again.</p>"


_PAGE = {"tag": "auth", "authenticated": False, "media_type": "text/html", "in_document": False}


@operation(summary="The page where a signed-in person approves a device code", **_PAGE)
async def device_page(request: Request) -> HTMLResponse:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _page(_SIGN_IN_FIRST, 401)
    principal, secret = signed_in
    raw = request.query_params.get("user_code", "")
    code = raw if re.fullmatch(r"[A-Za-z-]{0,16}", raw) else ""
    csrf = identity_of(request).browser.csrf_token(secret)
    asking = ""
    if code:
        # Name the terminal before the person decides (RFC 8628 5.4); each lookup counts
        # against the same per-person limit as a decision, so codes cannot be probed.
        grants = device_of(request)
        grant = None if grants.attempts.hit(principal.user.id) else grants.pending(code)
        asking = (
            f"<p>The terminal <b>{html.escape('corral login on ' + grant.client_name)}</b> "
            "asks to sign in as you.</p>"
            if grant is not None
            else "<p>No pending login has that code; check it in your terminal.</p>"
        )
    return _page(
        f"<p>Signed in as {html.escape(principal.user.email)}.</p>{asking}"
        "<p>Approve only a code shown by a <code>corral login</code> you started yourself.</p>"
        '<form method=post action="/device">'
        f'<input type=hidden name=csrf value="{html.escape(csrf)}">'
        f'<label>Code <input name=user_code value="{html.escape(code)}" '
        "autocomplete=off required maxlength=16></label> "
        "<button name=decision value=approve>Approve</button> "
        "<button name=decision value=deny>Deny</button>"
        "</form>"
    )


@operation(summary="Approve or deny a device code from the page's form", **_PAGE)
async def device_submit(request: Request) -> HTMLResponse:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _page(_SIGN_IN_FIRST, 401)
    principal, secret = signed_in
    body = await request.body()
    form = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace")) if body else {}
    field = {key: values[0] for key, values in form.items() if values}
    browser = identity_of(request).browser
    why = browser.csrf_ok("POST", secret, field.get("csrf"), request.headers.get("origin"))
    if len(body) > MAX_FORM_BYTES:
        why = "form too large"
    if why:
        await services_of(request).audit.emit(
            principal.workspace_id,
            Category.AUTHENTICATION,
            "session.csrf_refused",
            outcome=Outcome.DENIED,
            actor=principal.actor,
            target="/device",
            details={"reason": why, "method": "POST", "source": client_source(request)},
        )
        return _page("<p>This form expired. Open the page again and retry.</p>", 403)
    approve_it = field.get("decision") == "approve"
    try:
        await authorize(request, principal, "tokens.own.create")
        grant = await decide(request, principal, field.get("user_code", ""), approve=approve_it)
    except ApiError as exc:
        return _page(f"<p>{html.escape(exc.detail)}</p>", exc.status)
    verdict = "approved" if approve_it else "denied"
    return _page(
        f"<p>You {verdict} <b>{html.escape('corral login on ' + grant.client_name)}</b>. "
        "You can close this page and return to your terminal.</p>"
    )


def device_page_routes() -> list[BaseRoute]:
    return [
        Route("/device", device_page, methods=["GET"]),
        Route("/device", device_submit, methods=["POST"]),
    ]
