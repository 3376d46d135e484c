"""The single-file agent and install.sh, installed into a throwaway root over real HTTP."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.build import build_zipapp, install_script
from agent.errors import BuildError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dist") / "agent" / "corral-agent.pyz"
    path.parent.mkdir()
    build_zipapp(str(path))
    return path


def test_zipapp_contents(pyz: Path) -> None:
    names = zipfile.ZipFile(pyz).namelist()
    assert "__main__.py" in names
    for package in ("agent", "websh"):
        assert f"{package}/__init__.py" in names
    assert not [n for n in names if n.startswith(("wsproto/", "h11/"))]
    assert "agent/terminal.py" in names
    assert "agent/install.sh" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n]
    assert not [n for n in names if n.startswith(("broker/", "api/", "idp/"))]
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_zipapp_runs_standalone(pyz: Path) -> None:
    # -I: ignore the venv and this checkout; only the archive provides the packages.
    code = "import agent.terminal, agent.sysinfo, agent.transport, websh; print('ok')"
    probe = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(pyz)!r}); {code}"],
        capture_output=True, text=True, cwd="/", timeout=60,
    )  # fmt: skip
    assert probe.stdout == "ok\n", probe.stderr
    if importlib.util.find_spec("agent.main") is not None:
        run = subprocess.run(
            [sys.executable, "-I", str(pyz), "--help"], capture_output=True, timeout=60, cwd="/"
        )
        assert run.returncode == 0, run.stderr


def test_install_script_rejects_unsafe_urls() -> None:
    assert "BROKER_URL='https://b.example:8443/x'" in install_script("https://b.example:8443/x/")
    for bad in ("https://b'$(reboot)'", "ftp://b", "https://b/ x", "https://b/?a=1"):
        with pytest.raises(BuildError):
            install_script(bad)


@pytest.fixture
def broker(pyz: Path) -> Iterator[str]:
    """A tiny real HTTP server on loopback serving /agent/corral-agent.pyz."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(pyz.parent.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def run_install(broker: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "install.sh"
    script.write_text(install_script(broker))
    return subprocess.run(
        ["sh", str(script), *args], capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )  # fmt: skip


@pytest.mark.parametrize("shell", ["sh", "dash"])
def test_install_into_throwaway_root(broker: str, tmp_path: Path, pyz: Path, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    root = tmp_path / "root"
    result = run_install(broker, tmp_path, "--root", str(root), "--no-register", "--tag", "a=b")
    assert result.returncode == 0, result.stderr
    installed = root / "usr/local/lib/corral/corral-agent.pyz"
    # The download plus bytecode for the installing python3 (``add_bytecode``).
    served, got = zipfile.ZipFile(pyz), zipfile.ZipFile(installed)
    sources = [n for n in got.namelist() if not n.endswith(".pyc")]
    assert sources == served.namelist()
    assert all(got.read(n) == served.read(n) for n in sources)
    assert {n + "c" for n in sources if n.endswith(".py")} == {
        n for n in got.namelist() if n.endswith(".pyc")
    }
    assert installed.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    version = subprocess.run(
        [sys.executable, "-I", "-S", str(installed), "--version"],
        capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert version.stdout.startswith("corral-agent "), version.stderr
    wrapper = (root / "usr/local/bin/corral-agent").read_text()
    assert "-I -S '/usr/local/lib/corral/corral-agent.pyz'" in wrapper
    assert os.access(root / "usr/local/bin/corral-agent", os.X_OK)
    unit = (root / "etc/systemd/system/corral-agent.service").read_text()
    assert "Restart=on-failure" in unit
    assert "KillMode=process" in unit
    start = "-I -S /usr/local/lib/corral/corral-agent.pyz run --config /etc/corral/agent.toml"
    assert start in unit
    assert "systemctl skipped" in result.stdout
    assert not list(root.glob("usr/local/lib/corral/*.download.*"))


def test_install_register_failure_is_one_clear_line(broker: str, tmp_path: Path) -> None:
    result = run_install(broker, tmp_path, "--root", str(tmp_path / "r"), "--token", "t0k")
    assert result.returncode != 0
    assert "corral-agent install: error: registration with" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--token is required (or pass --no-register)"),
        (("--bogus",), "unknown option '--bogus'"),
        (("--tag", "novalue", "--no-register"), "--tag needs KEY=VALUE, got 'novalue'"),
        (("--token",), "option --token needs a value"),
        (("--ca-file", "/nonexistent", "--no-register"), "CA file '/nonexistent' is not readable"),
    ],
)
def test_install_usage_errors(
    broker: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_install(broker, tmp_path, "--root", str(tmp_path / "r"), *args)
    assert result.returncode == 1
    assert result.stderr.strip() == f"corral-agent install: error: {message}"


def test_install_download_failure(tmp_path: Path) -> None:
    result = run_install(
        "http://127.0.0.1:9", tmp_path, "--root", str(tmp_path / "r"), "--no-register"
    )
    assert result.returncode == 1
    assert "download of http://127.0.0.1:9/agent/corral-agent.pyz failed" in result.stderr


def test_unsubstituted_script_refuses(tmp_path: Path) -> None:
    template = Path(__file__).parents[2] / "agent" / "install.sh"
    result = subprocess.run(["sh", str(template), "--no-register"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "not served by a broker" in result.stderr
