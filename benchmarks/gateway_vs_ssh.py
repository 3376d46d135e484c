"""Corral's terminal path against OpenSSH through a bastion, in one run, on loopback.

Everything the comparison needs is started here and torn down afterwards:

* OpenSSH: Debian's ``sshd`` twice (a target and a bastion), each ``sshd -D -f`` with its
  own host key, ``authorized_keys``, pid file and port in a temporary folder, bound to
  127.0.0.1 (see ``_sshd.py``); the client is ``ssh -tt -F <private config>``, directly
  (``ssh target``) or through the bastion (``ssh -J bastion target``): two real hops.
* Corral: a real broker in a child process (uvicorn serving HTTPS/WSS, TLS 1.3 only, a
  ``trustme`` certificate; SQLite; recording on, as always) and a real agent
  (``python -m agent run``, registered with ``--ca-file``) that dials it over WSS. A
  session is opened the way a client does: ``POST /api/v1/sessions``, then the
  single-use ``websocket_url``, then websh ``client_hello``.
* "Corral, agent directly": a second agent process with the same credential whose
  ``broker_url`` points at this script, which then plays the broker's part itself (websh
  CONTROL ``welcome``, ``open_channel``, CHANNEL ``channel_welcome``) and types straight
  into the agent's data channel over WSS. Same agent code, same TLS, same websh framing,
  but no broker process and no user relay: the difference between the two Corral paths
  is what the broker hop adds (user WebSocket + relay + recording + one more TLS leg).
* "Corral via broker, corral websh": the same broker and agent, typed into through the
  product's own terminal client, ``corral websh SERVER --url URL --ca-file CA`` with
  ``CORRAL_TOKEN`` set (as ``corral up`` prints it), run on a pty like a person runs it:
  it puts the pty in raw mode and relays stdin -> websh ``input``, ``output`` -> stdout.
  The "Corral via broker" row is this script speaking websh itself (the lean client the
  issue's targets are read against); this row is the figure a person at the CLI sees.

All shells are the login bash of the same unprivileged account (``corral-e2e``, created
like the test suite's ``shell_user`` fixture). One measuring client, synchronous and
single-threaded, drives every path through the same ``Terminal`` interface
(``_terminals.py``). The paths are interleaved in rounds so machine load changes hit them
alike. Prints figures; asserts nothing. Usage::

    .venv/bin/python benchmarks/gateway_vs_ssh.py [--keys 1000] [--opens 30] [--size-mb 200]
"""

# Harness code: blocking calls are the point (see _terminals.py).

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from _blockingws import BlockingWebSocket
from _broker import ROOT, run_broker_loop
from _sshd import OpenSSH, SshdMissing, start_openssh
from _terminals import (
    FdTerminal,
    Stats,
    Terminal,
    WebshTerminal,
    echo_latencies,
    local_bash,
    pty_terminal,
    ssh_terminal,
    stats,
    throughput,
    wait_prompt,
)

from broker.serving import loop_factory, resolve_event_loop
from broker.settings import EVENT_LOOPS
from websh import (
    ChannelHello,
    ChannelKind,
    ChannelWelcome,
    ClientHello,
    Connection,
    ConnectionKind,
    Hello,
    OpenChannel,
    Side,
    Welcome,
)

USER = "corral-e2e"
SERVER_NAME = "bench-host"
COLS, ROWS = 80, 24
LABEL = 32  # width of the path column
CLI = "Corral via broker, corral websh"
CHANNEL_PATH = "/agent/v1/channel"


