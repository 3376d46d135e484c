"""How 1,000 agents come back after a broker restart: full jitter versus no jitter.

A real broker runs in this process (uvicorn on loopback, SQLite in a temporary directory).
1,000 servers are registered through the services (``AgentService``), then a child
process (``--swarm``) runs 1,000 lightweight simulated agents: each is a real WebSocket
control connection (``websockets`` client + websh ``Connection(CONTROL, CLIENT)``) that
sends ``Hello`` with its real credential, answers pings, and on any failure waits
``backoff.next_delay()`` before the next attempt, like ``agent/control.py`` does.

The broker is then restarted (uvicorn stopped, 2 s outage, started again on the same
port) and every agent's attempts and first successful reconnect (``Welcome`` received)
are recorded. This is done twice, with a fresh swarm each time:

* ``full jitter``: the real ``agent.backoff.Backoff`` (uniform over [0, min(60, 2**n)]);
* ``no jitter``: the same ``Backoff`` with its random draw replaced by the upper bound,
  i.e. ``delay = min(cap, base * 2**attempt)`` (base 1 s, cap 60 s).

Prints figures; asserts nothing. Usage::

    .venv/bin/python benchmarks/reconnect_spread.py [--agents 1000] [--outage 2]
"""

# Harness code: short blocking file and process calls outside the measured paths.
# ruff: noqa: ASYNC110, ASYNC220, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

from _broker import ROOT, Broker, running_broker

from agent.backoff import Backoff
from broker.agents.hub import CONTROL_PATH, AgentHub
from websh import Connection, ConnectionKind, Hello, Side, WebshError, Welcome

POLICIES = {
    "jitter": "full jitter (agent.backoff.Backoff)",
    "nojitter": "no jitter: min(60, 1*2**n)",
}
CONNECT_TIMEOUT = 15.0  # agent/transport.py: WebSocketClient(connect_timeout=...)
WELCOME_TIMEOUT = 30.0  # agent/daemon.py: Agent(welcome_timeout=...)


def make_backoff(policy: str) -> Backoff:
    if policy == "jitter":
        return Backoff()
    # The very same state machine, with the random draw pinned to its upper bound.
    return Backoff(uniform=lambda low, high: high)


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------- the swarm


class SimAgent:
    def __init__(self, url: str, agent_id: str, secret: str, policy: str) -> None:
        self.url = url
        self.agent_id = agent_id
        self.secret = secret
        self.backoff = make_backoff(policy)
        self.attempts: list[float] = []  # start of every attempt after the restart mark
        self.reconnected: float | None = None  # first Welcome after the mark
        self.welcomes = 0
        self.marked = False
        self.failures_after_mark = 0

    async def run(self, initial_delay: float) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        await asyncio.sleep(initial_delay)
        while True:
            started = time.monotonic()
            if self.marked:
                self.attempts.append(started)
            welcomed = False
            try:
                async with connect(
                    self.url,
                    open_timeout=CONNECT_TIMEOUT,
                    ping_interval=None,
                    close_timeout=2,
                    compression=None,
                    proxy=None,
                    max_size=2 * 1024 * 1024,
                ) as ws:
                    conn = Connection(ConnectionKind.CONTROL, Side.CLIENT)
                    conn.send(
                        Hello(
                            agent_id=self.agent_id,
                            secret=self.secret,
                            agent_version="0.0.0-bench",
                            sysinfo={"hostname": f"sim-{self.agent_id[:8]}"},
                        )
                    )
                    for payload in conn.data_to_send():
                        await ws.send(payload)
                    deadline = time.monotonic() + WELCOME_TIMEOUT
                    while True:
                        timeout = None if welcomed else max(0.0, deadline - time.monotonic())
                        payload = await asyncio.wait_for(ws.recv(), timeout)
                        conn.receive(payload)
                        for event in conn.events_received():
                            if isinstance(event, Welcome) and not welcomed:
                                welcomed = True
                                self.welcomes += 1
                                self.backoff.connected()
                                if self.marked and self.reconnected is None:
                                    self.reconnected = time.monotonic()
                        for reply in conn.data_to_send():  # pongs
                            await ws.send(reply)
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError, WebshError):
                pass
            if self.marked and not welcomed:
                self.failures_after_mark += 1
            await asyncio.sleep(self.backoff.next_delay())

    def mark(self) -> None:
        """The broker is about to restart. Agents have been up for a long time in real
        life, so their failure count is zero (Backoff resets it after 60 s up)."""
        self.marked = True
        self.backoff.reset()


