"""How the broker is served (broker/serving.py) and the hub's batched store writes."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from uvicorn.server import ServerState

from broker.errors import SettingsError
from broker.services import Services
from broker.services.inventory import Report
from broker.serving import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE,
    KEEPALIVE_INTERVAL,
    loop_factory,
    resolve_event_loop,
    server_config,
    set_keepalive,
)
from broker.settings import load_settings
from broker.tlsserver import TLSConnection, TLSServer
from broker.websocket import WebSocketProtocol
from cli import admin


def test_accepted_connections_inherit_tcp_keepalive() -> None:
    """Liveness of every WebSocket is the kernel's job: no ping the event loop must send."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        set_keepalive(listener)
        listener.listen(1)
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                tcp = socket.IPPROTO_TCP
                assert accepted.getsockopt(tcp, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE
                assert accepted.getsockopt(tcp, socket.TCP_KEEPINTVL) == KEEPALIVE_INTERVAL
                assert accepted.getsockopt(tcp, socket.TCP_KEEPCNT) == KEEPALIVE_COUNT
            assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_server_config_has_no_per_connection_pings() -> None:
    config = server_config(object(), log_level="warning")
    assert config.ws_ping_interval is None
    assert config.ws is WebSocketProtocol
    assert config.loop == "none"  # the caller's loop (see loop_factory)


async def test_tls_is_terminated_by_the_broker_around_the_http_protocol(tmp_path: Path) -> None:
    """uvicorn gets no ssl= for the socket; every connection is a TLS 1.3 TLSConnection."""
    import ssl

    import trustme

    cert = tmp_path / "cert.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    config = server_config(object(), log_level="warning", certfile=str(cert), keyfile=str(cert))
    assert config.ssl is None
    factory = config.http_protocol_class
    assert isinstance(factory, TLSServer)
    connection = factory(config=config, server_state=ServerState(), app_state={})
    assert isinstance(connection, TLSConnection)
    context = connection.get_extra_info("sslcontext")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(SettingsError, match="cannot load certificate"):
        server_config(object(), certfile=str(tmp_path / "missing.pem"))


def test_event_loop_setting(tmp_path: Path) -> None:
    assert load_settings({}, cwd=tmp_path).event_loop == "auto"
    environ = {"CORRAL_EVENT_LOOP": "AsyncIO"}
    assert load_settings(environ, cwd=tmp_path).event_loop == "asyncio"
    with pytest.raises(SettingsError, match=r"^CORRAL_EVENT_LOOP: expected one of"):
        load_settings({"CORRAL_EVENT_LOOP": "trio"}, cwd=tmp_path)
    assert resolve_event_loop("auto") == "uvloop"  # a dependency on Linux
    assert loop_factory("asyncio") is None


def test_corral_up_runs_on_uvloop_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvloop

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CORRAL_EVENT_LOOP", raising=False)
    make = admin.up_loop_factory()
    assert make is not None
    loop = make()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    monkeypatch.setenv("CORRAL_EVENT_LOOP", "asyncio")
    assert admin.up_loop_factory() is None
    with asyncio.Runner(loop_factory=admin.up_loop_factory()) as runner:
        assert not isinstance(runner.get_loop(), uvloop.Loop)


async def test_report_many_writes_each_server_in_its_workspace(services: Services) -> None:
    acme = (await services.workspaces.create("acme")).id
    other = (await services.workspaces.create("other")).id
    web = await services.servers.create(acme, "web-1", platform="debian")
    db = await services.servers.create(acme, "db-1", platform="debian")
    theirs = await services.servers.create(other, "web-1", platform="debian")
    when = datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC)
    await services.servers.report_many(
        acme,
        [
            Report(web.id, when, metrics={"cpu_percent": 1.5}),
            Report(db.id, when, sysinfo={"platform": "ubuntu", "cpus": 4}, metrics={"x": 1}),
            # another workspace's server id under acme: matches nothing
            Report(theirs.id, when, metrics={"cpu_percent": 99.0}),
        ],
    )
    web_after = await services.servers.get(acme, web.id)
    assert web_after.metrics == {"cpu_percent": 1.5}
    assert web_after.platform == "debian" and web_after.sysinfo == {}
    assert web_after.last_seen_at is not None
    assert web_after.last_seen_at.replace(tzinfo=UTC) == when
    db_after = await services.servers.get(acme, db.id)
    assert db_after.platform == "ubuntu"
    assert db_after.sysinfo == {"platform": "ubuntu", "cpus": 4}
    assert db_after.metrics == {"x": 1}
    theirs_after = await services.servers.get(other, theirs.id)
    assert theirs_after.metrics == {} and theirs_after.last_seen_at is None
    await services.servers.report_many(acme, [])  # nothing to write: no transaction


async def test_hub_keeps_reports_the_database_refused(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed flush loses nothing: the reports wait for the next one (newer win)."""
    from broker.agents.hub import AgentHub

    acme = (await services.workspaces.create("acme")).id
    web = await services.servers.create(acme, "web-1")
    hub = AgentHub(services)
    when = datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC)
    hub.presence.reports = {acme: {web.id: Report(web.id, when, metrics={"cpu_percent": 1.0})}}
    real = services.servers.report_many

    newer: list[Report] = []

    async def busy(workspace_id: str, reports: list[Report]) -> None:
        for report in newer:  # what the agent sent while the write was in flight
            hub.presence.reports.setdefault(acme, {})[web.id] = report
        raise OSError("database is locked")

    monkeypatch.setattr(services.servers, "report_many", busy)
    await hub.presence.flush()  # logged, not raised
    assert hub.presence.reports[acme][web.id].metrics == {"cpu_percent": 1.0}  # kept for next time
    newer.append(Report(web.id, when, metrics={"n": 2}))
    await hub.presence.flush()
    assert hub.presence.reports[acme][web.id].metrics == {"n": 2}  # the newer one wins
    monkeypatch.setattr(services.servers, "report_many", real)
    await hub.presence.flush()
    assert hub.presence.reports == {}
    assert (await services.servers.get(acme, web.id)).metrics == {"n": 2}


def test_the_startup_heap_is_frozen_out_of_later_collections() -> None:
    """What start-up built is never walked by a collection again (run in a child: the
    freeze is for the whole process, and this one runs many brokers)."""
    code = (
        "import gc, broker.app\n"
        "from broker.serving import freeze_startup_heap\n"
        "before = len(gc.get_objects())\n"
        "freeze_startup_heap()\n"
        "print(before, gc.get_freeze_count(), len(gc.get_objects()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        check=True,
    )
    before, frozen, tracked = map(int, done.stdout.split())
    assert before > 10_000  # the broker's modules alone
    assert frozen >= before * 0.9
    assert tracked < 100
