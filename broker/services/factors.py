"""Second factors: enrolled methods, single-use recovery codes, and pending challenges.

Storage and the atomic "use once" steps only; the cryptography (TOTP, WebAuthn, code
hashing) is in ``idp/``. Every one-time thing is consumed with a conditional UPDATE
(``... WHERE used_at IS NULL`` / ``last_step < :step``), so two racing requests cannot
both succeed with one code.
"""

from __future__ import annotations

import builtins
import hmac
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, delete

from broker.audit import SYSTEM, Actor, Category
from broker.errors import Conflict, InvalidInput
from broker.services.base import Service, fetch, scoped, unique
from broker.store.models import FactorKind, MfaChallenge, MfaFactor, RecoveryCode, User

__all__ = ["FactorService"]

MAX_FACTORS_PER_USER = 20


class FactorService(Service):
    async def add(
        self,
        workspace_id: str,
        user_id: str,
        kind: FactorKind,
        *,
        label: str = "",
        confirmed: bool = False,
        actor: Actor = SYSTEM,
        **fields: Any,
    ) -> MfaFactor:
        """Enrol a factor (unconfirmed until its first code, unless ``confirmed``)."""
        allowed = {
            "id",
            "secret_box",
            "destination",
            "credential_id",
            "public_key",
            "sign_count",
            "transports",
            "attachment",
            "aaguid",
            "user_verified",
        }
        if set(fields) - allowed:
            raise InvalidInput(f"unknown factor fields: {sorted(set(fields) - allowed)}")
        label = label.strip()[:100] or str(kind)
        async with self.db.transaction() as s:
            await fetch(s, User, workspace_id, user_id)
            mine = scoped(MfaFactor, workspace_id).where(MfaFactor.user_id == user_id)
            count = len((await s.exec(mine)).all())
            if count >= MAX_FACTORS_PER_USER:
                raise Conflict(f"a user may have at most {MAX_FACTORS_PER_USER} factors")
            factor = MfaFactor(
                workspace_id=workspace_id,
                user_id=user_id,
                kind=FactorKind(kind),
                label=label,
                confirmed_at=self.clock() if confirmed else None,
                **fields,
            )
            s.add(factor)
            await unique(s, "credential")
            if confirmed:
                await self._enrolled(s, factor, actor)
            return factor

    async def _enrolled(self, s: Any, factor: MfaFactor, actor: Actor) -> None:
        await self.audit.emit(
            factor.workspace_id,
            Category.AUTHENTICATION,
            "mfa.enrolled",
            actor=actor,
            target=factor.id,
            details={"kind": str(factor.kind), "label": factor.label, "user_id": factor.user_id},
            session=s,
        )

    async def confirm(self, workspace_id: str, factor_id: str, *, actor: Actor) -> MfaFactor:
        async with self.db.transaction() as s:
            factor = await fetch(s, MfaFactor, workspace_id, factor_id)
            if factor.confirmed_at is None:
                factor.confirmed_at = self.clock()
                s.add(factor)
                await self._enrolled(s, factor, actor)
            return factor

    async def get(self, workspace_id: str, factor_id: str) -> MfaFactor:
        async with self.db.transaction() as s:
            return await fetch(s, MfaFactor, workspace_id, factor_id)

    async def list(
        self, workspace_id: str, user_id: str, *, confirmed_only: bool = True
    ) -> builtins.list[MfaFactor]:
        query = scoped(MfaFactor, workspace_id).where(MfaFactor.user_id == user_id)
        if confirmed_only:
            query = query.where(col(MfaFactor.confirmed_at).is_not(None))
        async with self.db.transaction() as s:
            return list((await s.exec(query.order_by(col(MfaFactor.created_at)))).all())

    async def find_credential(self, workspace_id: str, credential_id: str) -> MfaFactor | None:
        query = scoped(MfaFactor, workspace_id).where(MfaFactor.credential_id == credential_id)
        async with self.db.transaction() as s:
            return (await s.exec(query)).first()

    async def remove(self, workspace_id: str, factor_id: str, *, actor: Actor) -> None:
        async with self.db.transaction() as s:
            factor = await fetch(s, MfaFactor, workspace_id, factor_id)
            await s.delete(factor)
            await self.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "mfa.removed",
                actor=actor,
                target=factor_id,
                details={"kind": str(factor.kind), "user_id": factor.user_id},
                session=s,
            )

    async def remove_all(self, workspace_id: str, user_id: str, *, actor: Actor) -> int:
        """An administrator's reset: every factor, recovery code and pending challenge goes."""
        async with self.db.transaction() as s:
            await fetch(s, User, workspace_id, user_id)
            query = scoped(MfaFactor, workspace_id).where(MfaFactor.user_id == user_id)
            removed = len((await s.exec(query)).all())
            for model in (MfaChallenge, RecoveryCode, MfaFactor):
                await s.exec(
                    delete(model).where(
                        col(model.workspace_id) == workspace_id, col(model.user_id) == user_id
                    )
                )
            await self.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "mfa.reset",
                actor=actor,
                target=user_id,
                details={"factors_removed": removed},
                session=s,
            )
            return removed

    async def use_totp_step(self, workspace_id: str, factor_id: str, step: int) -> bool:
        """Accept time step ``step`` once: False if it (or a later one) was used already."""
        async with self.db.transaction() as s:
            await fetch(s, MfaFactor, workspace_id, factor_id)
            result = await s.exec(
                sa.update(MfaFactor)
                .where(col(MfaFactor.id) == factor_id, col(MfaFactor.last_step) < step)
                .values(last_step=step, last_used_at=self.clock())
            )
            return int(getattr(result, "rowcount", 0)) == 1

    async def use_webauthn(self, workspace_id: str, factor_id: str, sign_count: int) -> bool:
        """Store the new signature counter; False if another request moved it past ours."""
        async with self.db.transaction() as s:
            factor = await fetch(s, MfaFactor, workspace_id, factor_id)
            query = sa.update(MfaFactor).where(col(MfaFactor.id) == factor_id)
            if sign_count or factor.sign_count:
                query = query.where(col(MfaFactor.sign_count) < sign_count)
            result = await s.exec(query.values(sign_count=sign_count, last_used_at=self.clock()))
            return int(getattr(result, "rowcount", 0)) == 1

    async def replace_recovery_codes(
        self, workspace_id: str, user_id: str, code_hashes: builtins.list[str], *, actor: Actor
    ) -> int:
        """Drop every old code and keep these (hashes only)."""
        async with self.db.transaction() as s:
            await fetch(s, User, workspace_id, user_id)
            await s.exec(
                delete(RecoveryCode).where(
                    col(RecoveryCode.workspace_id) == workspace_id,
                    col(RecoveryCode.user_id) == user_id,
                )
            )
            for digest in code_hashes:
                s.add(RecoveryCode(workspace_id=workspace_id, user_id=user_id, code_hash=digest))
            await self.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "mfa.recovery_codes_generated",
                actor=actor,
                target=user_id,
                details={"count": len(code_hashes)},
                session=s,
            )
            return len(code_hashes)

    async def use_recovery_code(self, workspace_id: str, user_id: str, code_hash: str) -> bool:
        """Spend the matching unused code; False if none matches."""
        async with self.db.transaction() as s:
            query = scoped(RecoveryCode, workspace_id).where(
                RecoveryCode.user_id == user_id, col(RecoveryCode.used_at).is_(None)
            )
            match = None
            for row in (await s.exec(query)).all():
                if hmac.compare_digest(row.code_hash, code_hash):
                    match = row
            if match is None:
                return False
            result = await s.exec(
                sa.update(RecoveryCode)
                .where(col(RecoveryCode.id) == match.id, col(RecoveryCode.used_at).is_(None))
                .values(used_at=self.clock())
            )
            return int(getattr(result, "rowcount", 0)) == 1

    async def recovery_codes_left(self, workspace_id: str, user_id: str) -> int:
        async with self.db.transaction() as s:
            query = scoped(RecoveryCode, workspace_id).where(
                RecoveryCode.user_id == user_id, col(RecoveryCode.used_at).is_(None)
            )
            return len((await s.exec(query)).all())

    async def open_challenge(
        self,
        workspace_id: str,
        user_id: str,
        *,
        purpose: str,
        ttl_seconds: int,
        factor_id: str | None = None,
        secret_hash: str = "",
        challenge: str = "",
    ) -> MfaChallenge:
        """A new pending challenge; earlier unused ones of the same purpose are retired."""
        now = self.clock()
        async with self.db.transaction() as s:
            await fetch(s, User, workspace_id, user_id)
            if factor_id is not None:
                await fetch(s, MfaFactor, workspace_id, factor_id)
            await s.exec(
                sa.update(MfaChallenge)
                .where(
                    col(MfaChallenge.workspace_id) == workspace_id,
                    col(MfaChallenge.user_id) == user_id,
                    col(MfaChallenge.purpose) == purpose,
                    col(MfaChallenge.used_at).is_(None),
                )
                .values(used_at=now)
            )
            row = MfaChallenge(
                workspace_id=workspace_id,
                user_id=user_id,
                factor_id=factor_id,
                purpose=purpose[:64],
                secret_hash=secret_hash,
                challenge=challenge,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
            s.add(row)
            await s.flush()
            return row

    async def current_challenge(
        self, workspace_id: str, user_id: str, purpose: str
    ) -> MfaChallenge | None:
        """The live (unused, unexpired) challenge of this purpose, if any."""
        query = scoped(MfaChallenge, workspace_id).where(
            MfaChallenge.user_id == user_id,
            MfaChallenge.purpose == purpose,
            col(MfaChallenge.used_at).is_(None),
            col(MfaChallenge.expires_at) > self.clock(),
        )
        async with self.db.transaction() as s:
            return (await s.exec(query.order_by(col(MfaChallenge.created_at).desc()))).first()

    async def attempt_challenge(
        self, workspace_id: str, challenge_id: str, *, matched: bool, max_attempts: int
    ) -> bool:
        """Count one attempt; consume the challenge if ``matched`` and attempts remain.

        A challenge that reaches ``max_attempts`` is burnt, so guessing a 6-digit code has
        at most ``max_attempts`` tries per code sent.
        """
        async with self.db.transaction() as s:
            row = await fetch(s, MfaChallenge, workspace_id, challenge_id)
            now = self.clock()
            if row.used_at is not None or now >= row.expires_at:
                return False
            live = (col(MfaChallenge.id) == challenge_id, col(MfaChallenge.used_at).is_(None))
            if matched and row.attempts < max_attempts:
                result = await s.exec(
                    sa.update(MfaChallenge)
                    .where(*live)
                    .values(used_at=now, attempts=MfaChallenge.attempts + 1)
                )
                return int(getattr(result, "rowcount", 0)) == 1
            burnt = row.attempts + 1 >= max_attempts
            await s.exec(
                sa.update(MfaChallenge)
                .where(*live)
                .values(attempts=MfaChallenge.attempts + 1, used_at=now if burnt else None)
            )
            return False