async def swarm(args: argparse.Namespace) -> None:
    raise_fd_limit()
    creds = json.loads(Path(args.swarm).read_text())
    agents = [SimAgent(args.url, c["agent_id"], c["secret"], args.policy) for c in creds]
    loop = asyncio.get_running_loop()
    marked = asyncio.Event()
    mark_time: list[float] = []

    def on_mark() -> None:
        mark_time.append(time.monotonic())
        for agent in agents:
            agent.mark()
        marked.set()

    loop.add_signal_handler(signal.SIGUSR1, on_mark)
    ramp = len(agents) / 250  # initial connections spread over a few seconds
    tasks = [
        asyncio.create_task(agent.run(ramp * i / len(agents))) for i, agent in enumerate(agents)
    ]
    print("swarm-started", flush=True)
    await asyncio.wait_for(marked.wait(), args.deadline)
    end = time.monotonic() + args.deadline
    while time.monotonic() < end and any(a.reconnected is None for a in agents):
        await asyncio.sleep(0.1)
    result = {
        "mark": mark_time[0],
        "agents": [
            {
                "attempts": a.attempts,
                "reconnected": a.reconnected,
                "failures": a.failures_after_mark,
            }
            for a in agents
        ],
    }
    Path(args.out).write_text(json.dumps(result))
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=10)


# --------------------------------------------------------------------------- the figures


def peak_in_window(times: list[float], window: float) -> int:
    """Most attempts starting within any ``window`` seconds (sliding)."""
    ordered = sorted(times)
    best = 0
    for i, t in enumerate(ordered):
        j = bisect_left(ordered, t + window, lo=i)
        best = max(best, j - i)
    return best


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def figures(result: dict[str, Any], up: float) -> dict[str, Any]:
    rows = result["agents"]
    back = [r["reconnected"] - up for r in rows if r["reconnected"] is not None]
    attempts = [t for r in rows for t in r["attempts"]]
    while_up = [t for t in attempts if t >= up]
    return {
        "reconnected": len(back),
        "agents": len(rows),
        "median": statistics.median(back) if back else float("nan"),
        "p90": percentile(back, 90),
        "p99": percentile(back, 99),
        "max": max(back) if back else float("nan"),
        "attempts": len(attempts),
        "failed": sum(r["failures"] for r in rows),
        "peak100ms": peak_in_window(attempts, 0.1),
        "peak1s": peak_in_window(attempts, 1.0),
        "peak100ms_up": peak_in_window(while_up, 0.1),
        "peak1s_up": peak_in_window(while_up, 1.0),
    }


# --------------------------------------------------------------------------- the coordinator


async def register_servers(broker: Broker, count: int) -> list[dict[str, str]]:
    agents = broker.runtime.services.agents
    creds = []
    for i in range(count):
        _, token = await agents.create_registration_token(broker.workspace_id)
        server, _, secret = await agents.register(token, name=f"sim-{i:04d}", tags={"env": "bench"})
        creds.append({"agent_id": server.id, "secret": secret})
    return creds


