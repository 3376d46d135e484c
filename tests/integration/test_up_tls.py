"""`corral up` as a newcomer runs it, with TLS on: the broker serves TLS 1.3 only, starts
a local agent, prints how to open a terminal, and that exact command works; the session's
recording then plays with stock `asciinema cat`."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.slow

SHELL_USER = "corral-e2e"


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    url: str
    token: str
    server: str
    open_command: str
    ca: Path
    data: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _read_until(process: subprocess.Popen[bytes], pattern: str, timeout: float) -> list[str]:
    """Lines printed until one matches (raw reads: a buffered reader would hide lines
    from ``select``)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
            lines = data.decode(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if re.search(pattern, line):
                    return lines[: i + 1]
    raise AssertionError(f"{pattern!r} not printed; got {data.decode(errors='replace')}")


@pytest.fixture
def up(tmp_path: Path, shell_user: str) -> Iterator[Up]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "broker.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CORRAL_DATA_DIR": str(tmp_path / "data"),
        "CORRAL_PORT": str(port),
        "CORRAL_TLS_CERT_FILE": str(tmp_path / "broker.pem"),
        "CORRAL_TLS_KEY_FILE": str(tmp_path / "broker.pem"),
        "CORRAL_TLS_CA_FILE": str(tmp_path / "ca.pem"),
        "CORRAL_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines = _read_until(process, r"corral websh ", 90)
        text = "\n".join(lines)
        url = re.search(r"listening on (\S+)", text)
        token = re.search(r"Admin token \(shown once, valid 30 days\): (\S+)", text)
        server = re.search(r"this machine is server '([^']+)'", text)
        assert url and token and server, text
        yield Up(
            process,
            url.group(1),
            token.group(1),
            server.group(1),
            lines[-1].strip(),
            tmp_path / "ca.pem",
            tmp_path / "data",
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _run_in_pty(argv: list[str], env: dict[str, str], script: list[tuple[bytes, bytes]]) -> int:
    """Run ``argv`` on a real pty; for each (expect, send) wait for ``expect`` then type."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, start_new_session=True
    )
    os.close(slave)
    seen = b""
    try:
        for expect, send in script:
            deadline = time.monotonic() + 30
            while expect not in seen:
                assert time.monotonic() < deadline, f"{expect!r} not seen in {seen[-2000:]!r}"
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    try:
                        seen += os.read(master, 65536)
                    except OSError:
                        break
            os.write(master, send)
        return process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(master)


def test_up_with_tls_local_agent_and_websh(up: Up) -> None:
    assert up.url.startswith("https://127.0.0.1:")
    host, port = up.url.removeprefix("https://").split(":")
    # TLS 1.3 only: a client that stops at TLS 1.2 is refused during the handshake.
    old = ssl.create_default_context(cafile=str(up.ca))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection((host, int(port)), timeout=10) as raw,
        old.wrap_socket(raw, server_hostname=host),
    ):
        pass
    modern = ssl.create_default_context(cafile=str(up.ca))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        modern.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.version() == "TLSv1.3"

    # The printed command, as printed (plus the unix user the tests log in as).
    assert up.open_command.startswith(f"CORRAL_TOKEN={up.token} corral websh {up.server} ")
    argv = up.open_command.split()[1:]  # `python -m cli.main` stands for `corral` here
    assert argv[:3] == ["corral", "websh", up.server] and "--ca-file" in argv
    env = {**os.environ, "CORRAL_TOKEN": up.token, "PYTHONPATH": str(ROOT), "TERM": "xterm"}
    status = _run_in_pty(
        [sys.executable, "-m", "cli.main", *argv[1:], "--user", SHELL_USER],
        env,
        [(b"$ ", b"echo hi-$((6*7))\r"), (b"hi-42", b"exit 7\r")],
    )
    assert status == 7

    with httpx.Client(base_url=up.url, verify=modern, timeout=20) as http:
        headers = {"Authorization": f"Bearer {up.token}"}
        deadline = time.monotonic() + 10
        while True:
            recordings = http.get("/api/v1/recordings", headers=headers).json()["recordings"]
            if (recordings and recordings[0]["size_bytes"] > 0) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        (recording,) = recordings
        cast = http.get(f"/api/v1/recordings/{recording['id']}/download", headers=headers)
        assert cast.status_code == 200
    path = up.data / "downloaded.cast"
    path.write_bytes(cast.content)
    player = Path(sys.executable).with_name("asciinema")
    played = subprocess.run(
        [str(player), "cat", str(path)], capture_output=True, timeout=30, check=False
    )
    assert played.returncode == 0, played.stderr
    assert b"hi-42" in played.stdout

    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(30) == 0
