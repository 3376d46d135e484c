"""``corral-agent register``: trade a one-time registration token for this host's credential.

One HTTPS POST to ``{broker}/api/v1/agents/register`` with the token, the host's name,
tags and inventory; the broker answers 201 with the server id and the long-lived
secret, which are written to the config file (mode 0600). Errors come back as RFC 9457
problem+json and are shown as their ``detail``.

This module must never print or log the token or the secret, and never talk to an
https broker over anything weaker than TLS 1.3 or without verifying its certificate.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent import __version__
from agent.errors import RegistrationError
from agent.tlsstream import client_ssl_context

__all__ = ["REGISTER_PATH", "Registration", "register"]

REGISTER_PATH = "/api/v1/agents/register"
_MAX_RESPONSE = 1 << 20


@dataclass(frozen=True)
class Registration:
    """What the broker returned: the credential is ``agent_id`` + ``secret``."""

    server_id: str
    server_name: str
    workspace_id: str
    secret: str

    def __repr__(self) -> str:
        return f"Registration(server_id={self.server_id!r}, server_name={self.server_name!r})"


def _problem_detail(body: bytes, status: int) -> str:
    try:
        problem = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        problem = None
    if isinstance(problem, dict):
        for key in ("detail", "title"):
            value = problem.get(key)
            if isinstance(value, str) and value:
                return value[:300]
    return f"the broker answered HTTP {status}"


def register(
    broker_url: str,
    token: str,
    *,
    name: str,
    tags: Mapping[str, str],
    sysinfo: Mapping[str, Any],
    ca_file: str | None = None,
    timeout: float = 30.0,
) -> Registration:
    """POST the registration; raise ``RegistrationError`` with a one-line reason."""
    parts = urlsplit(broker_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RegistrationError(f"--url must be an http(s) URL, got {broker_url!r}")
    url = broker_url.rstrip("/") + REGISTER_PATH
    body = json.dumps(
        {"token": token, "name": name, "tags": dict(tags), "sysinfo": dict(sysinfo)},
        separators=(",", ":"),
    ).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, application/problem+json",
            "User-Agent": f"corral-agent/{__version__}",
        },
    )
    context: ssl.SSLContext | None = None
    if parts.scheme == "https":
        try:
            context = client_ssl_context(ca_file)
        except Exception as exc:
            raise RegistrationError(str(exc)) from exc
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            status = response.status
            raw = response.read(_MAX_RESPONSE)
    except urllib.error.HTTPError as exc:
        raw = exc.read(_MAX_RESPONSE) if exc.fp is not None else b""
        raise RegistrationError(_problem_detail(raw, exc.code)) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            detail = reason.verify_message or "certificate not trusted"
            raise RegistrationError(
                f"TLS certificate of {parts.netloc} rejected: {detail}"
            ) from None
        raise RegistrationError(f"cannot reach {parts.netloc}: {reason}") from None
    except (OSError, socket.timeout) as exc:
        raise RegistrationError(f"cannot reach {parts.netloc}: {exc}") from None
    if status != 201:
        raise RegistrationError(f"unexpected answer from the broker: HTTP {status}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RegistrationError("the broker's answer is not JSON") from None
    if not isinstance(data, dict):
        raise RegistrationError("the broker's answer is not a JSON object")
    values: dict[str, str] = {}
    for key in ("server_id", "secret"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise RegistrationError(f"the broker's answer lacks {key!r}")
        values[key] = value
    return Registration(
        server_id=values["server_id"],
        server_name=str(data.get("server_name") or name),
        workspace_id=str(data.get("workspace_id") or ""),
        secret=values["secret"],
    )
