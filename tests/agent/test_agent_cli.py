"""``corral-agent`` as a process: register over HTTP(S), run against a loopback broker, SIGTERM."""

from __future__ import annotations

import http.server
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trustme
from agent_ws_peer import CHANNEL, running_peer

from agent.config import AgentConfig, load_config, save_config
from agent.main import main
from websh import (
    ChannelHello,
    ChannelKind,
    ChannelWelcome,
    Exit,
    Hello,
    OpenChannel,
    Stdout,
    Welcome,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


class _Broker(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Broker.received.append({"path": self.path, "body": body})
        if body["token"] == "good-token":
            status, ctype = 201, "application/json"
            answer = {"server_id": "srv_1", "server_name": body["name"], "workspace_id": "ws_1",
                      "secret": "the-long-secret"}  # fmt: skip
        else:
            status, ctype = 401, "application/problem+json"
            answer = {"type": "about:blank", "title": "Unauthorized", "status": 401,
                      "detail": "registration token is invalid or expired"}  # fmt: skip
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _serve(server: http.server.HTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_broker() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Broker)
    for port in _serve(server):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def https_broker(ca: trustme.CA) -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Broker)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for port in _serve(server):
        yield f"https://127.0.0.1:{port}"


def test_register_writes_config(
    http_broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "etc" / "agent.toml"
    argv = ["register", "--url", http_broker + "/", "--token", "good-token", "--name", "web-1",
            "--tag", "env=prod", "--tag", "team=ops", "--config", str(path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "srv_1" in out
    assert "the-long-secret" not in out
    request = _Broker.received[-1]
    assert request["path"] == "/api/v1/agents/register"
    assert request["body"]["tags"] == {"env": "prod", "team": "ops"}
    assert request["body"]["name"] == "web-1"
    assert "hostname" in request["body"]["sysinfo"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = load_config(str(path))
    assert (config.agent_id, config.secret, config.broker_url) == (
        "srv_1", "the-long-secret", http_broker,
    )  # fmt: skip
    assert dict(config.tags) == {"env": "prod", "team": "ops"}


def test_register_problem_json_is_one_line(
    http_broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    code = main(["register", "--url", http_broker, "--token", "bad", "--config", str(path)])
    assert code == 1
    err = capsys.readouterr().err
    assert err == "corral-agent: error: registration token is invalid or expired\n"
    assert not path.exists()


def test_register_over_tls_with_ca_file(
    https_broker: str, ca: trustme.CA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    path = tmp_path / "agent.toml"
    argv = ["register", "--url", https_broker, "--token", "good-token", "--config", str(path)]
    assert main([*argv, "--ca-file", str(ca_file)]) == 0
    assert load_config(str(path)).ca_file == str(ca_file)
    # Without the CA the certificate is refused, in one line.
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("corral-agent: error: TLS certificate of 127.0.0.1")
    assert err.count("\n") == 1


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "missing.toml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("corral-agent: error: ") and err.count("\n") == 1
    assert main(["register", "--url", "ftp://x", "--token", "t", "--config", "x"]) == 1
    assert main(["register", "--token", "t"]) == 1
    assert "--url" in capsys.readouterr().err
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("corral-agent 0.")


def test_wss_to_a_tls_broker(ca: trustme.CA, tmp_path: Path) -> None:
    from agent.daemon import Agent
    from agent.transport import WebSocketClient

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with running_peer(server_context) as peer:
        config = AgentConfig(
            broker_url=f"https://127.0.0.1:{peer.port}", agent_id="ag_tls", secret="tls-secret",
            ca_file=str(ca_file),
        )  # fmt: skip
        agent = Agent(config, sysinfo=lambda: {"hostname": "h"})
        thread = threading.Thread(target=agent.run, kwargs={"install_signals": False})
        thread.start()
        try:
            control = peer.accept()
            hello = control.recv()
            assert isinstance(hello, Hello)
            assert hello.agent_id == "ag_tls"
            control.send(Welcome(heartbeat_interval=5, metrics_interval=0))
        finally:
            agent.stop()
            thread.join(10)
        # An untrusted certificate fails with a clear transport error.
        client = WebSocketClient(f"wss://127.0.0.1:{peer.port}/agent/v1/control")
        client.connect()
        import selectors

        from agent.errors import TransportError

        with selectors.DefaultSelector() as sel, pytest.raises(TransportError, match="TLS"):
            while True:
                sel.register(client.fileno(), selectors.EVENT_READ | selectors.EVENT_WRITE)
                sel.select(1)
                sel.unregister(client.fileno())
                client.on_writable() if client.wants_write else client.on_readable()


def test_agent_process_serves_exec_and_stops_on_sigterm(tmp_path: Path) -> None:
    with running_peer() as peer:
        path = tmp_path / "agent.toml"
        save_config(
            AgentConfig(broker_url=f"http://127.0.0.1:{peer.port}", agent_id="ag_proc",
                        secret="proc-secret"),
            str(path),
        )  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(path)],
            cwd=str(ROOT), env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            control = peer.accept()
            hello = control.recv()
            assert isinstance(hello, Hello)
            assert hello.agent_id == "ag_proc"
            control.send(Welcome(heartbeat_interval=5, metrics_interval=0))
            control.send(
                OpenChannel(
                    channel_id="ex_p",
                    kind=ChannelKind.EXEC,
                    token="tok-p",
                    path=CHANNEL,
                    user=_me(),
                    command=["echo", "from-process"],
                )
            )
            channel = peer.accept(CHANNEL)
            assert isinstance(channel.recv(), ChannelHello)
            channel.send(ChannelWelcome())
            out = b""
            while True:
                event = channel.recv()
                if isinstance(event, Stdout):
                    out += bytes(event.data)
                if isinstance(event, Exit):
                    break
            assert out == b"from-process\n"
            assert event.status == 0
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        assert "shutting down (SIGTERM): hanging up 0 terminal(s)" in err
        assert "proc-secret" not in err
        assert "tok-p" not in err
        assert control.wait_closed()[0] == 1001


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
