"""1,000 idle agents on one broker process: memory per agent connection and CPU at rest.

A real broker runs in this process (uvicorn on loopback, SQLite in a temporary directory,
the hub with its production intervals: heartbeat 30 s, metrics 60 s), by default over
HTTPS/WSS with TLS 1.3 as in production (``--plain`` for HTTP). N servers are registered
through ``AgentService``; then a child process (``--swarm``) runs N lightweight simulated
agents in one asyncio loop, so none of their cost lands in the broker's figures. Each is a
real WebSocket control connection (``websockets`` client + websh ``Connection(CONTROL,
CLIENT)``) doing what ``agent/control.py`` does at rest: ``hello`` with its real credential
and the real agent's ``system_info()`` (hostname made unique), then after ``welcome`` a
``ping`` every ``heartbeat_interval`` and a ``metrics`` sample every ``metrics_interval``,
answering the broker's pings.

Figures, all of the broker process:

* memory per agent: (VmRSS with all N connected and settled) - (VmRSS after the N
  servers were registered, before any connected), divided by N;
* CPU at rest: utime + stime over ``--rest`` seconds once all are connected, as a
  percentage of one core (``os.times()`` of this process: the broker is all it runs),
  and divided by the pings and metrics the agents sent meanwhile (each ping also costs
  the broker a pong). ``--ping-every 1`` makes that per-message figure precise on a
  shared machine; it is a load test, not the product's interval.

Prints figures; asserts nothing. Usage::

    .venv/bin/python benchmarks/idle_agents.py [--agents 1000] [--rest 30] [--plain]
"""

# Harness code: short blocking file and process calls outside the measured paths.
# ruff: noqa: ASYNC220, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _broker import ROOT, Broker, run_broker_loop, running_broker

from broker.agents.hub import CONTROL_PATH
from broker.serving import loop_factory, resolve_event_loop
from broker.settings import EVENT_LOOPS
from websh import Connection, ConnectionKind, Hello, Metrics, Ping, Side, WebshError, Welcome

MEMORY_TARGET_KB = 50
CPU_TARGET_PERCENT = 2.0


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# --------------------------------------------------------------------------- the swarm


async def sim_agent(
    url: str,
    cred: dict[str, str],
    info: dict[str, object],
    context: ssl.SSLContext | None,
    delay: float,
    counters: dict[str, int],
    ping_every: float | None = None,
) -> None:
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay)
    async with connect(
        url,
        ssl=context,
        open_timeout=60,
        ping_interval=None,
        compression=None,
        proxy=None,
        max_size=2 * 1024 * 1024,
    ) as ws:
        conn = Connection(ConnectionKind.CONTROL, Side.CLIENT)
        conn.send(
            Hello(
                agent_id=cred["agent_id"],
                secret=cred["secret"],
                agent_version="0.1.0",
                sysinfo={**info, "hostname": f"sim-{cred['agent_id'][:8]}"},
            )
        )
        for payload in conn.data_to_send():
            await ws.send(payload)
        heartbeat = metrics = 0.0
        loop = asyncio.get_running_loop()
        next_ping = next_metrics = float("inf")
        while True:
            wait = min(next_ping, next_metrics) - loop.time()
            try:
                payload = await asyncio.wait_for(ws.recv(), max(0.0, wait))
            except TimeoutError:
                payload = None
            if payload is not None:
                conn.receive(payload)
                for event in conn.events_received():
                    if isinstance(event, Welcome):
                        counters["welcomed"] += 1
                        heartbeat, metrics = event.heartbeat_interval, event.metrics_interval
                        heartbeat = ping_every or heartbeat
                        # the real agent's first ping/metrics come one interval after welcome;
                        # a random phase keeps 1,000 simulated agents from ticking in step
                        next_ping = loop.time() + heartbeat * random.random()
                        next_metrics = (
                            loop.time() + metrics * random.random() if metrics else float("inf")
                        )
            now = loop.time()
            if now >= next_ping:
                conn.send(Ping(nonce=int(now), ts=time.time()))
                counters["pings"] += 1
                next_ping = now + heartbeat
            if now >= next_metrics:
                conn.send(
                    Metrics(
                        ts=time.time(),
                        cpu=1.5,
                        mem_used=1 << 30,
                        mem_total=8 << 30,
                        disk_used=10 << 30,
                        disk_total=100 << 30,
                        load=(0.1, 0.1, 0.1),
                    )
                )
                counters["metrics"] += 1
                next_metrics = now + metrics
            for reply in conn.data_to_send():  # pongs, pings, metrics
                await ws.send(reply)


