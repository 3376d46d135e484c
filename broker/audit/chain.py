"""The hash chain itself: how an event is hashed, how a checkpoint is signed, how a
sequence of rows is verified. Pure functions, no I/O, so the rules sit in one place.

Each event's hash covers every field that means something plus the previous event's
hash, as canonical JSON (sorted keys, no spaces, UTF-8). Editing any field, removing or
reordering an event breaks the link after it. A retention purge leaves a checkpoint that
records the last purged hash, signed with the broker's key (HMAC-SHA256), so the chain
restarts from a value only the broker could have vouched for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.store.models import AuditCheckpoint, AuditEvent

__all__ = [
    "GENESIS",
    "ChainBreak",
    "VerifyResult",
    "canonical_json",
    "event_hash",
    "sign_checkpoint",
    "verify_chain",
]

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _ts(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def event_hash(event: AuditEvent) -> str:
    body = {
        "workspace_id": event.workspace_id,
        "seq": event.seq,
        "ts": _ts(event.ts),
        "category": event.category,
        "action": event.action,
        "outcome": event.outcome,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "credential_id": event.credential_id,
        "server_id": event.server_id,
        "session_id": event.session_id,
        "target": event.target,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def sign_checkpoint(key: bytes, checkpoint: AuditCheckpoint) -> str:
    body = canonical_json(
        {
            "workspace_id": checkpoint.workspace_id,
            "through_seq": checkpoint.through_seq,
            "last_hash": checkpoint.last_hash,
            "purged_count": checkpoint.purged_count,
            "created_at": _ts(checkpoint.created_at),
        }
    )
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    """The first place where the chain stops holding, and why."""

    seq: int
    event_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"event seq {self.seq}" + (f" (id {self.event_id})" if self.event_id else "")
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    head_seq: int
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify_chain(
    events: Iterable[AuditEvent],
    *,
    key: bytes,
    checkpoint: AuditCheckpoint | None,
    head_seq: int,
    head_hash: str,
) -> VerifyResult:
    """Walk one workspace's events in ``seq`` order and name the first broken link.

    ``head_seq``/``head_hash`` are the workspace's record of the newest event; they catch
    events cut off the end of the chain, which links alone cannot see.
    """
    expected_seq, expected_prev = 1, GENESIS
    if checkpoint is not None:
        if not hmac.compare_digest(sign_checkpoint(key, checkpoint), checkpoint.signature):
            return VerifyResult(
                0, head_seq, ChainBreak(checkpoint.through_seq, None, "checkpoint signature")
            )
        expected_seq, expected_prev = checkpoint.through_seq + 1, checkpoint.last_hash
    checked = 0
    for event in events:
        if event.seq != expected_seq:
            reason = (
                f"events {expected_seq}..{event.seq - 1} are missing"
                if event.seq > expected_seq
                else "sequence number out of order"
            )
            return VerifyResult(checked, head_seq, ChainBreak(expected_seq, event.id, reason))
        if event.prev_hash != expected_prev:
            return VerifyResult(
                checked, head_seq, ChainBreak(event.seq, event.id, "previous-hash link broken")
            )
        if event_hash(event) != event.hash:
            return VerifyResult(
                checked, head_seq, ChainBreak(event.seq, event.id, "content does not match hash")
            )
        checked += 1
        expected_seq, expected_prev = event.seq + 1, event.hash
    if expected_seq - 1 != head_seq or (head_seq and expected_prev != head_hash):
        return VerifyResult(
            checked,
            head_seq,
            ChainBreak(expected_seq, None, f"chain ends before its recorded head {head_seq}"),
        )
    return VerifyResult(checked, head_seq, None)
