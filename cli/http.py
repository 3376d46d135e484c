"""The client commands' one way to the broker: HTTPS (or loopback HTTP) with httpx, never
the database. Problem+json answers and transport failures become :class:`CliError` with
the documented exit code and a fix, here at the boundary, so commands only see data or
one-line errors.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from cli.errors import (
    EXIT_AUTH,
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_NEEDS_STEP,
    EXIT_NOT_FOUND,
    CliError,
)
from cli.profiles import Target

__all__ = ["Api", "problem_error"]

USER_AGENT = "corral-cli/0.1"


def _ssl_context(url: str, ca_file: str) -> ssl.SSLContext | bool:
    if not url.startswith("https://"):
        return True
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(
            f"cannot load the CA file {ca_file!r}: {exc}", "pass a PEM bundle with --ca-file"
        ) from None


def check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise CliError(
            f"the broker URL must start with https:// or http://, got {url[:100]!r}",
            "pass the URL the broker prints at start, e.g. https://corral.example.com",
            exit_code=2,
        )
    return url.rstrip("/")


_FIXES: dict[str, tuple[int, str]] = {
    "unauthenticated": (EXIT_AUTH, "run `corral login URL` again"),
    "not-found": (
        EXIT_NOT_FOUND,
        "check the name or id (list them with `corral servers`, "
        "`corral sessions`, `corral approvals` or `corral recordings`)",
    ),
    "policy-denied": (EXIT_DENIED, "ask your security team if you need this"),
    "forbidden": (EXIT_DENIED, "ask an administrator for the role or token scope it needs"),
    "mfa-required": (EXIT_NEEDS_STEP, "verify a second factor in the browser, then retry"),
    "approval-required": (
        EXIT_NEEDS_STEP,
        "ask an approver to approve it (`corral approvals`), then retry",
    ),
    "agent-offline": (EXIT_FAILED, "check the agent on that server, then retry"),
    "rate-limited": (EXIT_FAILED, "wait a little and retry"),
    "invalid-request": (EXIT_FAILED, "check the arguments (see --help)"),
    "conflict": (EXIT_FAILED, "it changed meanwhile: list it again, then retry if needed"),
    "exec-failed": (EXIT_FAILED, "check the unix user exists on that server"),
}


def problem_error(response: httpx.Response) -> CliError:
    """The one-line error for a problem+json (or any non-2xx) answer."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return CliError(
            f"the broker answered HTTP {response.status_code}",
            "check the URL points at a Corral broker",
        )
    code = str(body.get("type", "")).removeprefix("urn:corral:problem:")
    detail = str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")
    exit_code, fix = _FIXES.get(code, (EXIT_FAILED, "see the broker's log or docs/cli.md"))
    if response.status_code == 401:
        exit_code, fix = _FIXES["unauthenticated"]
    if code == "rate-limited" and response.headers.get("retry-after"):
        fix = f"retry in {response.headers['retry-after']} s"
    # The detail comes from the broker; keep it on one line.
    detail = " ".join(detail.split())[:300]
    return CliError(detail, fix, exit_code=exit_code)


class Api:
    """One broker, one token (or none, for the login calls)."""

    def __init__(self, url: str, token: str = "", ca_file: str = "", timeout: float = 30) -> None:
        self.url = check_url(url)
        self.ca_file = ca_file
        self.verify = _ssl_context(self.url, ca_file)
        headers = {"User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(
            base_url=self.url, headers=headers, verify=self.verify, timeout=timeout
        )

    @classmethod
    def of(cls, target: Target) -> Api:
        return cls(target.url, target.token, target.ca_file)

    @property
    def ssl(self) -> ssl.SSLContext | None:
        """For the WebSocket client: the same trust as the REST calls."""
        return self.verify if isinstance(self.verify, ssl.SSLContext) else None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transport(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise CliError(
                    f"cannot verify the broker's certificate at {self.url}",
                    "pass the CA that signed it with --ca-file (or CORRAL_CA_FILE)",
                ) from None
            raise CliError(
                f"cannot reach the broker at {self.url}",
                "check the URL and that the broker is running",
            ) from None
        except httpx.TimeoutException:
            raise CliError(f"the broker at {self.url} did not answer in time", "retry") from None
        except httpx.HTTPError as exc:
            raise CliError(
                f"talking to the broker at {self.url} failed: {type(exc).__name__}", "retry"
            ) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """The raw answer if it is 2xx; a :class:`CliError` otherwise."""
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        with self._transport():
            response = self.client.request(
                method, path, json=dict(body) if body is not None else None, params=clean
            )
        if response.is_success:
            return response
        raise problem_error(response)

    def answer(self, method: str, path: str, body: Mapping[str, Any]) -> httpx.Response:
        """The answer whatever its status (for protocols that speak through problems, like
        the device-login polling); only transport failures raise."""
        with self._transport():
            return self.client.request(method, path, json=dict(body))

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        response = self.request(method, path, body=body, params=params)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise CliError(
                f"the broker's answer to {path} is not a JSON object",
                "check the URL points at a Corral broker",
            )
        return data

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.call("POST", path, body=body or {})

    @contextmanager
    def stream_lines(
        self, path: str, body: Mapping[str, Any], *, read_timeout: float | None
    ) -> Iterator[Iterator[dict[str, Any]]]:
        """POST and read an NDJSON answer line by line as it arrives; a refusal before
        the stream starts is the usual :class:`CliError`."""
        timeout = httpx.Timeout(self.client.timeout.connect, read=read_timeout)
        with (
            self._transport(),
            self.client.stream("POST", path, json=dict(body), timeout=timeout) as response,
        ):
            if not response.is_success:
                response.read()
                raise problem_error(response)
            yield _ndjson(response)


def _ndjson(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise CliError(
                "the broker's stream is not NDJSON", "check the URL points at a Corral broker"
            ) from None
        if isinstance(item, dict):
            yield item
