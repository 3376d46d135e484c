"""The agent file runs on the oldest Python it supports (3.9), as server distributions ship.

Skipped where no working 3.9 interpreter is found; this project's machines have one (pyenv).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.build import build_zipapp


def _python39() -> str | None:
    """A Python 3.9 that actually starts (a pyenv shim alone may only print an error)."""
    candidates = [shutil.which("python3.9"), "/usr/bin/python3.9"]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.9*/bin/python3.9"))
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 9)":
            return candidate
    return None


PY39 = _python39()

pytestmark = pytest.mark.skipif(PY39 is None, reason="no working Python 3.9 found")

ROUND_TRIP = """
import sys
sys.path.insert(0, sys.argv[1])
import agent.daemon, agent.main, agent.register, agent.wsframe
from websh import Connection, ConnectionKind, Hello, Side
client = Connection(ConnectionKind.CONTROL, Side.CLIENT)
client.send(Hello(agent_id="a" * 32, secret="crlagt_" + "0" * 32 + "_" + "0" * 48,
                  agent_version="1", sysinfo={"disks": [{"mount": "/"}]}))
server = Connection(ConnectionKind.CONTROL, Side.SERVER)
for payload in client.data_to_send():
    server.receive(payload)
(hello,) = server.events_received()
assert hello.sysinfo["disks"][0]["mount"] == "/"
print(sys.version_info[:2])
"""


def test_zipapp_runs_on_python39(tmp_path: Path) -> None:
    assert PY39 is not None
    pyz = tmp_path / "corral-agent.pyz"
    build_zipapp(str(pyz))
    version = subprocess.run(
        [PY39, "-I", "-S", str(pyz), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("corral-agent ")
    done = subprocess.run(
        [PY39, "-I", "-S", "-c", ROUND_TRIP, str(pyz)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(3, 9)"