def ensure_user(name: str) -> None:
    """The test suite's ``shell_user``: an ordinary account with bash and a clean home."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", name],
            check=True,
            capture_output=True,
        )


def make_data_file(path: Path, size_mb: int) -> None:
    """Printable lines (base64 of random bytes, 76 + newline): the pty turns ``\\n`` into
    ``\\r\\n``, and a terminal session streams text, not binary."""
    import base64

    block = b"".join(
        base64.b64encode(os.urandom(57)) + b"\n" for _ in range(1 << 14)
    )  # 1,261,568 bytes
    with path.open("wb") as out:
        written = 0
        while written < size_mb * 1_000_000:
            out.write(block)
            written += len(block)
    path.chmod(0o644)


class CpuMeter:
    """The CPU (user + system, from ``/proc``) some processes use while one path is
    measured: per keystroke echoed and per MB of output, figures that, unlike latencies,
    hardly depend on what else the machine runs."""

    def __init__(self, path: str, pids: list[int], title: str, output_done: str) -> None:
        self.path, self.pids, self.title, self.output_done = path, pids, title, output_done
        self.cpu = {"echo": 0.0, "keys": 0.0, "output": 0.0, "bytes": 0.0}
        self._before = 0.0

    def start(self, path: str) -> None:
        if path == self.path:
            self._before = total_cpu_seconds(self.pids)

    def stop(self, path: str, kind: str, count: float) -> None:
        """``kind`` "echo" (``count`` keys) or "output" (``count`` bytes)."""
        if path == self.path:
            self.cpu[kind] += total_cpu_seconds(self.pids) - self._before
            self.cpu["keys" if kind == "echo" else "bytes"] += count

    def print(self) -> None:
        cpu = self.cpu
        if not (cpu["keys"] or cpu["bytes"]):
            return
        print(self.title)
        if cpu["keys"]:
            per_key = cpu["echo"] / cpu["keys"] * 1e6
            print(f"  per keystroke echoed (key in, echo out): {per_key:.0f} us")
        if cpu["bytes"]:
            per_mb = cpu["output"] / cpu["bytes"] * 1e6 * 1e3
            print(f"  per MB of terminal output {self.output_done}: {per_mb:.1f} ms")


# --------------------------------------------------------------------------- the broker


async def broker_child(workdir: Path) -> None:
    """Run in a child process, so the measuring client never shares its event loop."""
    from _broker import running_broker

    from broker.store.models import TokenScope

    cert = str(workdir / "broker.pem")
    async with running_broker(workdir / "broker", tls=(cert, cert)) as broker:
        services = broker.runtime.services
        admin = await services.users.find_by_email(broker.workspace_id, "admin@localhost")
        assert admin is not None
        _, token = await services.tokens.create(
            broker.workspace_id, admin.id, name="bench", scope=TokenScope.ADMIN, expires_in_days=30
        )
        info = {
            "url": broker.url,
            "api_token": token,
            "registration_token": await broker.registration_token(),
            "pid": os.getpid(),
        }
        print(json.dumps(info), flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
        assert broker.hub is not None
        await broker.hub.close_all()


class CorralBroker:
    def __init__(
        self, workdir: Path, ca: ssl.SSLContext, profile: str | None = None, loop: str = "auto"
    ) -> None:
        self.workdir = workdir
        self.ca = ca
        extra = ["--profile", profile] if profile else []
        extra += ["--loop", loop]
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--broker-child", str(workdir), *extra],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the broker did not start")
        info = json.loads(line)
        self.url: str = info["url"]
        self.api_token: str = info["api_token"]
        self.registration_token: str = info["registration_token"]
        self.pid: int = info["pid"]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.post_ms: list[float] = []  # how long each POST /api/v1/sessions took

    def open_session(self) -> tuple[WebshTerminal, float, float, float]:
        """POST /api/v1/sessions, then the WebSocket; (terminal, start, first byte, prompt)."""
        start = time.perf_counter()
        api = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ca, timeout=30)
        body = json.dumps({"server": SERVER_NAME, "unix_user": USER, "cols": COLS, "rows": ROWS})
        api.request(
            "POST",
            "/api/v1/sessions",
            body,
            {"Authorization": f"Bearer {self.api_token}", "Content-Type": "application/json"},
        )
        response = api.getresponse()
        data = response.read()
        api.close()
        self.post_ms.append((time.perf_counter() - start) * 1000)
        if response.status != 201:
            raise RuntimeError(f"open failed: {response.status} {data[:300]!r}")
        ws = BlockingWebSocket.connect(json.loads(data)["websocket_url"], self.ca)
        term = WebshTerminal(ws, Connection(ConnectionKind.USER, Side.CLIENT))
        term.send(ClientHello(cols=COLS, rows=ROWS))
        first, prompt = wait_prompt(term)
        return term, start, first, prompt

    def corral_websh(self, ca_file: Path, home: Path) -> FdTerminal:
        """``corral websh`` on a pty of its own (its ``HOME`` holds no profile: the URL,
        CA file and token are the only settings it gets)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CORRAL_") and key != "XDG_CONFIG_HOME"
        }
        env.update(
            PYTHONPATH=str(ROOT), HOME=str(home), TERM="xterm-256color", CORRAL_TOKEN=self.api_token
        )
        argv = [
            sys.executable, "-m", "cli.main", "websh", SERVER_NAME, "--url", self.url,
            "--ca-file", str(ca_file), "--user", USER,
        ]  # fmt: skip
        return pty_terminal(argv, env, str(ROOT), COLS, ROWS)

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


