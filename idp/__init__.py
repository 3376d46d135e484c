"""Identity: who a person is (passwords, browser sessions) and proof of a second factor.

    passwords.py   argon2id, password rules, login with lockout
    sessions.py    browser logins, session states, CSRF tokens
    mfa.py         which factors count; verify one (audited, rate-limited)
    totp.py  recovery.py  codes.py  webauthn.py   the factors
    delivery.py    SMTP mail and SMS-webhook senders for codes
    stepup.py      the seam the terminal gate calls
    sso_config.py  sso_oidc.py  sso_login.py   SSO provider settings, OIDC login, the shared finish
    reset.py       password reset by an emailed single-use link
    saml.py  saml_login.py   SAML 2.0 service provider (protocol core; pending request, replay)
    secretbox.py   encryption at rest under the broker key

It builds on ``broker.services`` (storage, audit) and never touches rows directly; it must
never bypass the audit log or write a secret, code or password to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher

from broker.services import Services
from broker.settings import Settings
from idp.codes import OneTimeCodes
from idp.delivery import MailSender, SmsSender, SmtpMailSender, WebhookSmsSender
from idp.mfa import Mfa
from idp.passwords import LocalLogin, Passwords
from idp.recovery import RecoveryCodes
from idp.reset import PasswordReset
from idp.saml_login import SamlLogins
from idp.secretbox import SecretBox
from idp.sessions import BrowserLogins
from idp.sso_oidc import OidcLogins
from idp.stepup import StepUp
from idp.totp import Totp
from idp.webauthn import WebAuthn

__all__ = ["Identity"]


@dataclass(frozen=True)
class Identity:
    """Every identity component over one set of services and one broker key."""

    login: LocalLogin
    browser: BrowserLogins
    mfa: Mfa
    totp: Totp
    recovery: RecoveryCodes
    codes: OneTimeCodes
    webauthn: WebAuthn
    step_up: StepUp
    oidc: OidcLogins
    reset: PasswordReset
    saml: SamlLogins

    @classmethod
    def build(
        cls,
        services: Services,
        broker_key: bytes,
        settings: Settings,
        *,
        mail: MailSender | None = None,
        sms: SmsSender | None = None,
        hasher: PasswordHasher | None = None,
        require_user_verification: bool = False,
    ) -> Identity:
        if mail is None and settings.smtp_host:
            mail = SmtpMailSender(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_from or f"corral@{settings.effective_rp_id or 'localhost'}",
                starttls=settings.smtp_starttls,
            )
        if sms is None and settings.sms_webhook_url:
            sms = WebhookSmsSender(settings.sms_webhook_url)
        login = LocalLogin(
            services,
            Passwords(hasher),
            max_failures=settings.login_max_failures,
            lockout_seconds=settings.login_lockout_seconds,
            rate_per_minute=settings.login_rate_per_minute,
        )
        totp = Totp(services, SecretBox(broker_key, "totp"))
        recovery = RecoveryCodes(services, broker_key)
        codes = OneTimeCodes(services, broker_key, mail=mail, sms=sms)
        webauthn = WebAuthn(
            services,
            rp_id=settings.effective_rp_id,
            origin=settings.effective_public_url,
            require_user_verification=require_user_verification,
        )
        mfa = Mfa(services, totp=totp, recovery=recovery, codes=codes, webauthn=webauthn)
        browser = BrowserLogins(
            services,
            login,
            mfa,
            broker_key,
            idle_seconds=settings.session_idle_minutes * 60,
            absolute_seconds=settings.session_absolute_hours * 3600,
            public_url=settings.effective_public_url,
        )
        oidc = OidcLogins(services, broker_key, public_url=settings.effective_public_url)
        step_up = StepUp(services, mfa)
        reset = PasswordReset(
            services, login.passwords, mail=mail, public_url=settings.effective_public_url
        )
        saml = SamlLogins(services, broker_key, public_url=settings.effective_public_url)
        return cls(login, browser, mfa, totp, recovery, codes, webauthn, step_up, oidc, reset, saml)