async def swarm(args: argparse.Namespace) -> None:
    from websockets.exceptions import ConnectionClosed

    from agent.sysinfo import system_info

    raise_fd_limit()
    creds = json.loads(Path(args.swarm).read_text())
    context = None
    if args.url.startswith("wss://"):
        context = ssl.create_default_context(cafile=args.ca_file)
    info = dict(system_info())
    counters = {"welcomed": 0, "pings": 0, "metrics": 0, "failed": 0}
    ramp = len(creds) / 200  # 200 new connections per second

    async def one(i: int, cred: dict[str, str]) -> None:
        try:
            await sim_agent(
                args.url, cred, info, context, ramp * i / len(creds), counters, args.ping_every
            )
        except (OSError, ConnectionClosed, TimeoutError, WebshError) as exc:
            counters["failed"] += 1
            print(f"agent {i} failed: {exc!r}", file=sys.stderr, flush=True)

    tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(creds)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(counters), flush=True))
    print("swarm-started", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=10)


# --------------------------------------------------------------------------- the broker side


async def register_servers(broker: Broker, count: int) -> list[dict[str, str]]:
    agents = broker.runtime.services.agents
    creds = []
    for i in range(count):
        _, token = await agents.create_registration_token(broker.workspace_id)
        server, _, secret = await agents.register(
            token, name=f"idle-{i:04d}", tags={"env": "bench"}
        )
        creds.append({"agent_id": server.id, "secret": secret})
    return creds


def _type_name(obj: object) -> str:
    kind = type(obj)
    if kind.__name__ == "coroutine":
        return f"coroutine {getattr(obj, '__qualname__', '?')}"
    return f"{kind.__module__}.{kind.__qualname__}"


def _own_size(obj: object) -> int:
    """``sys.getsizeof``, plus the str/bytes a container holds (not gc-tracked themselves)."""
    try:
        size = sys.getsizeof(obj)
    except TypeError:
        return 0
    if isinstance(obj, dict | list | set | tuple):
        for item in obj.values() if isinstance(obj, dict) else obj:
            if isinstance(item, str | bytes):
                size += sys.getsizeof(item)
    return size


def census() -> dict[int, object]:
    """Every live object the garbage collector tracks, by id (kept alive until compared)."""
    import gc

    gc.collect()
    return {id(obj): obj for obj in gc.get_objects()}


