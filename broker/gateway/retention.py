"""Recording retention: each workspace keeps recordings for its own number of days
(``recording_retention_days``, e.g. 365 or 1825); older ones are removed by a purge that
audits itself (``recording.purged``, with the count and bytes), on a timer in the broker
and on demand with ``corral recordings purge``.

Rows go first, in one audited transaction, then the files: a crash in between leaves a
file without an index entry (found and removed by the next purge's sweep of the workspace's
folder), never an index entry pointing at nothing. Live sessions are never touched: only
recordings that have ended count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from broker.audit import SYSTEM, Actor
from broker.errors import CorralError
from broker.services import Services

__all__ = ["PurgeResult", "RecordingRetention"]

log = logging.getLogger("corral.retention")


@dataclass(frozen=True)
class PurgeResult:
    workspace_id: str
    retention_days: int
    removed: int
    bytes: int


class RecordingRetention:
    def __init__(self, services: Services, recordings_dir: Path) -> None:
        self.services = services
        self.recordings_dir = recordings_dir

    async def purge(self, workspace_id: str, *, actor: Actor = SYSTEM) -> PurgeResult:
        workspace = await self.services.workspaces.get(workspace_id)
        days = workspace.recording_retention_days
        cutoff = self.services.recordings.clock() - timedelta(days=days)
        rows = await self.services.recordings.purge_ended_before(workspace_id, cutoff, actor=actor)
        for row in rows:
            _unlink(Path(row.path))
        await self._sweep(workspace_id, cutoff.timestamp())
        return PurgeResult(workspace_id, days, len(rows), sum(r.size_bytes for r in rows))

    async def _sweep(self, workspace_id: str, cutoff: float) -> None:
        """Files older than the cutoff that no row indexes: left by a crash mid-purge."""
        folder = self.recordings_dir / workspace_id
        if not folder.is_dir():
            return
        known = {r.path for r in await self.services.recordings.list(workspace_id)}
        for path in folder.glob("*.cast"):
            with contextlib.suppress(OSError):
                if str(path) not in known and path.stat().st_mtime < cutoff:
                    log.info("removing unindexed old recording %s", path)
                    _unlink(path)

    async def purge_all(self, *, actor: Actor = SYSTEM) -> list[PurgeResult]:
        return [
            await self.purge(w.id, actor=actor) for w in await self.services.workspaces.list_all()
        ]

    async def run(self, interval: float = 3600.0) -> None:
        """The broker's timer: purge every workspace now, then every ``interval``."""
        while True:
            try:
                for result in await self.purge_all():
                    if result.removed:
                        log.info(
                            "purged %d recordings (%d bytes) of workspace %s",
                            result.removed,
                            result.bytes,
                            result.workspace_id,
                        )
            except CorralError:
                log.exception("recording retention purge failed; will retry")
            await asyncio.sleep(interval)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        try:
            path.unlink()
        except OSError as exc:
            log.warning("could not remove purged recording %s: %s", path, exc.strerror)
