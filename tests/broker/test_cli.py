"""The real ``corral`` console script, run as a subprocess in a scratch directory.

Every failure must be one ``corral: error:`` line on stderr, exit 1, no traceback, and
must leave the disk and the database as it found them.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from broker.audit import AuditLog
from broker.services import Services
from broker.store.db import Database
from tests.conftest import POSTGRES_URL, TEST_KEY, _pg_admin_url, _pg_exec, _with_db

pytestmark = pytest.mark.slow

_SCRIPT = Path(sys.executable).with_name("corral")
CORRAL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli.main"]
TOKEN = re.compile(r"crlpat_[0-9a-f]{32}_[0-9a-f]{48}")
UNREACHABLE = "postgresql://u:hunter2@127.0.0.1:1/x"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def tokens(self) -> set[str]:
        return set(TOKEN.findall(self.out + self.err))


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def corral(cwd: Path, *args: str, **settings: str) -> Result:
    proc = subprocess.run(
        [*CORRAL, *args],
        cwd=cwd,
        env=_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


Run = tuple[Path, list[str], dict[str, str]]


def corral_each(runs: list[Run]) -> list[Result]:
    """Several independent invocations at once (interpreter start-up dominates their cost)."""
    procs = [
        subprocess.Popen(
            [*CORRAL, *args],
            cwd=cwd,
            env=_env(**settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cwd, args, settings in runs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append(Result(proc.returncode, out, err))
    return results


def assert_one_error(result: Result, *needles: str) -> str:
    """Exit 1, nothing on stdout, exactly one ``corral: error:`` line naming ``needles``."""
    assert result.code == 1, result
    assert "Traceback" not in result.err
    assert result.out == "", result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("corral: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def sqlite_dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def counts(url: str) -> tuple[int, int, int]:
    """(workspaces, users, audit events), read through the services."""

    async def run() -> tuple[int, int, int]:
        db = Database(url)
        try:
            services = Services.build(db, AuditLog(db, TEST_KEY))
            workspaces = await services.workspaces.list_all()
            users = events = 0
            for ws in workspaces:
                users += len(await services.users.list(ws.id))
                events += len(await services.audit.events(ws.id, limit=1000))
            return len(workspaces), users, events
        finally:
            await db.dispose()

    return asyncio.run(run())


def authenticates_as(url: str, secret: str) -> str:
    async def run() -> str:
        db = Database(url)
        try:
            _, user = await Services.build(db, AuditLog(db, TEST_KEY)).tokens.authenticate(secret)
            return user.email
        finally:
            await db.dispose()

    return asyncio.run(run())


def sqlite_url(cwd: Path) -> str:
    return f"sqlite+aiosqlite:///{cwd / '.corral' / 'corral.db'}"


# -- embedded SQLite -------------------------------------------------------------------


def test_version_and_usage(tmp_path: Path) -> None:
    version, usage = corral_each([(tmp_path, ["version"], {}), (tmp_path, ["no-such"], {})])
    assert version.code == 0 and version.err == ""
    assert re.fullmatch(r"corral \d+\.\d+\.\d+\S*\n", version.out)
    assert usage.code == 2 and "Traceback" not in usage.err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One ``corral init`` per module; tests work on copies of its directory."""
    template = tmp_path_factory.mktemp("initialised")
    return template, corral(template, "init")


@pytest.fixture
def copy_of_initialised(initialised: tuple[Path, Result], tmp_path: Path) -> Path:
    target = tmp_path / "broker"
    shutil.copytree(initialised[0], target)
    return target


def test_init_once_then_nothing_changes(
    initialised: tuple[Path, Result], copy_of_initialised: Path
) -> None:
    cwd, first = copy_of_initialised, initialised[1]
    assert first.code == 0, first
    assert first.err == ""
    assert len(first.tokens) == 1  # one secret (shown in the hint and the curl line)
    (secret,) = first.tokens
    db_file = cwd / ".corral" / "corral.db"
    assert db_file.is_file()
    url = sqlite_url(cwd)
    assert authenticates_as(url, secret) == "admin@localhost"
    before_counts, before_dump = counts(url), sqlite_dump(db_file)
    key = (cwd / ".corral" / "secret.key").read_bytes()

    second, check = corral_each([(cwd, ["init"], {}), (cwd, ["check"], {})])
    assert second.code == 0, second
    assert second.err == ""
    assert len(second.out.splitlines()) == 1
    assert "already initialised" in second.out
    assert not second.tokens
    assert check.code == 0, check
    assert check.out.startswith("settings ok") and len(check.out.splitlines()) == 1
    assert counts(url) == before_counts == (1, 1, before_counts[2])
    assert sqlite_dump(db_file) == before_dump
    assert (cwd / ".corral" / "secret.key").read_bytes() == key


