"""Server-side administration commands: they open the database directly, so they run on
the broker's host with its settings (no network, no token needed)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from importlib.metadata import version as package_version

import uvicorn
from starlette.applications import Starlette

from broker.agents.hub import AgentHub
from broker.app import create_app
from broker.bootstrap import initialise
from broker.errors import CorralError, NotFound, SettingsError
from broker.gateway.retention import RecordingRetention
from broker.runtime import Runtime, open_runtime
from broker.serving import freeze_startup_heap, loop_factory, server_config, set_keepalive
from broker.settings import Settings, load_settings
from broker.store.models import Role, TokenScope, Workspace
from cli.local_agent import LocalAgent, loopback_url
from idp.purge import IdentityPurge

__all__ = [
    "audit_purge",
    "audit_verify",
    "check",
    "identity_purge",
    "init",
    "migrate",
    "token",
    "up",
    "up_loop_factory",
    "version",
    "workspace_named",
]


def _login_hint(settings: Settings, url: str, secret: str) -> str:
    return (
        f"  Admin token (shown once, valid 30 days): {secret}\n"
        f"  Try it:  curl -H 'Authorization: Bearer {secret}' {url}/api/v1/whoami"
    )


async def init(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_runtime(settings) as rt:
        result = await initialise(
            rt.services, workspace_name=args.workspace, admin_email=args.email
        )
    if not result.created:
        print(
            f"corral: already initialised (workspace {result.workspace.name!r}, superuser "
            f"{result.admin.email}); nothing changed. "
            f"A new token: corral token {result.admin.email}"
        )
        return 0
    print(f"Initialised {rt.db.display_url}")
    print(f"  Workspace {result.workspace.name!r}, superuser {result.admin.email}")
    assert result.token is not None
    print(_login_hint(settings, settings.effective_public_url, result.token))
    return 0


async def migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_runtime(settings, migrate=True) as rt:
        state = await rt.db.check()
    print(f"database {rt.db.display_url} is at schema {state.head} (up to date)")
    return 0


async def check(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_runtime(settings, migrate=False) as rt:
        state = await rt.db.check()
    print(
        f"settings ok; database {rt.db.display_url} at schema {state.current} (up to date); "
        f"policy {rt.policy.source.file} ok (version {rt.policy.version[:12]})"
    )
    return 0


async def workspace_named(rt: Runtime, name: str | None) -> Workspace:
    """The named workspace, or the first one when no name is given."""
    if name is not None:
        found = await rt.services.workspaces.find(name)
        if found is None:
            raise NotFound("workspace", repr(name))
        return found
    workspaces = await rt.services.workspaces.list_all()
    if not workspaces:
        raise CorralError("no workspace yet: run `corral init` first")
    return workspaces[0]


async def token(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_runtime(settings, migrate=False) as rt:
        workspace = await workspace_named(rt, args.workspace)
        user = await rt.services.users.find_by_email(workspace.id, args.email)
        if user is None:
            raise NotFound("user", args.email)
        scope = TokenScope.ADMIN if user.role == Role.SUPERUSER else TokenScope.WRITE
        _, secret = await rt.services.tokens.create(
            workspace.id, user.id, name=args.name, scope=scope, expires_in_days=30
        )
    print(_login_hint(settings, settings.effective_public_url, secret))
    return 0


async def audit_verify(args: argparse.Namespace) -> int:
    settings = load_settings()
    failed = False
    async with open_runtime(settings, migrate=False) as rt:
        if args.workspace is None:
            workspaces = await rt.services.workspaces.list_all()
        else:
            workspaces = [await workspace_named(rt, args.workspace)]
        for workspace in workspaces:
            result = await rt.services.audit.verify(workspace.id)
            if result.ok:
                print(f"{workspace.name}: ok ({result.checked} events, head {result.head_seq})")
            else:
                failed = True
                print(f"{workspace.name}: BROKEN at {result.broken}")
    return 1 if failed else 0


async def audit_purge(args: argparse.Namespace) -> int:
    """Apply each workspace's audit retention; the purge leaves a signed checkpoint."""
    settings = load_settings()
    async with open_runtime(settings, migrate=False) as rt:
        if args.workspace is None:
            workspaces = await rt.services.workspaces.list_all()
        else:
            workspaces = [await workspace_named(rt, args.workspace)]
        for workspace in workspaces:
            cutoff = rt.services.audit.clock() - timedelta(days=workspace.audit_retention_days)
            removed = await rt.services.audit.purge(workspace.id, before=cutoff)
            print(
                f"{workspace.name}: removed {removed} events older than "
                f"{workspace.audit_retention_days} days"
            )
    return 0


