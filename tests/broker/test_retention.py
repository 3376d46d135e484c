"""Recording retention: the purge removes rows and files past each workspace's retention,
keeps the rest and live recordings, sweeps unindexed leftovers, and audits itself."""

from __future__ import annotations

import os
from pathlib import Path

from broker.audit import SYSTEM, Actor
from broker.audit.log import details_of
from broker.gateway.retention import RecordingRetention
from broker.services import Services
from tests.conftest import Clock

ACTOR = Actor("user", "admin")


async def _recording(services: Services, ws: str, folder: Path, name: str, *, end: bool) -> str:
    user = await services.users.find_by_email(ws, "a@x.test") or await services.users.create(
        ws, "a@x.test"
    )
    server = await services.servers.find_by_name(ws, "web-1") or await services.servers.create(
        ws, "web-1"
    )
    session = await services.sessions.open(
        ws, user_id=user.id, server_id=server.id, unix_user="deploy", actor=SYSTEM
    )
    path = folder / ws / f"{name}.cast"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"version": 2}\n')
    recording = await services.recordings.add(ws, session.id, str(path))
    if end:
        await services.recordings.finish(ws, recording.id, 15)
    return recording.id


async def test_purge_applies_each_workspace_retention(
    services: Services, clock: Clock, tmp_path: Path
) -> None:
    short = (await services.workspaces.create("short")).id
    long = (await services.workspaces.create("long")).id
    await services.workspaces.update_settings(short, actor=ACTOR, recording_retention_days=30)
    await services.workspaces.update_settings(long, actor=ACTOR, recording_retention_days=1825)
    old_short = await _recording(services, short, tmp_path, "old", end=True)
    old_long = await _recording(services, long, tmp_path, "old", end=True)
    still_live = await _recording(services, short, tmp_path, "live", end=False)
    orphan = tmp_path / short / "orphan.cast"
    orphan.write_text("{}\n")
    os.utime(orphan, (0, 0))  # long before any cutoff
    clock.advance(days=31)
    recent = await _recording(services, short, tmp_path, "recent", end=True)

    retention = RecordingRetention(services, tmp_path)
    results = {r.workspace_id: r for r in await retention.purge_all()}

    assert (results[short].removed, results[short].bytes) == (1, 15)
    assert results[long].removed == 0
    kept = {r.id for r in await services.recordings.list(short)}
    assert kept == {still_live, recent}
    assert old_short not in kept
    assert {r.id for r in await services.recordings.list(long)} == {old_long}
    assert not (tmp_path / short / "old.cast").exists()
    assert (tmp_path / long / "old.cast").exists()
    assert (tmp_path / short / "live.cast").exists() and (tmp_path / short / "recent.cast").exists()
    assert not orphan.exists()

    events = [e for e in await services.audit.events(short) if e.action == "recording.purged"]
    assert len(events) == 1 and details_of(events[0])["count"] == 1
    assert (await services.audit.verify(short)).ok


async def test_purge_of_nothing_is_still_audited(services: Services, tmp_path: Path) -> None:
    ws = (await services.workspaces.create("empty")).id
    result = await RecordingRetention(services, tmp_path).purge(ws, actor=ACTOR)
    assert result.removed == 0 and result.retention_days == 365
    (event,) = [e for e in await services.audit.events(ws) if e.action == "recording.purged"]
    assert event.actor_id == "admin"