def test_check_before_init_fails_and_creates_nothing(tmp_path: Path) -> None:
    result = corral(tmp_path, "check")
    assert_one_error(result, "corral init")
    assert list(tmp_path.iterdir()) == []


INVALID_SETTINGS = [
    # (environment, corral.toml, what the one line must name, commands to try)
    ({"CORRAL_PORT": "abc"}, None, "CORRAL_PORT", ("init", "up", "check")),
    ({"CORRAL_FOO": "1"}, None, "CORRAL_FOO", ("init", "up")),
    ({"CORRAL_DATABASE_URL": "mysql://x/y"}, None, "CORRAL_DATABASE_URL", ("init",)),
    ({}, 'port = "abc"\n', "port", ("init",)),
    ({}, "colour = 1\n", "colour", ("init",)),
    ({}, "port = \n", "corral.toml", ("up",)),
]


def test_invalid_settings_one_line_nothing_created(tmp_path: Path) -> None:
    runs: list[Run] = []
    expected: list[tuple[Path, list[Path], str]] = []
    for n, (environ, toml, name, commands) in enumerate(INVALID_SETTINGS):
        cwd = tmp_path / f"case{n}"
        cwd.mkdir()
        if toml is not None:
            (cwd / "corral.toml").write_text(toml)
        for command in commands:
            runs.append((cwd, [command], environ))
            expected.append((cwd, sorted(cwd.iterdir()), name))
    for (cwd, before, name), result in zip(expected, corral_each(runs), strict=True):
        assert_one_error(result, name)
        assert sorted(cwd.iterdir()) == before  # no data dir, no database, no key


def test_unreachable_database_one_line_no_password(tmp_path: Path) -> None:
    wrong_password = _with_db(POSTGRES_URL, "postgres").replace(
        "postgres@", "nosuchrole:hunter2@", 1
    )
    runs: list[Run] = [
        (tmp_path, [command], {"CORRAL_DATABASE_URL": UNREACHABLE})
        for command in ("init", "check", "migrate")
    ]
    runs.append((tmp_path, ["check"], {"CORRAL_DATABASE_URL": wrong_password}))
    for result in corral_each(runs):
        line = assert_one_error(result, "cannot reach database")
        assert "hunter2" not in result.out + result.err
        assert len(line) < 400
    assert list(tmp_path.iterdir()) == []


def test_newer_schema_refused_and_untouched(copy_of_initialised: Path) -> None:
    cwd = copy_of_initialised
    db_file = cwd / ".corral" / "corral.db"
    conn = sqlite3.connect(db_file)
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    before = sqlite_dump(db_file)
    commands = [["check"], ["init"], ["migrate"], ["audit", "verify"]]
    for result in corral_each([(cwd, command, {}) for command in commands]):
        assert_one_error(result, "9999", "newer")
    assert sqlite_dump(db_file) == before


def test_foreign_tables_refused_and_untouched(tmp_path: Path) -> None:
    data = tmp_path / ".corral"
    data.mkdir()
    conn = sqlite3.connect(data / "corral.db")
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (9.5)")
    conn.commit()
    conn.close()
    before = sqlite_dump(data / "corral.db")
    for result in corral_each([(tmp_path, ["init"], {}), (tmp_path, ["check"], {})]):
        assert_one_error(result, "no Corral schema version")
    assert sqlite_dump(data / "corral.db") == before
    assert sorted(p.name for p in data.iterdir() if not p.name.startswith("corral.db-")) == [
        "corral.db"
    ]


def test_token_and_audit_verify(
    initialised: tuple[Path, Result], copy_of_initialised: Path
) -> None:
    cwd = copy_of_initialised
    token, good = corral_each(
        [(cwd, ["token", "admin@localhost"], {}), (cwd, ["audit", "verify"], {})]
    )
    assert token.code == 0, token
    assert len(token.tokens) == 1
    assert token.tokens.isdisjoint(initialised[1].tokens)
    (secret,) = token.tokens
    assert authenticates_as(sqlite_url(cwd), secret) == "admin@localhost"
    assert good.code == 0, good
    assert good.out.startswith("default: ok")

    conn = sqlite3.connect(cwd / ".corral" / "corral.db")
    conn.execute("UPDATE auditevent SET details = '{}' WHERE seq = 2")
    conn.commit()
    conn.close()
    bad, nobody = corral_each(
        [(cwd, ["audit", "verify"], {}), (cwd, ["token", "nobody@localhost"], {})]
    )
    assert bad.code == 1, bad
    assert "Traceback" not in bad.err
    assert "BROKEN" in bad.out and "seq 2" in bad.out
    assert_one_error(nobody, "nobody@localhost")


