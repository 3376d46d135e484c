"""Resident memory of a real agent process, idle and busy, against the 20 MB promise.

A real broker runs in this process (uvicorn on loopback, SQLite in a temporary directory).
Three forms of the agent are measured:

* production: the broker serves HTTPS/WSS (TLS 1.3, a ``trustme`` certificate); the agent
  is installed by the broker's own ``GET /agent/install.sh`` (``--root`` a temporary
  directory, ``--no-register``, ``--ca-file`` the trustme CA), so it is the downloaded
  ``corral-agent.pyz`` with bytecode added for the installing ``python3``; it is
  registered with ``--ca-file`` and run exactly as the systemd unit's ``ExecStart`` says
  (``python3 -I -S corral-agent.pyz run --config ...``, paths under the root). The
  installer's ``python3`` is ``/usr/bin/python3`` if present, else this interpreter;
* ``python -m agent`` (venv, source tree) against a plain-HTTP broker, for comparison;
* ``python3 corral-agent.pyz`` (the plain download, with site, no bytecode) against the
  plain-HTTP broker, as measured before the installer changed.

For each:

* idle: ``VmRSS`` / ``VmHWM`` from ``/proc/PID/status`` after 5 s connected;
* busy: 4 concurrent terminals (``hub.open_channel(TERMINAL, user="root")``) each running
  ``yes | head -c 20000000`` while the benchmark drains their output, plus one exec
  (``seq``) at the same time; ``VmRSS`` sampled every 100 ms, median and max reported;
  ``VmHWM`` (peak RSS of the process's life) read at the end.

Only the agent process itself is measured (not the shells and commands it spawns). Idle
RSS is also split into anonymous memory and file-backed pages (the interpreter binary and
shared libraries such as libcrypto, shared with other processes but counted in RSS).
Prints figures; asserts nothing. Usage::

    .venv/bin/python benchmarks/agent_rss.py [--runs 3] [--skip-pyz] [--skip-plain]
"""

# Harness code: short blocking file and process calls outside the measured paths.
# ruff: noqa: ASYNC220, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import trustme
from _broker import ROOT, Broker, running_broker

from broker.agents.channels import DataChannel
from broker.agents.wire import Closed
from websh import ChannelKind, Exit, Input, Output

PROMISE_MIB = 20e6 / 2**20  # "20 MB" read strictly as 20,000,000 bytes = 19.07 MiB
BUSY_TARGET_MIB = 24e6 / 2**20  # the agent issue: <= 24 MB with 4 terminals streaming
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
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
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
    register_args: tuple[str, ...] = ()


@dataclass
class Sample:
    idle_rss: float
    idle_hwm: float
    idle_anon: float
    idle_file: float
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
            *variant.register_args,
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
            idle_anon=idle["RssAnon"],
            idle_file=idle["RssFile"],
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


async def fetch(broker: Broker, path: str, target: Path, ca_file: Path | None = None) -> None:
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        verify = ssl.create_default_context(cafile=str(ca_file))
    async with httpx.AsyncClient(timeout=120, verify=verify) as client:
        response = await client.get(f"{broker.url}{path}")
        response.raise_for_status()
        target.write_bytes(response.content)


