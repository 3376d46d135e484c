"""``corral user set-password`` / ``corral user add`` as real subprocesses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from broker.audit import AuditLog
from broker.services import Services
from broker.store.db import Database
from idp.passwords import LocalLogin, Passwords
from tests.broker.test_cli import CORRAL, _env
from tests.conftest import TEST_KEY
from tests.idp.conftest import PASSWORD

pytestmark = pytest.mark.slow


def run(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CORRAL, *args],
        cwd=cwd,
        env=_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_set_password_from_stdin_then_login(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    weak = run(tmp_path, "user", "set-password", "admin@localhost", stdin="short\n")
    assert weak.returncode == 1 and weak.stderr.startswith("corral: error: password must")
    assert "Traceback" not in weak.stderr
    done = run(tmp_path, "user", "set-password", "admin@localhost", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    missing = run(tmp_path, "user", "set-password", "nobody@localhost", stdin=PASSWORD + "\n")
    assert missing.returncode == 1 and "nobody@localhost not found" in missing.stderr
    added = run(tmp_path, "user", "add", "bob@corral.test", "--role", "staff")
    assert added.returncode == 0 and "bob@corral.test (staff)" in added.stdout

    db = Database(f"sqlite+aiosqlite:///{tmp_path / '.corral' / 'corral.db'}")
    try:
        services = Services.build(db, AuditLog(db, TEST_KEY))
        ws = await services.workspaces.find("default")
        assert ws is not None
        user = await LocalLogin(services, Passwords()).check(
            ws.id, "admin@localhost", PASSWORD, source="t"
        )
        assert user.email == "admin@localhost"
        events = await services.audit.events(ws.id, limit=1000)
        changed = [e for e in events if e.action == "password.changed"]
        assert len(changed) == 1 and changed[0].actor_type == "operator"
    finally:
        await db.dispose()
