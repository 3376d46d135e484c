"""Package the agent as ONE file (a zipapp) and render its install script.

Hosts get the agent as ``corral-agent.pyz``: the ``agent`` and ``websh`` packages plus the
pure-Python ``wsproto`` and ``h11`` they need, run by the host's own ``python3``. No pip,
no virtualenv, nothing to compile. The broker serves it, and ``install.sh`` with the
broker's URL filled in.

This module must never bundle tests, caches or broker code, and must never substitute a
URL into the shell script that could break out of its quoting.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipapp
from importlib import import_module

from agent.errors import BuildError

__all__ = ["BUNDLED_PACKAGES", "PLACEHOLDER", "build_zipapp", "install_script"]

BUNDLED_PACKAGES = ("agent", "websh", "wsproto", "h11")
PLACEHOLDER = "@@BROKER_URL@@"
_SAFE_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/\-]*)?")
_EXCLUDED_DIRS = frozenset({"tests", "__pycache__"})

_MAIN = """\
import sys

from agent.main import main

sys.exit(main())
"""


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {
        name
        for name in names
        if name in _EXCLUDED_DIRS or name.endswith((".pyc", ".pyo")) or name.startswith(".")
    }


def build_zipapp(target_path: str, *, interpreter: str = "/usr/bin/env python3") -> str:
    """Build the single-file agent at ``target_path`` (made executable); return the path.

    Packages are copied from wherever they are installed (located via ``__file__``), so
    the archive holds exactly the code this process runs.
    """
    with tempfile.TemporaryDirectory(prefix="corral-agent-build-") as staging:
        for name in BUNDLED_PACKAGES:
            try:
                module = import_module(name)
            except ImportError as exc:
                raise BuildError(f"cannot bundle {name!r}: it is not installed") from exc
            source = getattr(module, "__file__", None)
            if not source or os.path.basename(source) != "__init__.py":
                raise BuildError(f"cannot bundle {name!r}: not a regular package")
            shutil.copytree(os.path.dirname(source), os.path.join(staging, name), ignore=_ignore)
        with open(os.path.join(staging, "__main__.py"), "w", encoding="utf-8") as handle:
            handle.write(_MAIN)
        tmp = f"{target_path}.tmp-{os.getpid()}"
        try:
            zipapp.create_archive(staging, tmp, interpreter=interpreter, compressed=True)
            os.replace(tmp, target_path)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise BuildError(f"cannot write {target_path}: {exc.strerror or exc}") from exc
    return target_path


def install_script(broker_url: str) -> str:
    """``install.sh`` with the broker URL substituted, as ``GET /agent/install.sh`` serves.

    The URL lands inside single quotes in a shell script, so only a conservative URL
    alphabet is accepted (no quotes, spaces, ``$``, backticks, query strings).
    """
    url = broker_url.rstrip("/")
    if not _SAFE_URL.fullmatch(url):
        raise BuildError(f"broker URL {broker_url!r} is not a plain http(s) URL")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "install.sh")
    try:
        with open(path, encoding="utf-8") as handle:
            template = handle.read()
    except OSError as exc:
        raise BuildError(f"cannot read install.sh: {exc.strerror or exc}") from exc
    return template.replace(PLACEHOLDER, url)
