"""How one-time codes leave the broker: a mail sender and an SMS sender, both injected.

:class:`SmtpMailSender` speaks SMTP (stdlib ``smtplib`` in a worker thread, optional
STARTTLS). Corral bundles no SMS provider: :class:`WebhookSmsSender` POSTs
``{"to": ..., "text": ...}`` as JSON to a URL the operator runs (a small relay to their
provider); anything with the :class:`SmsSender` shape can be injected instead.

Senders must never log the message body: it contains the code.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Protocol

from broker.errors import CorralError

__all__ = ["DeliveryFailed", "MailSender", "SmsSender", "SmtpMailSender", "WebhookSmsSender"]


class DeliveryFailed(CorralError):
    """A code could not be handed to the mail server or SMS relay."""


class MailSender(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None: ...


class SmsSender(Protocol):
    async def send(self, to: str, text: str) -> None: ...


class SmtpMailSender:
    def __init__(
        self, host: str, port: int, sender: str, *, starttls: bool = False, timeout: float = 10
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.starttls, self.timeout = starttls, timeout

    async def send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(body)
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(
                f"mail server {self.host}:{self.port}: {type(exc).__name__}"
            ) from None


class WebhookSmsSender:
    def __init__(self, url: str, *, timeout: float = 10) -> None:
        self.url, self.timeout = url, timeout

    async def send(self, to: str, text: str) -> None:
        await asyncio.to_thread(self._post, json.dumps({"to": to, "text": text}).encode())

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(  # noqa: S310 (an operator-configured http(s) URL)
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                if not 200 <= response.status < 300:
                    raise DeliveryFailed(f"SMS webhook answered {response.status}")
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"SMS webhook answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise DeliveryFailed(f"SMS webhook unreachable: {type(exc).__name__}") from None
