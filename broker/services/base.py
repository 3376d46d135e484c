"""What every tenant-scoped service shares: its collaborators and the scoped row lookups.

Tenancy by construction: a service method takes the workspace id first, and reads rows only
through :func:`fetch` / :func:`scoped`, which always add ``workspace_id = :ws``. A row of
another workspace is indistinguishable from a missing one (:class:`NotFound`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from broker.audit import AuditLog
from broker.errors import Conflict, InvalidInput, NotFound
from broker.store.db import Database
from broker.store.models import utcnow

__all__ = [
    "Service",
    "fetch",
    "hash_secret",
    "new_secret",
    "scoped",
    "secret_matches",
    "unique",
]

M = TypeVar("M", bound=SQLModel)

Clock = Callable[[], datetime]


class Service:
    """Holds the store, the audit log and the clock; subclasses add the operations."""

    def __init__(self, db: Database, audit: AuditLog, *, clock: Clock = utcnow) -> None:
        self.db = db
        self.audit = audit
        self.clock = clock


def scoped(model: type[M], workspace_id: str) -> SelectOfScalar[M]:
    """``SELECT model WHERE workspace_id = :ws`` — the only way services start a query."""
    column: Any = model.workspace_id  # type: ignore[attr-defined]
    return select(model).where(column == workspace_id)


async def fetch(session: AsyncSession, model: type[M], workspace_id: str, ident: str) -> M:
    """The row ``ident`` of ``model`` in this workspace, or :class:`NotFound`."""
    row = await session.get(model, ident)
    if row is None or getattr(row, "workspace_id", None) != workspace_id:
        raise NotFound(model.__name__.lower(), ident)
    return row


async def unique(session: AsyncSession, what: str) -> None:
    """Flush, turning a unique-constraint violation into a :class:`Conflict` naming ``what``."""
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"{what} already exists") from None


def new_secret(prefix: str, ident: str) -> tuple[str, str]:
    """A bearer secret ``prefix_ident_random`` and the hash to store for it."""
    token = f"{prefix}_{ident}_{secrets.token_hex(24)}"
    return token, hash_secret(token)


def hash_secret(token: str) -> str:
    # Secrets are 192 random bits, so a fast hash is safe; passwords use argon2id instead.
    return hashlib.sha256(token.encode()).hexdigest()


def secret_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(token), stored_hash)


def parse_secret(prefix: str, token: str) -> str:
    """The id inside a ``prefix_id_random`` secret, or :class:`InvalidInput`."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != prefix or len(parts[1]) != 32 or len(parts[2]) != 48:
        raise InvalidInput(f"not a {prefix} secret")
    return parts[1]
