"""Package the agent as ONE file (a zipapp) and render its install script.

Hosts get the agent as ``corral-agent.pyz``: the ``agent`` and ``websh`` packages (standard
library only; the WebSocket client is ``agent.wsframe``), run by the host's own
``python3``. No pip, no virtualenv, nothing to compile. The broker serves it, and
``install.sh`` with the broker's URL filled in.

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

__all__ = ["BUNDLED_PACKAGES", "PLACEHOLDER", "add_bytecode", "build_zipapp", "install_script"]

BUNDLED_PACKAGES = ("agent", "websh")
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


def add_bytecode(pyz_path: str, *, runtime_path: str | None = None) -> int:
    """Add ``.pyc`` files compiled by *this* interpreter to the zipapp; return how many.

    ``install.sh`` runs this with the host's ``python3`` on the downloaded archive. Without
    bytecode, ``zipimport`` compiles every module from source at each start, which costs
    the running agent about 1 MiB of resident memory (compiler garbage left in the heap)
    and start-up time. The ``.pyc`` files sit next to their ``.py`` (where ``zipimport``
    looks) and are unchecked hash-based pycs: the archive is only ever replaced whole. If
    ``python3`` is later upgraded, ``zipimport`` rejects them by their magic number and
    falls back to the source, so a stale archive still runs. ``runtime_path`` is where the
    archive will be run from (for tracebacks), default ``pyz_path``.
    """
    import importlib.util
    import marshal
    import zipfile

    prefix = runtime_path or pyz_path
    tmp = f"{pyz_path}.tmp-{os.getpid()}"
    count = 0
    try:
        with open(pyz_path, "rb") as handle:
            first = handle.readline()
        with zipfile.ZipFile(pyz_path) as source, open(tmp, "wb") as out:
            out.write(first if first.startswith(b"#!") else b"")
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
                for info in source.infolist():
                    if info.filename.endswith(".pyc"):
                        continue  # from an earlier run or another Python: replaced below
                    data = source.read(info)
                    target.writestr(info, data)
                    if not info.filename.endswith(".py"):
                        continue
                    code = compile(data, f"{prefix}/{info.filename}", "exec", dont_inherit=True)
                    pyc = zipfile.ZipInfo(info.filename + "c", date_time=info.date_time)
                    pyc.compress_type = zipfile.ZIP_DEFLATED
                    pyc.external_attr = info.external_attr
                    target.writestr(
                        pyc,
                        importlib.util.MAGIC_NUMBER
                        + (0b01).to_bytes(4, "little")  # hash-based, source not checked
                        + importlib.util.source_hash(data)
                        + marshal.dumps(code),
                    )
                    count += 1
        os.chmod(tmp, os.stat(pyz_path).st_mode & 0o7777)
        os.replace(tmp, pyz_path)
    except (OSError, SyntaxError, ValueError, zipfile.BadZipFile) as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise BuildError(f"cannot add bytecode to {pyz_path}: {exc}") from exc
    return count


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