# --------------------------------------------------------------------------- the agent


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def register_agent(broker: CorralBroker, config: Path, ca_file: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "agent", "register", "--url", broker.url,
            "--token", broker.registration_token, "--config", str(config),
            "--name", SERVER_NAME, "--ca-file", str(ca_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"agent register failed: {done.stderr or done.stdout}")


class AgentDirect:
    """This script as the agent's broker: the agent dials it, and terminals are typed into
    the agent's data channel with no broker in between."""

    def __init__(self, cert_file: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.load_cert_chain(str(cert_file))
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.control: tuple[BlockingWebSocket, Connection] | None = None

    def _accept(self, timeout: float = 30.0) -> BlockingWebSocket:
        self.listener.settimeout(timeout)
        raw, _ = self.listener.accept()
        raw.settimeout(timeout)
        ws, _ = BlockingWebSocket.accept(self.context.wrap_socket(raw, server_side=True))
        return ws

    def accept_control(self) -> None:
        ws = self._accept()
        conn = Connection(ConnectionKind.CONTROL, Side.SERVER)
        payload = ws.recv(30)
        assert payload is not None
        conn.receive(payload)
        (hello,) = conn.events_received()
        assert isinstance(hello, Hello)
        # No heartbeats or metrics while measuring: the channel is all that moves.
        conn.send(Welcome(heartbeat_interval=3600.0, metrics_interval=0.0))
        for data in conn.data_to_send():
            ws.send(data)
        self.control = (ws, conn)

    def open_terminal(self) -> WebshTerminal:
        assert self.control is not None
        control_ws, control = self.control
        token = secrets.token_hex(24)
        channel_id = "direct-" + secrets.token_hex(8)
        control.send(
            OpenChannel(
                channel_id=channel_id,
                kind=ChannelKind.TERMINAL,
                token=token,
                path=CHANNEL_PATH,
                user=USER,
                cols=COLS,
                rows=ROWS,
            )
        )
        for data in control.data_to_send():
            control_ws.send(data)
        ws = self._accept()
        conn = Connection(ConnectionKind.CHANNEL, Side.SERVER, channel=ChannelKind.TERMINAL)
        payload = ws.recv(30)
        assert payload is not None
        conn.receive(payload)
        (hello,) = conn.events_received()
        assert isinstance(hello, ChannelHello) and hello.token == token
        term = WebshTerminal(ws, conn)
        term.send(ChannelWelcome())
        wait_prompt(term)
        return term

    def close(self) -> None:
        if self.control is not None:
            self.control[0].close()
        self.listener.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (``/proc/PID/stat``, clock ticks)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(root: int, prefix: str) -> list[int]:
    """``root``'s descendants whose command name starts with ``prefix``, through such
    processes only: under a listening sshd and ``"sshd"``, per connection a privileged
    monitor and the unprivileged process that reads the pty or the channel and does the
    crypto (``sshd-session`` from OpenSSH 9.8 on), not the login shell or what it runs."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:  # gone meanwhile
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1]
        children.setdefault(int(fields.split()[1]), []).append((int(entry), name))
    found: list[int] = []
    queue = [root]
    while queue:
        for pid, name in children.get(queue.pop(), []):
            if name.startswith(prefix):
                found.append(pid)
                queue.append(pid)
    return sorted(found)


def total_cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


@contextlib.contextmanager
def measuring(terms: dict[str, Terminal], active: Terminal) -> Iterator[None]:
    """Measure ``active``; meanwhile the other WebSocket terminals answer pings in a
    background thread (a quiet session pings its clients; see LiveSession)."""
    parked = [t for t in terms.values() if isinstance(t, WebshTerminal) and t is not active]
    for term in parked:
        term.park()
    try:
        yield
    finally:
        for term in parked:
            term.unpark()


# --------------------------------------------------------------------------- printing


def row(label: str, s: Stats, unit: str = "") -> str:
    figures = f"{s.n:>6} {s.median:>9.0f} {s.p90:>9.0f} {s.p99:>9.0f} {s.mean:>9.0f}"
    return f"{label:<{LABEL}} {figures}{unit}"


def print_table(title: str, header: str, lines: list[str]) -> None:
    print()
    print(title)
    print(header)
    print("-" * len(header))
    for line in lines:
        print(line)


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> None:
    import trustme

    ensure_user(USER)
    load_before = os.getloadavg()
    print(
        f"gateway_vs_ssh: {args.keys} keys (+{args.warmup} warm-up) per path in {args.rounds} "
        f"interleaved rounds; {args.opens} opens per path; cat {args.size_mb} MB x {args.reps}; "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}; {ssl.OPENSSL_VERSION}; "
        f"broker loop {resolve_event_loop(args.loop)}; "
        f"{subprocess.run(['ssh', '-V'], capture_output=True, text=True).stderr.strip()}; "
        f"load average before {load_before[0]:.2f}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    workdir.chmod(0o711)  # the shells' user must reach the data file and authorized_keys
    ssh: OpenSSH | None = None
    broker: CorralBroker | None = None
    agents: list[subprocess.Popen[bytes]] = []
    direct: AgentDirect | None = None
    terms: dict[str, Terminal] = {}
    try:
        data_file = workdir / "data.txt"
        make_data_file(data_file, args.size_mb)
        ssh = start_openssh(workdir / "ssh", USER)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        ca_file, cert_file = workdir / "ca.pem", workdir / "broker.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
        client_tls = ssl.create_default_context(cafile=str(ca_file))
        client_tls.minimum_version = ssl.TLSVersion.TLSv1_3

        broker = CorralBroker(workdir, client_tls, args.profile, args.loop)
        config = workdir / "agent" / "agent.toml"
        register_agent(broker, config, ca_file)
        agents.append(start_agent(config, workdir / "agent.log"))
        cli_home = workdir / "cli-home"
        cli_home.mkdir()

        direct = AgentDirect(cert_file)
        direct_config = workdir / "direct" / "agent.toml"
        direct_config.parent.mkdir()
        text = config.read_text()
        broker_url = tomllib.loads(text)["broker_url"]
        direct_config.write_text(text.replace(broker_url, direct.url))
        direct_config.chmod(0o600)
        agents.append(start_agent(direct_config, workdir / "direct.log"))
        direct.accept_control()

        # the broker's agent: wait until sessions open
        end = time.monotonic() + 30
        while True:
            try:
                term, *_ = broker.open_session()
                term.close()
                break
            except RuntimeError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)

        # ---------------------------------------------------------------- echo
        openers: dict[str, Callable[[], Terminal]] = {
            "local bash (pty)": lambda: local_bash(USER),
            "ssh direct": lambda: ssh_terminal(ssh.argv(jump=False)),  # type: ignore[union-attr]
            "ssh -J bastion": lambda: ssh_terminal(ssh.argv(jump=True)),  # type: ignore[union-attr]
            "Corral via broker": lambda: broker.open_session()[0],  # type: ignore[union-attr]
            CLI: lambda: broker.corral_websh(ca_file, cli_home),  # type: ignore[union-attr]
            "Corral, agent directly": direct.open_terminal,
        }
        # The sshd processes of the ssh -J terminal: on the bastion, all of them; on the
        # target, the ones that came with it (the "ssh direct" terminal has its own).
        target_sshd, bastion_sshd = (process.pid for process in ssh.processes)
        jump_sshd: dict[str, list[int]] = {}
        for name, opener in openers.items():
            earlier = descendants(target_sshd, "sshd")
            term = opener()
            if isinstance(term, FdTerminal):  # the Corral openers waited already
                wait_prompt(term)
            terms[name] = term
            if name == "ssh -J bastion":
                jump_sshd["target"] = sorted(set(descendants(target_sshd, "sshd")) - set(earlier))
                jump_sshd["bastion"] = descendants(bastion_sshd, "sshd")
        jump = terms["ssh -J bastion"]
        assert isinstance(jump, FdTerminal)
        ssh_clients = [jump.process.pid, *descendants(jump.process.pid, "ssh")]  # + ssh -W
        cli = terms[CLI]
        assert isinstance(cli, FdTerminal)
        echo_stats: dict[str, Stats] = {}
        # The broker's agent is the broker's; the agent of the "agent directly" path (no
        # broker in it) shows what the agent costs, whichever path it serves. The target
        # sshd does the agent's work on the ssh -J path, the bastion's the broker's. The
        # clients: ssh and its ProxyJump ``ssh -W`` plus this process reading their
        # pipe, against this process alone speaking WebSocket over TLS to the broker.
        this = [os.getpid()]
        meters = [
            CpuMeter(
                "Corral via broker", [broker.pid],
                "broker process CPU (user + system) while its path was measured:",
                "relayed and recorded",
            ),
            CpuMeter(
                "Corral, agent directly", [agents[1].pid],
                "agent process CPU (user + system) while the agent-direct path was measured:",
                "sent",
            ),
            CpuMeter(
                "ssh -J bastion", jump_sshd["target"],
                f"target sshd processes' CPU ({len(jump_sshd['target'])}: read the pty, "
                "encrypt) while the ssh -J path was measured:",
                "sent",
            ),
            CpuMeter(
                "ssh -J bastion", jump_sshd["bastion"],
                f"bastion sshd processes' CPU ({len(jump_sshd['bastion'])}: relay) while "
                "the ssh -J path was measured:",
                "relayed",
            ),
            CpuMeter(
                "Corral via broker", this,
                "client CPU, Corral via broker (this process: TLS, WebSocket, websh):",
                "received",
            ),
            CpuMeter(
                "ssh -J bastion", ssh_clients + this,
                "client CPU, ssh -J (ssh, its ssh -W and this process reading the pipe):",
                "received",
            ),
            CpuMeter(
                CLI, [cli.process.pid],
                "corral websh process CPU (raw pty, websockets, websh) while its path was "
                "measured:",
                "received",
            ),
            CpuMeter(
                CLI, [broker.pid],
                "broker process CPU while the corral websh path was measured:",
                "relayed and recorded",
            ),
        ]  # fmt: skip
        if args.keys > 0:
            echo: dict[str, list[float]] = {name: [] for name in terms}
            per_round = max(1, args.keys // args.rounds)
            warm = args.warmup
            for _ in range(args.rounds):
                for name, term in terms.items():
                    for meter in meters:
                        meter.start(name)
                    with measuring(terms, term):
                        echo[name] += echo_latencies(term, per_round, warm)
                    for meter in meters:
                        meter.stop(name, "echo", per_round + warm)
                warm = 10
            echo_stats = {name: stats(values) for name, values in echo.items()}
            print_table(
                "keystroke echo, microseconds (write of one key -> its echo read back)",
                f"{'path':<{LABEL}} {'n':>6} {'median':>9} {'p90':>9} {'p99':>9} {'mean':>9}",
                [row(name, s) for name, s in echo_stats.items()],
            )

        # ---------------------------------------------------------------- throughput
        tp_median: dict[str, float] = {}
        if args.reps > 0:
            # The local pty comes first: this script reading the pty master itself, with
            # nothing behind it (a pty holds about 17 KiB and hands out at most 4 KiB per
            # read). It is this reader's rate, not a ceiling: see pty_read.py.
            tp_paths = [
                "local bash (pty)",
                "ssh direct",
                "ssh -J bastion",
                "Corral via broker",
                CLI,
                "Corral, agent directly",
            ]
            rates: dict[str, list[float]] = {name: [] for name in tp_paths}
            sizes: dict[str, int] = {}
            for _ in range(args.reps):
                for name in tp_paths:
                    for meter in meters:
                        meter.start(name)
                    with measuring(terms, terms[name]):
                        received, took = throughput(terms[name], str(data_file))
                    for meter in meters:
                        meter.stop(name, "output", received)
                    rates[name].append(received / took / 1e6)
                    sizes[name] = received
            print()
            print(f"output throughput: cat of a {args.size_mb} MB text file in the shell, MB/s "
                  "(10^6 bytes of terminal output per second, Enter -> end mark)")  # fmt: skip
            header = (
                f"{'path':<{LABEL}} {'bytes':>12} "
                + " ".join(f"{'run ' + str(i + 1):>8}" for i in range(args.reps))
                + f" {'median':>8}"
            )
            print(header)
            print("-" * len(header))
            for name in tp_paths:
                tp_median[name] = statistics.median(rates[name])
                print(
                    f"{name:<{LABEL}} {sizes[name]:>12} "
                    + " ".join(f"{r:>8.1f}" for r in rates[name])
                    + f" {tp_median[name]:>8.1f}"
                )

        print()
        for meter in meters:
            meter.print()

        for term in terms.values():
            term.close()
        terms.clear()

        # ---------------------------------------------------------------- open
        def open_ssh(jump: bool) -> tuple[Terminal, float, float, float]:
            assert ssh is not None
            start = time.perf_counter()
            term = ssh_terminal(ssh.argv(jump=jump))
            first, prompt = wait_prompt(term)
            return term, start, first, prompt

        def open_cli() -> tuple[Terminal, float, float, float]:
            assert broker is not None
            start = time.perf_counter()
            term = broker.corral_websh(ca_file, cli_home)
            first, prompt = wait_prompt(term)
            return term, start, first, prompt

        open_paths: dict[str, Callable[[], tuple[Terminal, float, float, float]]] = {
            "ssh direct": lambda: open_ssh(False),
            "ssh -J bastion": lambda: open_ssh(True),
            "Corral via broker": broker.open_session,
            CLI: open_cli,
        }
        open_stats: dict[str, Stats] = {}
        if args.opens > 0:
            broker.post_ms.clear()
            to_prompt: dict[str, list[float]] = {name: [] for name in open_paths}
            to_first: dict[str, list[float]] = {name: [] for name in open_paths}
            for _ in range(args.opens):
                for name, opener in open_paths.items():
                    term, start, first, prompt = opener()
                    to_first[name].append((first - start) * 1000)
                    to_prompt[name].append((prompt - start) * 1000)
                    term.close()
            open_stats = {name: stats(v) for name, v in to_prompt.items()}
            first_stats = {name: stats(v) for name, v in to_first.items()}
            print_table(
                "session open -> prompt, milliseconds (ssh, corral websh: process start; "
                "Corral: POST /api/v1/sessions + WebSocket + client_hello)",
                f"{'path':<{LABEL}} {'n':>6} {'median':>9} {'p90':>9} {'p99':>9} {'mean':>9}"
                f" {'1st byte':>9}",
                [
                    f"{row(name, s)} {first_stats[name].median:>9.0f}"
                    for name, s in open_stats.items()
                ],
            )
            post = stats(broker.post_ms)
            print(
                f"of which POST /api/v1/sessions (HTTPS connect, policy, session row, the "
                f"agent's channel, recording): median {post.median:.0f} ms, p90 {post.p90:.0f} ms"
            )

        # ---------------------------------------------------------------- verdicts
        recorded = sum(p.stat().st_size for p in (workdir / "broker").rglob("*.cast"))
        print()
        print(f"recordings written by the broker: {recorded / 1e6:.0f} MB of asciicast")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print()
        print("targets (Corral issue #4)                              figure        verdict")
        verdicts: list[tuple[str, str, bool]] = []
        if echo_stats:
            corral, jump = echo_stats["Corral via broker"], echo_stats["ssh -J bastion"]
            hop = corral.median - echo_stats["Corral, agent directly"].median
            verdicts += [
                (
                    "echo median, Corral vs ssh -J (<= 1.00x)",
                    f"{corral.median / jump.median:.2f}x",
                    corral.median <= jump.median,
                ),
                ("broker hop added to echo median (<= 150 us)", f"{hop:.0f} us", hop <= 150),
            ]
        if tp_median:
            ratio = tp_median["Corral via broker"] / tp_median["ssh -J bastion"]
            verdicts.append(
                ("throughput, Corral vs ssh -J (>= 0.90x)", f"{ratio:.2f}x", ratio >= 0.9)
            )
        if open_stats:
            median = open_stats["Corral via broker"].median
            verdicts.append(
                ("session open to prompt, median (<= 100 ms)", f"{median:.0f} ms", median <= 100)
            )
        for label, figure, ok in verdicts:
            print(f"{label:<54} {figure:>8}      {'met' if ok else 'MISSED'}")
        if echo_stats:
            cli_echo = echo_stats[CLI].median
            print(
                f"(not a target) echo median through corral websh: {cli_echo:.0f} us, "
                f"{cli_echo / echo_stats['ssh -J bastion'].median:.2f}x ssh -J, "
                f"{cli_echo - echo_stats['Corral via broker'].median:+.0f} us on the lean client"
            )
    finally:
        for term in terms.values():
            with contextlib.suppress(Exception):
                term.close()
        if direct is not None:
            direct.close()
        for agent in agents:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
        if broker is not None:
            broker.stop()
        if ssh is not None:
            ssh.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1000, help="timed keys per path")
    parser.add_argument("--warmup", type=int, default=100, help="untimed keys first")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--opens", type=int, default=30, help="session opens per path")
    parser.add_argument("--size-mb", type=int, default=200, help="size of the file to cat")
    parser.add_argument("--reps", type=int, default=3, help="cat runs per path")
    parser.add_argument("--deadline", type=int, default=1800, help="give up after (s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--profile", help="write a cProfile of the broker process here")
    parser.add_argument(
        "--loop", choices=EVENT_LOOPS, default="auto", help="broker event loop, as `corral up`"
    )
    parser.add_argument("--broker-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.broker_child:
        make_loop = loop_factory(args.loop)  # as `corral up` picks it
        if args.profile:  # cProfile of the whole broker process, for finding hot spots
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            try:
                run_broker_loop(broker_child(Path(args.broker_child)), make_loop)
            finally:
                profiler.disable()
                profiler.dump_stats(args.profile)
        else:
            run_broker_loop(broker_child(Path(args.broker_child)), make_loop)
        return

    def overtime(signum: int, frame: object) -> None:
        raise TimeoutError(f"gave up after {args.deadline} s")

    signal.signal(signal.SIGALRM, overtime)  # a stuck path still tears everything down
    signal.signal(signal.SIGTERM, overtime)
    signal.alarm(args.deadline)
    try:
        run(args)
    except SshdMissing as exc:
        print(f"gateway_vs_ssh: OpenSSH is not installed ({exc})", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