def print_census(before: dict[int, object], n: int) -> None:
    """What the objects born since ``before`` are and who holds them, per agent.

    ``sys.getsizeof`` counts an object's own allocation (not what it refers to);
    untracked objects (str, bytes, ints) are only counted inside the containers holding
    them. "Held by" is the type of one gc-tracked referrer (a ``__dict__`` or the slots of
    an instance, a frame's locals, ...).
    """
    import gc

    gc.collect()
    born = {id(obj): obj for obj in gc.get_objects() if id(obj) not in before}
    born.pop(id(before), None)
    owner: dict[int, str] = {}
    for obj in list(born.values()):
        for ref in gc.get_referents(obj):
            if id(ref) in born and id(ref) not in owner:
                owner[id(ref)] = _type_name(obj)
    by_type: dict[str, list[float]] = {}
    by_pair: dict[tuple[str, str], list[float]] = {}
    for key, obj in born.items():
        name, size = _type_name(obj), _own_size(obj)
        by_type.setdefault(name, [0, 0])
        by_type[name][0] += size
        by_type[name][1] += 1
        pair = (name, owner.get(key, "-"))
        by_pair.setdefault(pair, [0, 0])
        by_pair[pair][0] += size
        by_pair[pair][1] += 1
    total = sum(size for size, _ in by_type.values()) / n
    print(f"census: new gc-tracked objects per agent (of {n}): {total:.0f} B in all")
    for name, (size, count) in sorted(by_type.items(), key=lambda kv: -kv[1][0])[:20]:
        print(f"  {size / n:>8.0f} B  {count / n:>6.2f}  {name}")
    print("census: by type and holder")
    for (name, held), (size, count) in sorted(by_pair.items(), key=lambda kv: -kv[1][0])[:40]:
        print(f"  {size / n:>8.0f} B  {count / n:>6.2f}  {name}  <-  {held}")


async def settle(seconds: float) -> int:
    """Let the broker be idle for a moment, then read its RSS (KiB)."""
    await asyncio.sleep(seconds)
    return rss_kib()


async def departures_written(
    broker: Broker, count: int, began: float, limit: float = 120.0
) -> float:
    """Seconds from ``began`` until ``count`` ``agent.disconnected`` events are audited."""
    while time.monotonic() - began < limit:
        events = await broker.runtime.services.audit.events(
            broker.workspace_id, action="agent.disconnected", limit=count
        )
        if len(events) >= count:
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - began


