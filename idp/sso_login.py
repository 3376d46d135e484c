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

from starlette.responses import RedirectResponse, Response

from broker.store.models import SsoProvider, User
from idp.sessions import BrowserLogins, set_session_cookies

__all__ = ["finish_sso_login", "safe_return_path"]

MAX_RETURN_PATH = 500


def safe_return_path(value: str | None) -> str:
    """``value`` if it is a path on this origin, else ``/``.

    Only ``/``-rooted paths pass: no scheme, no ``//host`` (scheme-relative), no
    backslash (browsers read ``/\\host`` as ``//host``), no control characters, so the
    redirect after login can never leave the broker (no open redirect)."""
    if not value or len(value) > MAX_RETURN_PATH:
        return "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return "/"
    return value


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
    response = RedirectResponse(safe_return_path(return_to), status_code=303)
    set_session_cookies(
        response,
        outcome.secret,
        browser.csrf_token(outcome.secret),
        browser.cookie_max_age(outcome.session),
    )
    response.headers["Cache-Control"] = "no-store"
    return response
