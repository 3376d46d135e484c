"""The last step of every SSO login, shared by OIDC and SAML: a verified person becomes a
browser session exactly as a password login makes one, and the browser goes back to a page
of the broker's own.

The identity provider replaces the *password*, nothing more: the session enters the same
states (:meth:`idp.sessions.BrowserLogins.start`), so a workspace that requires MFA still
asks for Corral's own second factor. An IdP's claim that it did MFA (OIDC ``amr``, SAML
``AuthnContext``) is recorded in the audit event but not trusted: Corral cannot check how
the IdP enforces it, and trusting it would let whoever administers the IdP waive the
broker's MFA rule.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.responses import RedirectResponse, Response

from broker.store.models import SsoProvider, User
from idp.sessions import BrowserLogins, origin_of, set_session_cookies

__all__ = ["UnsafeReturn", "finish_sso_login", "safe_return_path"]

MAX_RETURN_PATH = 500


class UnsafeReturn(ValueError):
    """``return_to`` would leave this broker (an open redirect): refused, never rewritten."""

    def __init__(self) -> None:
        super().__init__("return_to must be a path on this broker")


def safe_return_path(value: str | None, public_url: str | None = None) -> str:
    """Where to send the browser after an SSO login: ``value`` as a path on this broker
    (``/`` when absent), else :class:`UnsafeReturn`. One rule for OIDC and SAML.

    A ``/``-rooted path passes, with its query; so does an absolute URL whose origin is
    ``public_url``'s (reduced to its path). Refused: another origin, a scheme-relative
    ``//host``, a backslash (browsers read ``/\\host`` as ``//host``), a relative path or a
    ``javascript:`` URL, control characters and spaces, more than ``MAX_RETURN_PATH``."""
    if not value:
        return "/"
    if len(value) > MAX_RETURN_PATH or any(
        ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in value
    ):
        raise UnsafeReturn
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        if public_url is None or origin != origin_of(public_url):
            raise UnsafeReturn
    path = parts.path or "/"
    if not path.startswith("/") or path.startswith("//"):
        raise UnsafeReturn
    return path + (f"?{parts.query}" if parts.query else "")


async def finish_sso_login(
    browser: BrowserLogins,
    user: User,
    provider: SsoProvider,
    *,
    return_to: str | None,
    source: str,
    user_agent: str,
) -> Response:
    """A new browser session for ``user`` (signed in by ``provider``), its cookies, and a
    303 to ``return_to`` on this origin. The page there reads ``GET /api/v1/auth/session``
    to learn whether MFA is still owed (``mfa-pending`` / ``enrol``)."""
    outcome = await browser.start(
        user,
        method=f"sso-{provider.protocol}",
        source=source,
        user_agent=user_agent,
        provider=provider.name,
    )
    try:  # checked when the login started; checked again before it is followed
        target = safe_return_path(return_to)
    except UnsafeReturn:
        target = "/"
    response = RedirectResponse(target, status_code=303)
    set_session_cookies(
        response,
        outcome.secret,
        browser.csrf_token(outcome.secret),
        browser.cookie_max_age(outcome.session),
    )
    response.headers["Cache-Control"] = "no-store"
    return response
