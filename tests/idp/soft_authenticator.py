"""A software FIDO2 authenticator for tests: ES256 keys, ``none`` or ``packed`` (self)
attestation, a signature counter and switchable user verification.

It builds the exact bytes a browser and a security key would hand the relying party
(clientDataJSON, authenticatorData, CBOR attestation object, DER ECDSA signature), so the
``webauthn`` package checks real ceremonies; tests can then break one property at a time
(origin, counter, UV flag).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftAuthenticator:
    def __init__(self, *, fmt: str = "none", aaguid: bytes = bytes(16)) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0
        self.fmt = fmt
        self.aaguid = aaguid

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def create(
        self, options: dict[str, Any], *, origin: str, user_verified: bool = True
    ) -> dict[str, Any]:
        """What ``navigator.credentials.create()`` resolves to, as the JSON a page posts."""
        rp_id = options["rp"]["id"]
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        flags = UP | AT | (UV if user_verified else 0)
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([flags])
            + struct.pack(">I", self.sign_count)
            + self.aaguid
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        statement: dict[str, Any] = {}
        if self.fmt == "packed":
            signed = auth_data + hashlib.sha256(client_data).digest()
            statement = {"alg": -7, "sig": self._sign(signed)}
        attestation = cbor2.dumps({"fmt": self.fmt, "attStmt": statement, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["usb", "nfc"],
            },
            "authenticatorAttachment": "cross-platform",
            "clientExtensionResults": {},
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str,
        user_verified: bool = True,
        counter: int | None = None,
    ) -> dict[str, Any]:
        """What ``navigator.credentials.get()`` resolves to; the counter moves by one."""
        self.sign_count = self.sign_count + 1 if counter is None else counter
        rp_id = options["rpId"]
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        flags = UP | (UV if user_verified else 0)
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([flags])
            + struct.pack(">I", self.sign_count)
        )
        signature = self._sign(auth_data + hashlib.sha256(client_data).digest())
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
            },
            "authenticatorAttachment": "cross-platform",
            "clientExtensionResults": {},
        }