async def coordinator(args: argparse.Namespace) -> None:
    import trustme

    fds = raise_fd_limit()
    mode = "plain HTTP/WS" if args.plain else "HTTPS/WSS, TLS 1.3"
    print(
        f"idle_agents: {args.agents} simulated agents on one broker process ({mode}"
        f", {resolve_event_loop(args.loop)} loop); "
        f"rest {args.rest:.0f} s; {os.cpu_count()} CPUs; fd limit {fds}; "
        f"Python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        tls = None
        ca_file = workdir / "ca.pem"
        if not args.plain:
            ca = trustme.CA()
            cert_file = workdir / "broker.pem"
            ca.cert_pem.write_to_path(str(ca_file))
            ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert_file))
            tls = (str(cert_file), str(cert_file))
        async with running_broker(workdir / "broker", tls=tls) as broker:
            hub = broker.hub
            assert hub is not None
            began = time.monotonic()
            creds = await register_servers(broker, args.agents)
            print(f"registered {len(creds)} servers in {time.monotonic() - began:.1f} s")
            creds_file = workdir / "creds.json"
            creds_file.write_text(json.dumps(creds))
            before = await settle(3.0)
            counted = census() if args.census else {}
            if args.tracemalloc:  # where the per-connection memory goes (slows the broker)
                import tracemalloc

                tracemalloc.start(8)
                traced = tracemalloc.take_snapshot()
            ws_url = broker.url.replace("http", "ws", 1) + CONTROL_PATH
            child = subprocess.Popen(
                [
                    sys.executable, str(Path(__file__).resolve()), "--swarm", str(creds_file),
                    "--url", ws_url, "--ca-file", str(ca_file),
                    *(["--ping-every", str(args.ping_every)] if args.ping_every else []),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            try:
                assert child.stdout is not None
                await asyncio.to_thread(child.stdout.readline)
                began = time.monotonic()
                while len(hub.links) < args.agents and time.monotonic() - began < 180:
                    if child.poll() is not None:
                        break
                    await asyncio.sleep(0.2)
                connected = len(hub.links)
                took = time.monotonic() - began
                after = await settle(10.0)
                if args.tracemalloc:
                    growth = tracemalloc.take_snapshot().compare_to(traced, "lineno")
                    print(f"tracemalloc: top allocations per agent (of {connected}):")
                    for stat in growth[:20]:
                        frame = stat.traceback[0]
                        print(
                            f"  {stat.size_diff / max(1, connected):>8.0f} B  "
                            f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
                        )
                if args.census:
                    print_census(counted, max(1, connected))
                profiler = None
                if args.profile:  # what the broker does at rest, for finding the cost
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                child.send_signal(signal.SIGUSR1)
                counted_before = json.loads(await asyncio.to_thread(child.stdout.readline))
                print(f"at rest for {args.rest:.0f} s (broker pid {os.getpid()})", flush=True)
                cpu_start, wall_start = os.times(), time.monotonic()
                await asyncio.sleep(args.rest)
                cpu_end, wall_end = os.times(), time.monotonic()
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                still = len(hub.links)
                rest_rss = rss_kib()
                child.send_signal(signal.SIGUSR1)
                counters = json.loads(await asyncio.to_thread(child.stdout.readline))
            finally:
                gone = time.monotonic()
                child.terminate()
                await asyncio.to_thread(child.wait, 30)
            farewell = await departures_written(broker, connected, gone)
    used = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    cpu_percent = 100 * used / (wall_end - wall_start)
    messages = sum(counters[k] - counted_before[k] for k in ("pings", "metrics"))
    per_agent = (after - before) / max(1, connected)
    print(
        f"connected {connected}/{args.agents} in {took:.1f} s; still connected after the rest "
        f"{still}; swarm counters {counters}"
    )
    print()
    print(f"{'figure':<48} {'value':>12}  target       verdict")
    print("-" * 84)
    lines = [
        ("broker VmRSS, servers registered, no agents", f"{before / 1024:.1f} MiB", "", None),
        (f"broker VmRSS, {connected} agents connected", f"{after / 1024:.1f} MiB", "", None),
        (f"broker VmRSS after {args.rest:.0f} s at rest", f"{rest_rss / 1024:.1f} MiB", "", None),
        (
            "memory per agent connection (RSS delta / N)",
            f"{per_agent:.1f} KiB",
            f"<= {MEMORY_TARGET_KB} KB",
            per_agent * 1024 <= MEMORY_TARGET_KB * 1000,
        ),
        (
            f"broker CPU per agent message at rest ({messages})",
            f"{1e6 * used / max(1, messages):.0f} us",
            "",
            None,
        ),
        (
            f"broker CPU at rest over {args.rest:.0f} s (one core)",
            f"{cpu_percent:.2f} %",
            f"< {CPU_TARGET_PERCENT:.0f} %",
            cpu_percent < CPU_TARGET_PERCENT,
        ),
        (
            f"{connected} agents stopped -> all disconnects audited",
            f"{farewell:.1f} s",
            "",
            None,
        ),
    ]
    for label, value, target, ok in lines:
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        print(f"{label:<48} {value:>12}  {target:<12} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rest", type=float, default=30.0, help="seconds of CPU sampling")
    parser.add_argument("--plain", action="store_true", help="HTTP/WS instead of TLS")
    parser.add_argument(
        "--loop", choices=EVENT_LOOPS, default="auto", help="broker event loop, as `corral up`"
    )
    parser.add_argument("--profile", help="write a cProfile of the broker at rest here")
    parser.add_argument("--tracemalloc", action="store_true", help="print where memory went")
    parser.add_argument(
        "--census", action="store_true", help="print live objects per agent, by type"
    )
    parser.add_argument(
        "--ping-every",
        type=float,
        help="agents ping this often instead of the heartbeat (a load test of the "
        "per-message cost, not a product setting)",
    )
    parser.add_argument("--swarm", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ca-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.swarm:
        asyncio.run(swarm(args))
        return
    run_broker_loop(coordinator(args), loop_factory(args.loop))  # as `corral up`


if __name__ == "__main__":
    main()