async def wait_for(predicate: Any, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


async def one_round(
    broker: Broker, policy: str, creds_file: Path, workdir: Path, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, float]]:
    out = workdir / f"result-{policy}.json"
    ws_url = broker.url.replace("http://", "ws://") + CONTROL_PATH
    child = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--swarm",
            str(creds_file),
            "--policy",
            policy,
            "--url",
            ws_url,
            "--out",
            str(out),
            "--deadline",
            str(args.deadline),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        await asyncio.to_thread(child.stdout.readline)
        hub = broker.hub
        assert hub is not None
        setup = time.monotonic()
        everyone = await wait_for(lambda: len(hub.links) >= args.agents, 120)
        connected = len(hub.links)
        setup = time.monotonic() - setup
        await asyncio.sleep(1.0)
        child.send_signal(signal.SIGUSR1)
        await asyncio.sleep(0.05)  # let the swarm take the mark before the drop
        t_stop = time.monotonic()
        await broker.stop()
        t_down = time.monotonic()
        await asyncio.sleep(args.outage)
        await broker.start()
        t_up = time.monotonic()
        await asyncio.to_thread(child.wait, args.deadline + 60)
        result = json.loads(out.read_text())
        timings = {
            "connected_before": connected,
            "all_connected": everyone,
            "setup": setup,
            "stop": t_down - t_stop,
            "down": t_up - t_stop,
            "up": t_up,
            "t_stop": t_stop,
        }
        # Let the broker settle (the swarm closed its connections) before the next round.
        hub_after = broker.hub
        assert hub_after is not None
        await wait_for(lambda: not hub_after.links, 30)
        return result, timings
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


async def coordinator(args: argparse.Namespace) -> None:
    fds = raise_fd_limit()
    print(
        f"reconnect_spread: {args.agents} simulated agents, broker outage {args.outage:.1f} s, "
        f"{os.cpu_count()} CPUs, fd limit {fds}, Python {sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        async with running_broker(workdir, lambda rt: AgentHub(rt.services)) as broker:
            began = time.monotonic()
            creds = await register_servers(broker, args.agents)
            print(
                f"registered {len(creds)} servers via AgentService in "
                f"{time.monotonic() - began:.1f} s"
            )
            creds_file = workdir / "creds.json"
            creds_file.write_text(json.dumps(creds))
            table = []
            for policy in args.policies.split(","):
                result, timings = await one_round(broker, policy, creds_file, workdir, args)
                fig = figures(result, timings["up"])
                table.append((policy, fig, timings))
                note = "" if timings["all_connected"] else " (NOT all connected)"
                print(
                    f"[{POLICIES[policy]}] {timings['connected_before']}/{args.agents} connected "
                    f"in {timings['setup']:.1f} s{note}; uvicorn stop took "
                    f"{timings['stop']:.2f} s; broker back up {timings['down']:.2f} s after "
                    f"the stop began; {fig['reconnected']}/{fig['agents']} reconnected"
                )
    print()
    print("reconnect time = first Welcome after the restart, in seconds after the broker")
    print("was listening again; attempts = connection attempts (TCP connect) after the stop")
    print("began, including refused ones while the broker was down.")
    print()
    header = (
        f"{'policy':<36} {'agents':>9} {'median':>7} {'p90':>7} {'p99':>7} {'max':>7} "
        f"{'attempts':>8} {'peak/100ms':>10} {'peak/1s':>8} {'up:peak/100ms':>13} "
        f"{'up:peak/1s':>10}"
    )
    print(header)
    print("-" * len(header))
    for policy, fig, _ in table:
        print(
            f"{POLICIES[policy]:<36} {str(fig['reconnected']) + '/' + str(fig['agents']):>9} "
            f"{fig['median']:>7.2f} {fig['p90']:>7.2f} {fig['p99']:>7.2f} {fig['max']:>7.2f} "
            f"{fig['attempts']:>8} {fig['peak100ms']:>10} {fig['peak1s']:>8} "
            f"{fig['peak100ms_up']:>13} {fig['peak1s_up']:>10}"
        )
    print()
    print("up:peak = the same peaks counting only attempts made while the broker was listening.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=2.0, help="seconds the broker is down")
    parser.add_argument("--deadline", type=float, default=90.0, help="max seconds per round")
    parser.add_argument("--policies", default="jitter,nojitter")
    parser.add_argument("--swarm", help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.swarm:
        asyncio.run(swarm(args))
    else:
        asyncio.run(coordinator(args))


if __name__ == "__main__":
    main()