def install(script: Path, root: Path, ca_file: Path, python3: str) -> list[str]:
    """Run the broker's install.sh into ``root``; return the unit's ExecStart argv prefix.

    The prefix is everything before ``run`` in ``ExecStart``, with the archive's path put
    under ``root``: the agent is then started exactly as systemd would start it.
    """
    path = f"{os.path.dirname(python3)}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    done = subprocess.run(
        ["sh", str(script), "--root", str(root), "--no-register", "--ca-file", str(ca_file)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": path, "HOME": str(root)},
    )
    if done.returncode != 0 or "warning" in done.stderr:
        raise RuntimeError(f"install.sh failed or warned: {done.stderr or done.stdout}")
    unit = (root / "etc/systemd/system/corral-agent.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start[len("ExecStart=") :])
    prefix = argv[: argv.index("run")]
    return [str(root) + a if a.endswith(".pyz") else a for a in prefix]


async def measure_variants(
    broker: Broker, variants: list[Variant], runs_wanted: int
) -> list[tuple[Variant, list[Sample]]]:
    measured: list[tuple[Variant, list[Sample]]] = []
    for i, variant in enumerate(variants):
        token = await broker.registration_token()
        try:
            variant.server_id = await asyncio.to_thread(
                register, broker.url, token, variant, f"bench-{variant.config.parent.name}-{i}"
            )
        except RuntimeError as exc:
            print(f"{variant.label} not measured: {exc}")
            continue
        runs: list[Sample] = []
        for run in range(runs_wanted):
            try:
                sample = await measure(broker, variant)
            except Exception as exc:  # report and carry on with the other variants
                print(f"{variant.label} run {run + 1} failed: {exc!r}")
                print(variant.log.read_text()[-2000:])
                break
            runs.append(sample)
            print(
                f"{variant.label} run {run + 1}: idle {sample.idle_rss:.1f} MiB "
                f"(anon {sample.idle_anon:.1f} + file {sample.idle_file:.1f}), busy "
                f"median {sample.busy_median:.1f} / max {sample.busy_max:.1f} MiB, "
                f"VmHWM {sample.busy_hwm:.1f} MiB, 2 s after {sample.after_rss:.1f} MiB; "
                f"drained {sample.drained_mb:.0f} MB in {sample.busy_seconds:.1f} s"
            )
        if runs:
            measured.append((variant, runs))
    return measured


async def benchmark(args: argparse.Namespace) -> None:
    python3 = shutil.which("python3") or sys.executable
    prod_python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

    def version(python: str) -> str:
        return subprocess.run(
            [python, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()

    print(
        f"agent_rss: {args.runs} run(s), {TERMINALS} terminals x {TERMINAL_BYTES / 1e6:.0f} MB "
        f"+ exec '{EXEC_COMMAND}'; {os.cpu_count()} CPUs; "
        f"venv Python {sys.version.split()[0]}; python3 = {python3} ({version(python3)}); "
        f"installer python3 = {prod_python} ({version(prod_python)}); {ssl.OPENSSL_VERSION}"
    )
    measured: list[tuple[Variant, list[Sample]]] = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        venv_env = {**os.environ, "PYTHONPATH": str(ROOT)}
        agent_imports = "import agent.main, agent.daemon, agent.sysinfo"
        prod = [prod_python, "-I", "-S"]
        print(
            "context, VmRSS MiB of a fresh interpreter: venv python bare "
            f"{baseline_mib([sys.executable], 'pass', workdir, venv_env)}, + import ssl "
            f"{baseline_mib([sys.executable], 'import ssl', workdir, venv_env)}, + the agent's "
            f"modules {baseline_mib([sys.executable], agent_imports, workdir, venv_env)}; "
            f"python3 bare {baseline_mib([python3], 'pass', workdir, None)}; "
            f"{prod_python} -I -S bare {baseline_mib(prod, 'pass', workdir, None)}, "
            f"+ import ssl {baseline_mib(prod, 'import ssl', workdir, None)}"
        )
        if not args.skip_tls:
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1")
            ca_file, cert_file = workdir / "ca.pem", workdir / "broker.pem"
            ca.cert_pem.write_to_path(str(ca_file))
            cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
            tls = (str(cert_file), str(cert_file))
            async with running_broker(workdir / "tls", tls=tls) as broker:
                root = workdir / "root"
                script = workdir / "install.sh"
                await fetch(broker, "/agent/install.sh", script, ca_file)
                try:
                    argv = await asyncio.to_thread(install, script, root, ca_file, prod_python)
                except RuntimeError as exc:
                    print(f"production agent not measured: {exc}")
                else:
                    print(f"installed by install.sh; the unit runs: {shlex.join(argv)} run ...")
                    variant = Variant(
                        "production (TLS, -I -S pyz)",
                        argv,
                        workdir / "installed" / "agent.toml",
                        workdir / "installed.log",
                        cwd=workdir,
                        register_args=("--ca-file", str(ca_file)),
                    )
                    measured += await measure_variants(broker, [variant], args.runs)
                # let the last agent's close handshake finish: uvicorn's shutdown fails on
                # a WebSocket that is still closing
                await asyncio.sleep(2.0)
        if not args.skip_plain:
            async with running_broker(workdir / "plain") as broker:
                variants = [
                    Variant(
                        "python -m agent (HTTP)",
                        [sys.executable, "-m", "agent"],
                        workdir / "module" / "agent.toml",
                        workdir / "module.log",
                    )
                ]
                if not args.skip_pyz:
                    pyz = workdir / "corral-agent.pyz"
                    try:
                        await fetch(broker, "/agent/corral-agent.pyz", pyz)
                        print(f"fetched corral-agent.pyz: {pyz.stat().st_size / 1024:.0f} KiB")
                        variants.append(
                            Variant(
                                "python3 corral-agent.pyz (HTTP)",
                                [python3, str(pyz)],
                                workdir / "pyz" / "agent.toml",
                                workdir / "pyz.log",
                                cwd=workdir,
                            )
                        )
                    except httpx.HTTPError as exc:
                        print(f"corral-agent.pyz not measured: GET failed ({exc})")
                measured += await measure_variants(broker, variants, args.runs)
    print()
    print(
        f"Medians over runs; MiB = 2**20 bytes; targets: idle <= 20 MB = {PROMISE_MIB:.2f} MiB, "
        f"busy <= 24 MB = {BUSY_TARGET_MIB:.2f} MiB."
    )
    header = (
        f"{'agent':<32} {'runs':>4} {'idle RSS':>9} {'busy med':>9} {'busy max':>9} "
        f"{'VmHWM':>7} {'after':>7} {'idle ok':>8} {'busy ok':>8}"
    )
    print(header)
    print("-" * len(header))
    for variant, runs in measured:

        def med(name: str, runs: list[Sample] = runs) -> float:
            return statistics.median(getattr(s, name) for s in runs)

        worst = max(med("busy_max"), med("busy_hwm"))
        idle_ok = "yes" if med("idle_rss") <= PROMISE_MIB else "NO"
        busy_ok = "yes" if worst <= BUSY_TARGET_MIB else "NO"
        print(
            f"{variant.label:<32} {len(runs):>4} {med('idle_rss'):>9.1f} "
            f"{med('busy_median'):>9.1f} {med('busy_max'):>9.1f} {med('busy_hwm'):>7.1f} "
            f"{med('after_rss'):>7.1f} {idle_ok:>8} {busy_ok:>8}"
        )
    print()
    print("idle = VmRSS after 5 s connected; busy = VmRSS sampled every 100 ms while the")
    print("4 terminals + exec stream; VmHWM = peak RSS of the process; after = VmRSS 2 s")
    print("after the busy phase. 'busy ok' judges the worse of busy max and VmHWM.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--skip-pyz", action="store_true", help="no plain python3 corral-agent.pyz row"
    )
    parser.add_argument("--skip-tls", action="store_true", help="no production (TLS) row")
    parser.add_argument("--skip-plain", action="store_true", help="only the production row")
    asyncio.run(benchmark(parser.parse_args()))


if __name__ == "__main__":
    main()
