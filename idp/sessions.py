"""Browser logins: password → (MFA | enrolment) → an active cookie session; CSRF tokens.

States: a correct password gives ``mfa-pending`` when the user has a factor that counts,
``enrol`` when the workspace requires MFA (or the user has factors, none of which count
under a hardware-only rule) and the user has none that counts, else ``active``. Pending
and enrol sessions live 10 minutes and can only reach the MFA routes. Reaching ``active``
rotates the cookie secret.

CSRF: a *signed double-submit token bound to the session*. The token is
HMAC-SHA256(subkey of the broker key, cookie secret); it is returned in the login answer and
in the non-HttpOnly ``corral_csrf`` cookie, and every unsafe cookie-authenticated request
must echo it in ``X-Corral-CSRF``. A request carrying an ``Origin`` header must also come
from the broker's public origin. Bearer-token requests are not affected (no ambient
credential, nothing to forge).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.responses import Response

from broker.audit import Actor, Category
from broker.services import Services
from broker.store.models import BrowserSession, BrowserSessionState, User
from idp.mfa import Mfa
from idp.passwords import LocalLogin
from idp.secretbox import derive_key

__all__ = [
    "COOKIE",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "PENDING_SECONDS",
    "BrowserLogins",
    "LoginOutcome",
    "set_session_cookies",
]

COOKIE = "corral_session"
CSRF_COOKIE = "corral_csrf"
CSRF_HEADER = "x-corral-csrf"
PENDING_SECONDS = 600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class LoginOutcome:
    session: BrowserSession
    secret: str
    user: User
    methods: list[str]  # what can complete MFA now (empty unless pending)


def set_session_cookies(response: Response, secret: str, csrf: str, max_age: int) -> None:
    """The session cookie (HttpOnly) and the CSRF cookie (readable by the page's script)."""
    response.set_cookie(
        COOKIE, secret, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax"
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, path="/", secure=True, httponly=False, samesite="lax"
    )


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class BrowserLogins:
    def __init__(
        self,
        services: Services,
        login: LocalLogin,
        mfa: Mfa,
        broker_key: bytes,
        *,
        idle_seconds: int,
        absolute_seconds: int,
        public_url: str,
    ) -> None:
        self.services, self.login, self.mfa = services, login, mfa
        self.idle_seconds, self.absolute_seconds = idle_seconds, absolute_seconds
        self.origin = origin_of(public_url)
        self._csrf_key = derive_key(broker_key, "corral csrf")

    async def password_login(
        self, workspace_id: str, email: str, password: str, *, source: str, user_agent: str
    ) -> LoginOutcome:
        user = await self.login.check(workspace_id, email, password, source=source)
        return await self.start(user, method="password", source=source, user_agent=user_agent)

    async def start(
        self, user: User, *, method: str, source: str, user_agent: str, **details: str
    ) -> LoginOutcome:
        """A new browser session for a person whose first factor just checked out (a
        password, or a verified SSO assertion: ``method`` says which, for the audit).

        The state follows the workspace rules, whatever the first factor was: Corral's own
        MFA is owed when the person has a factor that counts or the workspace requires one.
        """
        workspace_id = user.workspace_id
        workspace = await self.services.workspaces.get(workspace_id)
        methods = await self.mfa.methods(workspace_id, user.id)
        if methods:
            state = BrowserSessionState.MFA_PENDING
        elif workspace.mfa_required or await self.services.factors.list(workspace_id, user.id):
            # Required, or the person opted in with a factor that no longer counts (the
            # workspace turned hardware-only): a password alone is not enough either way.
            state = BrowserSessionState.ENROL
        else:
            state = BrowserSessionState.ACTIVE
        row, secret = await self.services.browser_sessions.create(
            workspace_id,
            user.id,
            state=state,
            lifetime_seconds=self._lifetime(state),
            source=source,
            user_agent=user_agent,
        )
        await self.services.audit.emit(
            workspace_id,
            Category.AUTHENTICATION,
            "login.succeeded"
            if state is BrowserSessionState.ACTIVE
            else ("login.password_ok" if method == "password" else "login.sso_ok"),
            actor=_actor(row),
            target=user.id,
            details={"state": str(state), "source": source, "method": method, **details},
        )
        return LoginOutcome(row, secret, user, methods)

    def _lifetime(self, state: BrowserSessionState) -> int:
        return self.absolute_seconds if state is BrowserSessionState.ACTIVE else PENDING_SECONDS

    async def resolve(self, secret: str) -> tuple[BrowserSession, User]:
        return await self.services.browser_sessions.authenticate(
            secret, idle_seconds=self.idle_seconds
        )

    async def mfa_done(self, row: BrowserSession, method: str) -> tuple[BrowserSession, str]:
        """MFA (or a first enrolment) completed in this session: make it active, rotate."""
        was_active = row.state is BrowserSessionState.ACTIVE
        row, secret = await self.services.browser_sessions.promote(
            row.workspace_id,
            row.id,
            state=BrowserSessionState.ACTIVE,
            mfa_method=method,
            lifetime_seconds=None if was_active else self.absolute_seconds,
        )
        if not was_active:
            await self.services.audit.emit(
                row.workspace_id,
                Category.AUTHENTICATION,
                "login.succeeded",
                actor=_actor(row),
                target=row.user_id,
                details={"state": str(row.state), "method": method, "source": row.source},
            )
        return row, secret

    def cookie_max_age(self, row: BrowserSession) -> int:
        """Seconds the cookies should live: until the session's absolute expiry."""
        return max(1, int((row.expires_at - self.services.accounts.clock()).total_seconds()))

    def csrf_token(self, secret: str) -> str:
        return hmac.new(self._csrf_key, secret.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, method: str, secret: str, header: str | None, origin: str | None) -> str:
        """'' if this cookie-authenticated request may proceed, else why not."""
        if origin is not None and origin.lower() != self.origin:
            return "cross-origin request"
        if method.upper() in SAFE_METHODS:
            return ""
        if not header or not hmac.compare_digest(header, self.csrf_token(secret)):
            return "missing or wrong CSRF token"
        return ""


def _actor(row: BrowserSession) -> Actor:
    return Actor("user", row.user_id, row.id)