# -- corral up -------------------------------------------------------------------------


class Broker:
    """A ``corral up`` subprocess whose output is drained by a thread."""

    def __init__(self, cwd: Path, **settings: str) -> None:
        self.proc = subprocess.Popen(
            [*CORRAL, "up"],
            cwd=cwd,
            env=_env(CORRAL_PORT="0", CORRAL_LOG_LEVEL="warning", **settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _drain(self, stream: object, is_out: bool) -> None:
        assert hasattr(stream, "readline")
        for line in iter(stream.readline, ""):
            (self.out if is_out else self.err).append(line)
            if is_out:
                self.lines.put(line)
        if is_out:
            self.lines.put(None)

    def banner(self, timeout: float = 30) -> str:
        """Everything printed up to the "Stop with Ctrl-C." line."""
        seen: list[str] = []
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                self.proc.wait(timeout=10)
                pytest.fail(f"corral up exited early: {''.join(seen)}{''.join(self.err)}")
            seen.append(line)
            if "Stop with Ctrl-C" in line:
                return "".join(seen)

    def serving(self, url: str) -> None:
        """Block until uvicorn answers (its signal handlers are in place from then on)."""
        assert httpx.get(f"{url}/healthz", timeout=20).json() == {"status": "ok"}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def broker_dir(tmp_path: Path) -> Iterator[tuple[Path, list[Broker]]]:
    started: list[Broker] = []
    yield tmp_path, started
    for broker in started:
        broker.close()


def test_up_serves_and_stops_cleanly(broker_dir: tuple[Path, list[Broker]]) -> None:
    cwd, started = broker_dir
    broker = Broker(cwd)
    started.append(broker)
    banner = broker.banner()
    match = re.search(r"listening on (https?://\S+)", banner)
    assert match, banner
    url = match.group(1)
    assert not url.endswith(":0")
    tokens = set(TOKEN.findall(banner))
    assert len(tokens) == 1
    (secret,) = tokens

    with httpx.Client(base_url=url, timeout=10) as client:
        me = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
        assert me.status_code == 200
        assert me.json()["user"]["role"] == "superuser"
        assert me.json()["user"]["email"] == "admin@localhost"

        anonymous = client.get("/api/v1/whoami")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert anonymous.json()["type"] == "urn:corral:problem:unauthenticated"

        verify = client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {secret}"})
        assert verify.status_code == 200
        assert verify.json()["ok"] is True

    assert broker.stop() == 0
    stderr = "".join(broker.err)
    assert "Traceback" not in stderr, stderr
    assert "CancelledError" not in stderr, stderr

    again = Broker(cwd)
    started.append(again)
    second_banner = again.banner()
    assert not TOKEN.search(second_banner)
    assert "corral token admin@localhost" in second_banner
    second_url = re.search(r"listening on (https?://\S+)", second_banner)
    assert second_url
    again.serving(second_url.group(1))
    assert again.stop() == 0
    assert "Traceback" not in "".join(again.err)
    assert not TOKEN.search("".join(again.out))


def test_up_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        result = corral(tmp_path, "up", CORRAL_PORT=str(port))
    assert_one_error(result, "CORRAL_PORT", str(port))


# -- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway, empty PostgreSQL database (plain postgresql:// URL, as people paste)."""
    name = f"corral_cli_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}"'))
    yield _with_db(_pg_admin_url(), name)
    asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_run(url: str, *sql: str) -> list[list[tuple[object, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        return [[tuple(row) for row in await conn.fetch(statement)] for statement in sql]
    finally:
        await conn.close()


def _pg_state(url: str) -> list[list[tuple[object, ...]]]:
    return asyncio.run(
        _pg_run(
            url,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' ORDER BY table_name",
            "SELECT count(*) FROM auditevent",
            'SELECT count(*) FROM "user"',
            "SELECT version_num FROM alembic_version",
        )
    )


def test_postgres_init_twice_and_check(tmp_path: Path, pg_url: str) -> None:
    async_url = pg_url.replace("postgresql://", "postgresql+asyncpg://")
    first = corral(tmp_path, "init", CORRAL_DATABASE_URL=pg_url)
    assert first.code == 0, first
    assert len(first.tokens) == 1
    assert not (tmp_path / ".corral" / "corral.db").exists()
    before, state = counts(async_url), _pg_state(pg_url)

    second = corral(tmp_path, "init", CORRAL_DATABASE_URL=pg_url)
    assert second.code == 0 and "already initialised" in second.out
    assert len(second.out.splitlines()) == 1 and not second.tokens
    assert counts(async_url) == before and _pg_state(pg_url) == state

    check = corral(tmp_path, "check", CORRAL_DATABASE_URL=pg_url)
    assert check.code == 0 and check.out.startswith("settings ok"), check


def test_postgres_empty_database_check_is_one_line(tmp_path: Path, pg_url: str) -> None:
    assert_one_error(corral(tmp_path, "check", CORRAL_DATABASE_URL=pg_url), "schema none")
    tables = asyncio.run(
        _pg_run(
            pg_url, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    )
    assert tables == [[(0,)]]


def test_postgres_newer_schema_refused(tmp_path: Path, pg_url: str) -> None:
    assert corral(tmp_path, "init", CORRAL_DATABASE_URL=pg_url).code == 0
    asyncio.run(_pg_run(pg_url, "UPDATE alembic_version SET version_num = '9999'"))
    before = _pg_state(pg_url)
    runs: list[Run] = [
        (tmp_path, [command], {"CORRAL_DATABASE_URL": pg_url})
        for command in ("check", "init", "migrate")
    ]
    for result in corral_each(runs):
        assert_one_error(result, "newer")
    assert _pg_state(pg_url) == before


def test_postgres_foreign_tables_refused(tmp_path: Path, pg_url: str) -> None:
    asyncio.run(_pg_run(pg_url, "CREATE TABLE invoices (id serial PRIMARY KEY)"))
    assert_one_error(
        corral(tmp_path, "init", CORRAL_DATABASE_URL=pg_url), "no Corral schema version"
    )
    tables = asyncio.run(
        _pg_run(
            pg_url,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        )
    )
    assert tables == [[("invoices",)]]
    assert list(tmp_path.iterdir()) == []


def test_audit_purge_applies_retention_and_chain_still_verifies(
    copy_of_initialised: Path,
) -> None:
    cwd = copy_of_initialised
    conn = sqlite3.connect(cwd / ".corral" / "corral.db")
    conn.execute("UPDATE workspace SET audit_retention_days = 30")
    conn.execute("UPDATE auditevent SET ts = '2020-01-01 00:00:00.000000'")
    conn.commit()
    conn.close()
    purge, verify, again = (
        corral_each([(cwd, args, {})])[0]
        for args in (["audit", "purge"], ["audit", "verify"], ["audit", "purge"])
    )
    assert purge.code == 0, purge
    assert purge.out.strip() == "default: removed 3 events older than 30 days"
    assert verify.code == 0, verify
    assert verify.out.startswith("default: ok (1 events")
    assert again.out.strip() == "default: removed 0 events older than 30 days"


def test_recordings_purge_reports_per_workspace(copy_of_initialised: Path) -> None:
    (purge,) = corral_each([(copy_of_initialised, ["recordings", "purge"], {})])
    assert purge.code == 0, purge
    assert purge.out.strip() == "default: removed 0 recordings (0 bytes) older than 365 days"
    (unknown,) = corral_each(
        [(copy_of_initialised, ["recordings", "purge", "--workspace", "nope"], {})]
    )
    assert unknown.code == 1 and unknown.err.startswith("corral: error: ")


def test_identity_purge_removes_expired_rows_and_audits(copy_of_initialised: Path) -> None:
    cwd = copy_of_initialised
    conn = sqlite3.connect(cwd / ".corral" / "corral.db")
    (workspace_id,) = conn.execute("SELECT id FROM workspace").fetchone()
    for ident, expires in (("a" * 32, "2020-01-01 00:00:00.000000"), ("b" * 32, "2999-01-01")):
        conn.execute(
            "INSERT INTO invitation (id, workspace_id, email, role, secret_hash, created_at,"
            " expires_at) VALUES (?, ?, ?, 'user', 'h', '2020-01-01 00:00:00.000000', ?)",
            (ident, workspace_id, f"{ident[0]}@example.test", expires),
        )
    conn.commit()
    conn.close()
    purge, again, unknown = corral_each([(cwd, ["identity", "purge"], {})]) + corral_each(
        [(cwd, ["identity", "purge"], {}), (cwd, ["identity", "purge", "--workspace", "x"], {})]
    )
    assert purge.code == 0, purge
    assert purge.out.strip() == (
        "default: removed 1 expired identity rows (0 challenges, 0 browser sessions, "
        "1 invitations, 0 SSO replay entries)"
    )
    assert again.out.strip().startswith("default: removed 0 expired identity rows")
    assert_one_error(unknown, "workspace x not found")
    conn = sqlite3.connect(cwd / ".corral" / "corral.db")
    left = [r[0] for r in conn.execute("SELECT id FROM invitation")]
    purged = conn.execute("SELECT details FROM auditevent WHERE action = 'identity.purged'")
    events = [json.loads(r[0]) for r in purged]
    conn.close()
    assert left == ["b" * 32]
    assert len(events) == 1 and events[0]["invitations"] == 1