async def recordings_purge(args: argparse.Namespace) -> int:
    """Apply each workspace's recording retention now (the broker also does it hourly)."""
    settings = load_settings()
    async with open_runtime(settings, migrate=False) as rt:
        retention = RecordingRetention(rt.services, settings.data_dir / "recordings")
        if args.workspace is None:
            results = await retention.purge_all()
        else:
            results = [await retention.purge((await workspace_named(rt, args.workspace)).id)]
        names = {w.id: w.name for w in await rt.services.workspaces.list_all()}
        for result in results:
            print(
                f"{names.get(result.workspace_id, result.workspace_id)}: removed "
                f"{result.removed} recordings ({result.bytes} bytes) older than "
                f"{result.retention_days} days"
            )
    return 0


async def identity_purge(args: argparse.Namespace) -> int:
    """Remove expired identity rows now (the broker also does it hourly); audited."""
    settings = load_settings()
    async with open_runtime(settings, migrate=False) as rt:
        results = await IdentityPurge(rt.services).purge_all(workspace_name=args.workspace)
    for result in results:
        c = result.counts
        print(
            f"{result.workspace_name}: removed {c.total} expired identity rows "
            f"({c.challenges} challenges, {c.browser_sessions} browser sessions, "
            f"{c.invitations} invitations, {c.sso_replay} SSO replay entries)"
        )
    return 0


async def version(args: argparse.Namespace) -> int:
    print(f"corral {package_version('corral')}")
    return 0


def _listen(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise SettingsError(
            f"CORRAL_PORT: cannot listen on {settings.host}:{settings.port} ({exc.strerror})"
        ) from None
    set_keepalive(sock)  # inherited by every accepted connection; see broker/serving.py
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal once it has shut down.

    uvicorn re-raises a captured SIGINT after a graceful stop; under ``asyncio.run`` that
    cancels the main task while it is still closing the database, which then logs a
    traceback. Ctrl-C (or SIGTERM) is the documented way to stop the broker, so a graceful
    stop returns normally and the runtime closes cleanly.
    """

    def __init__(self, config: uvicorn.Config, hub: AgentHub) -> None:
        super().__init__(config)
        self.hub = hub
        self.local_agent: LocalAgent | None = None
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        freeze_startup_heap()
        self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Our own agent first (it would only reconnect), then every agent and data channel:
        # uvicorn would otherwise wait for them.
        if self.local_agent is not None:
            await asyncio.to_thread(self.local_agent.stop)
        await self.hub.close_all()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stops = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _server_config(settings: Settings, app: Starlette) -> uvicorn.Config:
    return server_config(
        app,
        log_level=settings.log_level,
        certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
        timeout_graceful_shutdown=10,
    )


def up_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``corral up`` runs on (``event_loop``: uvloop unless turned off)."""
    return loop_factory(load_settings().event_loop)


async def up(args: argparse.Namespace) -> int:
    settings = load_settings()
    sock = _listen(settings)
    async with open_runtime(settings) as rt:
        result = await initialise(rt.services)
        host, port = sock.getsockname()[:2]
        scheme = "https" if settings.tls else "http"
        url = settings.public_url or f"{scheme}://{host}:{port}"
        print(f"Corral broker listening on {url}  (database: {rt.db.display_url})")
        if result.token is not None:
            print(
                f"  First start: workspace {result.workspace.name!r}, "
                f"superuser {result.admin.email}"
            )
            print(_login_hint(settings, url, result.token))
        else:
            print(
                f"  Log in with your token; a new one for the superuser: "
                f"corral token {result.admin.email}"
            )
        print(
            f"  Policy {rt.policy.source.file} ({rt.policy.source.backend}, version "
            f"{rt.policy.version[:12]}); reload with SIGHUP or on save."
        )
        print("  Stop with Ctrl-C.", flush=True)
        hub = AgentHub(rt.services)
        server = _Server(_server_config(settings, create_app(rt, hub=hub)), hub)
        starting = None
        if settings.local_agent:
            server.local_agent = LocalAgent(rt, result.workspace.id, loopback_url(url))
            starting = asyncio.create_task(_start_local_agent(server, url, result.token))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, rt.policy.reload_soon, "sighup")
        try:
            await server.serve(sockets=[sock])
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            if starting is not None:
                starting.cancel()
            if server.local_agent is not None:
                server.local_agent.stop()
    return 0


def _self_command() -> str:
    """How the person ran us (``.venv/bin/corral``), so the printed command works as is."""
    invoked = sys.argv[0] if sys.argv else ""
    return invoked if os.path.basename(invoked) == "corral" else "corral"


async def _start_local_agent(server: _Server, url: str, token: str | None) -> None:
    await server.ready.wait()
    local, hub = server.local_agent, server.hub
    assert local is not None
    try:
        name = await local.start(hub)
    except CorralError as exc:
        print(f"corral: warning: {exc}", file=sys.stderr, flush=True)
        return
    ca = f" --ca-file {local.ca_file}" if local.ca_file else ""
    print(f"  Local agent connected: this machine is server {name!r} (log: {local.log})")
    print(
        f"  Open a terminal on it:\n"
        f"    CORRAL_TOKEN={token or '<your token>'} {_self_command()} websh {name} "
        f"--url {url}{ca}",
        flush=True,
    )
