"""Recovery codes: ten single-use codes, shown once, stored as keyed hashes.

A code is 10 base32 characters (50 bits) shown as ``xxxxx-xxxxx``; the stored value is
HMAC-SHA256 under a subkey of the broker key, so a stolen database alone does not allow an
offline search. Generating a new set discards every old code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from broker.audit import Actor
from broker.services import Services
from idp.secretbox import derive_key

__all__ = ["CODE_COUNT", "RecoveryCodes", "looks_like_recovery_code"]

CODE_COUNT = 10
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def _normalise(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def looks_like_recovery_code(code: str) -> bool:
    text = _normalise(code)
    return len(text) == 10 and not text.isdigit()


class RecoveryCodes:
    def __init__(self, services: Services, broker_key: bytes) -> None:
        self.services = services
        self._key = derive_key(broker_key, "corral recovery codes")

    def _hash(self, code: str) -> str:
        return hmac.new(self._key, _normalise(code).encode(), hashlib.sha256).hexdigest()

    async def generate(self, workspace_id: str, user_id: str, *, actor: Actor) -> list[str]:
        codes = []
        for _ in range(CODE_COUNT):
            raw = "".join(secrets.choice(ALPHABET) for _ in range(10))
            codes.append(f"{raw[:5]}-{raw[5:]}")
        await self.services.factors.replace_recovery_codes(
            workspace_id, user_id, [self._hash(c) for c in codes], actor=actor
        )
        return codes

    async def use(self, workspace_id: str, user_id: str, code: str) -> bool:
        if not looks_like_recovery_code(code):
            return False
        return await self.services.factors.use_recovery_code(
            workspace_id, user_id, self._hash(code)
        )

    async def remaining(self, workspace_id: str, user_id: str) -> int:
        return await self.services.factors.recovery_codes_left(workspace_id, user_id)
