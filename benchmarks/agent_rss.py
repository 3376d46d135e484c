"""Resident memory of a real agent process, idle and busy, against the 20 MB promise.

A real broker runs in this process (uvicorn on loopback, SQLite in a temporary directory).
A real agent is registered (``python -m agent register``) and run (``python -m agent
run``); the single-file agent (``GET /agent/corral-agent.pyz``, run with ``python3
corral-agent.pyz run``) is measured the same way. For each:

* idle: ``VmRSS`` / ``VmHWM`` from ``/proc/PID/status`` after 5 s connected;
* busy: 4 concurrent terminals (``hub.open_channel(TERMINAL, user="root")``) each running
  ``yes | head -c 20000000`` while the benchmark drains their output, plus one exec
  (``seq``) at the same time; ``VmRSS`` sampled every 100 ms, median and max reported;
  ``VmHWM`` (peak RSS of the process's life) read at the end.

Only the agent process itself is measured (not the shells and commands it spawns).
Prints figures; asserts nothing. Usage::

    .venv/bin/python benchmarks/agent_rss.py [--runs 3] [--skip-pyz]
"""

# Harness code: short blocking file and process calls outside the measured paths.
# ruff: noqa: ASYNC220, ASYNC221, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
from _broker import ROOT, Broker, running_broker

from broker.agents.hub import AgentHub, DataChannel
from broker.agents.wire import Closed
from websh import ChannelKind, Exit, Input, Output

PROMISE_MIB = 20e6 / 2**20  # "20 MB" read strictly as 20,000,000 bytes = 19.07 MiB
TERMINALS = 4
TERMINAL_BYTES = 20_000_000
EXEC_COMMAND = "seq 1 2000000"  # 14.9 MB of output
IDLE_SECONDS = 5.0
SAMPLE_EVERY = 0.1


def status_mib(pid: int) -> dict[str, float]:
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    return values


@dataclass
class Variant:
    label: str
    argv: list[str]  # prefix; "register ..." or "run ..." is appended
    config: Path
    log: Path
    cwd: Path = ROOT
    server_id: str = ""


@dataclass
class Sample:
    idle_rss: float
    idle_hwm: float
    busy_median: float
    busy_max: float
    busy_hwm: float
    after_rss: float
    busy_seconds: float
    drained_mb: float


def register(broker_url: str, token: str, variant: Variant, name: str) -> str:
    done = subprocess.run(
        [
            *variant.argv,
            "register",
            "--url",
            broker_url,
            "--token",
            token,
            "--config",
            str(variant.config),
            "--name",
            name,
        ],
        cwd=variant.cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)} if variant.cwd == ROOT else None,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant.label}: register failed: {done.stderr or done.stdout}")
    agent_id: str = tomllib.loads(variant.config.read_text())["agent_id"]
    return agent_id


async def drain_terminal(channel: DataChannel) -> int:
    received = 0
    await channel.send(Input(data=f"yes | head -c {TERMINAL_BYTES}; exit\n".encode()))
    try:
        while True:
            message = await channel.receive()
            if isinstance(message, Output):
                received += len(message.data)
            elif isinstance(message, Exit):
                break
    except Closed:
        pass
    finally:
        await channel.close()
    return received


