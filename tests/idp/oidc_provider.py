"""A real OpenID provider for tests, built on authlib's own authorization server.

Authorization-code grant with PKCE required (S256) and client authentication
(``client_secret_basic``) enforced by authlib; ID tokens are RS256-signed with a key made
at start-up and published at the JWKS URL. It serves plain HTTP on 127.0.0.1 (authlib
allows loopback). The authorize endpoint signs the configured user in without a page,
answering with the redirect a browser would follow. Knobs let a test break one property:
``issuer_claim`` (wrong issuer), ``lifetime`` (expired tokens), ``signing_key``
(a signer the JWKS does not vouch for).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from authlib.common.security import generate_token
from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidRequestError,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "corral-test"
CLIENT_SECRET = "s3cret-made-for-this-test"


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic" if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: dict[str, Any]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class Payload(OAuth2Payload):
    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return self._values

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        out: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in self._values.items():
            out[key].append(value)
        return out


class Req(OAuth2Request):
    def __init__(self, method: str, uri: str, headers: Any, values: dict[str, str]) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self.payload = Payload(values)
        self._values = values

    @property
    def args(self) -> dict[str, str]:
        return self._values

    @property
    def form(self) -> dict[str, str]:
        return self._values


class RequiredS256(CodeChallenge):
    """authlib requires PKCE only of public clients; this provider demands S256 of all."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        if not grant.request.payload.data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge'")
        if grant.request.payload.data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


@dataclass
class Provider:
    host: str = "127.0.0.1"
    port: int = 0
    redirect_uri: str = "https://corral.test/api/v1/auth/oidc/callback"
    user: dict[str, Any] = field(
        default_factory=lambda: {
            "sub": "u-123",
            "email": "Grace@Example.test",
            "email_verified": True,
            "name": "Grace Hopper",
            "groups": ["ops", "dba"],
        }
    )
    issuer_claim: str | None = None  # sign tokens with another iss
    lifetime: int = 300
    signing_key: RSAKey | None = None  # sign with a key the JWKS does not publish
    codes: dict[str, Code] = field(default_factory=dict)
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "k1"}))

    @property
    def issuer(self) -> str:
        return f"http://{self.host}:{self.port}"

    def server(self) -> AuthorizationServer:
        provider = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]  # noqa: RUF012

            def save_authorization_code(self, code: str, request: Any) -> None:
                data = request.payload.data
                provider.codes[code] = Code(
                    code=code,
                    client_id=request.client.client_id,
                    redirect_uri=data.get("redirect_uri", ""),
                    scope=data.get("scope", ""),
                    user=request.user,
                    nonce=data.get("nonce"),
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                    auth_time=int(time.time()),
                )

            def query_authorization_code(self, code: str, client: Any) -> Code | None:
                found = provider.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> dict[str, Any]:
                return authorization_code.user

        class OpenID(OpenIDCode):
            def resolve_client_private_key(self, client: Any) -> RSAKey:
                return provider.signing_key or provider.key

            def get_client_algorithm(self, client: Any) -> str:
                return "RS256"

            def get_encode_header(self, client: Any) -> dict[str, str]:
                return {"alg": "RS256", "kid": "k1"}

            def get_client_claims(self, client: Any) -> dict[str, Any]:
                now = int(time.time())
                return {
                    "iss": provider.issuer_claim or provider.issuer,
                    "aud": [client.get_client_id()],
                    "iat": now,
                    "exp": now + provider.lifetime,
                }

            def exists_nonce(self, nonce: str, request: Any) -> bool:
                return False

            def generate_user_info(self, user: dict[str, Any], scope: str) -> UserInfo:
                return UserInfo(**user)

        class Server(AuthorizationServer):
            def query_client(self, client_id: str) -> Client | None:
                if client_id != CLIENT_ID:
                    return None
                return Client(CLIENT_ID, CLIENT_SECRET, [provider.redirect_uri])

            def save_token(self, token: dict[str, Any], request: Any) -> None:
                pass

            def create_oauth2_request(self, request: Any) -> Any:
                return request

            def create_json_request(self, request: Any) -> Any:
                return request

            def handle_response(self, status: int, body: Any, headers: Any) -> Any:
                return status, body, dict(headers)

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                pass

        server = Server(scopes_supported=["openid", "email", "profile"])
        server.register_token_generator(
            "default", BearerTokenGenerator(lambda *a, **k: generate_token(42))
        )
        server.register_grant(CodeGrant, [RequiredS256(required=True), OpenID()])
        return server

    def app(self) -> Starlette:
        server = self.server()

        async def discovery(request: Request) -> JSONResponse:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token",
                    "jwks_uri": f"{self.issuer}/jwks",
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                }
            )

        async def jwks(request: Request) -> JSONResponse:
            return JSONResponse({"keys": [self.key.as_dict(private=False)]})

        async def authorize(request: Request) -> Response:
            values = dict(request.query_params)
            req = Req("GET", str(request.url), request.headers, values)
            try:
                grant = server.get_authorization_grant(req)
            except OAuth2Error as error:
                status, body, headers = server.handle_error_response(req, error)
            else:
                status, body, headers = server.create_authorization_response(
                    req, grant_user=self.user, grant=grant
                )
            if "location" in {k.lower() for k in headers}:
                location = next(v for k, v in headers.items() if k.lower() == "location")
                return RedirectResponse(location, status_code=302)
            return JSONResponse(body, status_code=status)

        async def token(request: Request) -> Response:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            req = Req("POST", str(request.url), request.headers, form)
            status, body, _ = server.create_token_response(req)
            return JSONResponse(body, status_code=status)

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
                Route("/authorize", authorize),
                Route("/token", token, methods=["POST"]),
            ]
        )

    async def serve(self) -> tuple[uvicorn.Server, asyncio.Task[None]]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        return server, task
