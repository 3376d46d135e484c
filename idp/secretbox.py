"""Encryption at rest for secrets the broker must read back (TOTP seeds).

AES-256-GCM under a key derived from the broker key with HKDF and a per-purpose label, so
the audit-checkpoint key is never used directly for encryption. The row id is bound in as
associated data: a ciphertext copied onto another factor row does not decrypt.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.errors import CorralError

__all__ = ["SecretBox", "derive_key"]

VERSION = "v1"


def derive_key(broker_key: bytes, purpose: str) -> bytes:
    """A 32-byte subkey of the broker key for one purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        broker_key
    )


class SecretBox:
    def __init__(self, broker_key: bytes, purpose: str) -> None:
        self._aead = AESGCM(derive_key(broker_key, f"corral secretbox {purpose}"))

    def seal(self, plaintext: bytes, *, bound_to: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, bound_to.encode())
        return f"{VERSION}:" + base64.b64encode(nonce + sealed).decode()

    def open(self, token: str, *, bound_to: str) -> bytes:
        version, _, body = token.partition(":")
        try:
            if version != VERSION:
                raise ValueError(version)
            raw = base64.b64decode(body, validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], bound_to.encode())
        except (ValueError, InvalidTag):
            # A changed broker key or an edited row: say so without any secret material.
            raise CorralError(
                "a stored secret cannot be decrypted (was the broker key changed?)"
            ) from None