async def measure(broker: Broker, variant: Variant) -> Sample:
    env = {**os.environ, "PYTHONPATH": str(ROOT)} if variant.cwd == ROOT else None
    process = subprocess.Popen(
        [*variant.argv, "run", "--config", str(variant.config)],
        cwd=variant.cwd,
        stdout=variant.log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        hub = broker.hub
        assert hub is not None
        await hub.wait_connected(variant.server_id, 30)
        await asyncio.sleep(IDLE_SECONDS)
        idle = status_mib(process.pid)

        samples: list[float] = []
        busy = True

        async def sampler() -> None:
            while busy:
                samples.append(status_mib(process.pid)["VmRSS"])
                await asyncio.sleep(SAMPLE_EVERY)

        sampling = asyncio.create_task(sampler())
        began = time.monotonic()
        channels = await asyncio.gather(
            *(
                hub.open_channel(
                    broker.workspace_id,
                    variant.server_id,
                    ChannelKind.TERMINAL,
                    user="root",
                    cols=80,
                    rows=24,
                )
                for _ in range(TERMINALS)
            )
        )
        results = await asyncio.gather(
            *(drain_terminal(channel) for channel in channels),
            hub.exec(broker.workspace_id, variant.server_id, EXEC_COMMAND, user="root"),
        )
        busy_seconds = time.monotonic() - began
        busy = False
        await sampling
        drained = sum(r for r in results[:TERMINALS] if isinstance(r, int))
        exec_result = results[TERMINALS]
        drained += len(getattr(exec_result, "stdout", b""))
        end = status_mib(process.pid)
        await asyncio.sleep(2.0)
        after = status_mib(process.pid)
        return Sample(
            idle_rss=idle["VmRSS"],
            idle_hwm=idle["VmHWM"],
            busy_median=statistics.median(samples),
            busy_max=max(samples),
            busy_hwm=end["VmHWM"],
            after_rss=after["VmRSS"],
            busy_seconds=busy_seconds,
            drained_mb=drained / 1e6,
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def baseline_mib(argv: list[str], code: str, cwd: Path, env: dict[str, str] | None) -> str:
    """VmRSS of a fresh interpreter after running ``code`` (context for the figures)."""
    probe = (
        code + "\nprint([l.split()[1] for l in open('/proc/self/status') if l[:6]=='VmRSS:'][0])"
    )
    done = subprocess.run(
        [*argv, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return "n/a"
    return f"{int(done.stdout.split()[-1]) / 1024:.1f}"


async def fetch_pyz(broker: Broker, target: Path) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        response = await client.get(f"{broker.url}/agent/corral-agent.pyz")
        response.raise_for_status()
        target.write_bytes(response.content)


async def benchmark(args: argparse.Namespace) -> None:
    python3 = shutil.which("python3") or sys.executable
    py3_version = subprocess.run(
        [python3, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"agent_rss: {args.runs} run(s), {TERMINALS} terminals x {TERMINAL_BYTES / 1e6:.0f} MB "
        f"+ exec '{EXEC_COMMAND}'; {os.cpu_count()} CPUs; "
        f"venv Python {sys.version.split()[0]}; python3 = {python3} ({py3_version})"
    )
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        venv_env = {**os.environ, "PYTHONPATH": str(ROOT)}
        agent_imports = "import agent.main, agent.control, agent.sysinfo"
        print(
            "context, VmRSS MiB of a fresh interpreter: venv python bare "
            f"{baseline_mib([sys.executable], 'pass', workdir, venv_env)}, + import ssl "
            f"{baseline_mib([sys.executable], 'import ssl', workdir, venv_env)}, + the agent's "
            f"modules {baseline_mib([sys.executable], agent_imports, workdir, venv_env)}; "
            f"python3 bare {baseline_mib([python3], 'pass', workdir, None)}"
        )
        async with running_broker(workdir, lambda rt: AgentHub(rt.services)) as broker:
            variants = [
                Variant(
                    "python -m agent",
                    [sys.executable, "-m", "agent"],
                    workdir / "module" / "agent.toml",
                    workdir / "module.log",
                )
            ]
            if not args.skip_pyz:
                pyz = workdir / "corral-agent.pyz"
                try:
                    await fetch_pyz(broker, pyz)
                    print(f"fetched corral-agent.pyz: {pyz.stat().st_size / 1024:.0f} KiB")
                    variants.append(
                        Variant(
                            "python3 corral-agent.pyz",
                            [python3, str(pyz)],
                            workdir / "pyz" / "agent.toml",
                            workdir / "pyz.log",
                            cwd=workdir,
                        )
                    )
                except httpx.HTTPError as exc:
                    print(f"corral-agent.pyz not measured: GET failed ({exc})")
            measured: list[tuple[Variant, list[Sample]]] = []
            for i, variant in enumerate(variants):
                token = await broker.registration_token()
                try:
                    variant.server_id = await asyncio.to_thread(
                        register, broker.url, token, variant, f"bench-{i}"
                    )
                except RuntimeError as exc:
                    print(f"{variant.label} not measured: {exc}")
                    continue
                runs: list[Sample] = []
                for run in range(args.runs):
                    try:
                        sample = await measure(broker, variant)
                    except Exception as exc:  # report and carry on with the other variant
                        print(f"{variant.label} run {run + 1} failed: {exc!r}")
                        print(variant.log.read_text()[-2000:])
                        break
                    runs.append(sample)
                    print(
                        f"{variant.label} run {run + 1}: idle {sample.idle_rss:.1f} MiB, busy "
                        f"median {sample.busy_median:.1f} / max {sample.busy_max:.1f} MiB, "
                        f"VmHWM {sample.busy_hwm:.1f} MiB, 2 s after {sample.after_rss:.1f} MiB; "
                        f"drained {sample.drained_mb:.0f} MB in {sample.busy_seconds:.1f} s"
                    )
                if runs:
                    measured.append((variant, runs))
    print()
    print(f"Medians over runs; MiB = 2**20 bytes; the promise 20 MB = {PROMISE_MIB:.2f} MiB.")
    header = (
        f"{'agent':<26} {'runs':>4} {'idle RSS':>9} {'busy med':>9} {'busy max':>9} "
        f"{'VmHWM':>7} {'after':>7} {'< 20 MB?':>9}"
    )
    print(header)
    print("-" * len(header))
    for variant, runs in measured:

        def med(name: str, runs: list[Sample] = runs) -> float:
            return statistics.median(getattr(s, name) for s in runs)

        worst = max(med("busy_max"), med("busy_hwm"))
        verdict = "yes" if worst < PROMISE_MIB else "NO"
        print(
            f"{variant.label:<26} {len(runs):>4} {med('idle_rss'):>9.1f} "
            f"{med('busy_median'):>9.1f} {med('busy_max'):>9.1f} {med('busy_hwm'):>7.1f} "
            f"{med('after_rss'):>7.1f} {verdict:>9}"
        )
    print()
    print("idle = VmRSS after 5 s connected; busy = VmRSS sampled every 100 ms while the")
    print("4 terminals + exec stream; VmHWM = peak RSS of the process; after = VmRSS 2 s")
    print("after the busy phase. '< 20 MB?' compares the worse of busy max and VmHWM.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-pyz", action="store_true", help="only measure python -m agent")
    asyncio.run(benchmark(parser.parse_args()))


if __name__ == "__main__":
    main()
