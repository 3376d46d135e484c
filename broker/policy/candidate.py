"""Policy text that is not (yet) in force: read the source in force as text, load a
candidate text into a fresh engine, and write a candidate over the configured files.

The API's ``/api/v1/policy/source``, ``/validate``, ``/test`` and ``PUT /api/v1/policy``
use it. Loading builds a new engine from the text and never touches the one in force;
errors keep the name the caller gave the file, so ``name:line`` points into their text,
as ``corral policy check`` does. Text from a caller is loaded in a child process first
(:func:`check_isolated`, :mod:`policies.sandbox`): the Polar parser aborts the whole
process on some malformed input. Writing is atomic per file (temp file, fsync,
``os.replace``) and keeps the previous text as ``<file>.prev``.

It must never write to the policy shipped inside the package, nor to any path a caller
named: the paths come from the broker's settings only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from broker.errors import InvalidInput
from broker.policy.runtime import PolicySource
from policies import PolicyLoadError
from policies.casbin_backend import casbin_from_text
from policies.engine import RuleEngine
from policies.polar_backend import polar_from_text
from policies.sandbox import CRASHED, child_command, read_answer

__all__ = [
    "Candidate",
    "LoadProblem",
    "PolicyText",
    "candidate_of",
    "check_isolated",
    "is_packaged",
    "load_candidate",
    "source_texts",
    "write_files",
    "writes_for",
]

log = logging.getLogger("corral.policy")

_PACKAGE = Path(__file__).resolve().parents[2] / "policies"


@dataclass(frozen=True)
class PolicyText:
    """One file's text, under the name the caller knows it by (a label, never a path)."""

    name: str
    text: str


@dataclass(frozen=True)
class LoadProblem:
    """Why a candidate does not load: ``file:line: message`` as fields."""

    file: str
    line: int | None
    message: str


@dataclass(frozen=True)
class Candidate:
    """A policy to load: Polar (``model`` is ``None``) or Casbin (model + policy CSV)."""

    backend: str
    policy: PolicyText
    model: PolicyText | None = None

    @property
    def files(self) -> tuple[PolicyText, ...]:
        return (self.policy,) if self.model is None else (self.model, self.policy)


def source_texts(source: PolicySource) -> list[PolicyText]:
    """The texts of the files in force, named by their base names (no server paths)."""
    return [PolicyText(path.name, path.read_text(encoding="utf-8")) for path in source.files]


def candidate_of(backend: str, files: list[PolicyText], in_force: PolicySource) -> Candidate:
    """Which given file is which: Polar takes exactly one file; Casbin takes the policy
    CSV (the name ending ``.csv``) and optionally its model (the other file), else the
    model in force (the shipped one when the broker runs Polar)."""
    if backend == "polar":
        if len(files) != 1:
            raise InvalidInput("a Polar policy is exactly one file")
        return Candidate("polar", files[0])
    csv = [f for f in files if f.name.endswith(".csv")]
    other = [f for f in files if not f.name.endswith(".csv")]
    if len(csv) != 1 or len(other) > 1:
        raise InvalidInput("a Casbin policy is one .csv file and, optionally, one model file")
    if other:
        return Candidate("casbin", csv[0], other[0])
    model_path = in_force.model_file
    if model_path is None:
        from policies.casbin_backend import DEFAULT_MODEL

        model_path = DEFAULT_MODEL
    model = PolicyText(model_path.name, model_path.read_text(encoding="utf-8"))
    return Candidate("casbin", csv[0], model)


def load_candidate(candidate: Candidate) -> RuleEngine | LoadProblem:
    """A fresh reference engine built from the texts, or why it does not load.

    CPU-bound (oso compiles the text): call it in a worker thread."""
    try:
        if candidate.model is None:
            return polar_from_text(candidate.policy.text, candidate.policy.name)
        return casbin_from_text(
            candidate.model.text,
            candidate.policy.text,
            candidate.model.name,
            candidate.policy.name,
        )
    except PolicyLoadError as exc:
        return LoadProblem(exc.file or candidate.policy.name, exc.line, exc.message)
    except Exception:  # a backend failure that is not a load error: fail closed, quietly
        log.exception("policy candidate failed to load")
        return LoadProblem(candidate.policy.name, None, "the policy could not be loaded")


SANDBOX_TIMEOUT = 30.0
SANDBOX_SLOTS = 2
"""Child processes loading candidates at once; more callers wait their turn."""

_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


async def check_isolated(
    candidate: Candidate, *, timeout: float = SANDBOX_TIMEOUT
) -> str | LoadProblem:
    """Load ``candidate`` in a throw-away child process: its version, or why it does not
    load. A child that crashes or hangs is a "does not load", never the broker's end."""
    loop = asyncio.get_running_loop()
    slots = _slots.setdefault(loop, asyncio.Semaphore(SANDBOX_SLOTS))
    request = {
        "backend": candidate.backend,
        "policy": {"name": candidate.policy.name, "text": candidate.policy.text},
        "model": None
        if candidate.model is None
        else {"name": candidate.model.name, "text": candidate.model.text},
    }
    name = candidate.policy.name
    argv, env = child_command()
    async with slots:
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        try:
            out, _ = await asyncio.wait_for(
                child.communicate(json.dumps(request).encode()), timeout
            )
        except TimeoutError:
            child.kill()
            await child.wait()
            return LoadProblem(name, None, f"loading the policy took over {timeout:g} s")
    answer = read_answer(out, child.returncode, name)
    if "version" in answer:
        return str(answer["version"])
    if answer["message"] == CRASHED:
        log.warning("policy sandbox ended with %s and no answer", child.returncode)
    return LoadProblem(answer["file"], answer["line"], answer["message"])


def is_packaged(path: Path) -> bool:
    """Whether ``path`` is a file shipped inside the ``policies`` package (read-only)."""
    return path.resolve().is_relative_to(_PACKAGE)


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path``'s text in one step, keeping the old text as ``<path>.prev``."""
    data = text.encode("utf-8")
    if path.exists():
        prev = path.with_name(path.name + ".prev")
        _replace_with(prev, path.read_bytes())
    _replace_with(path, data)


def _replace_with(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def writes_for(source: PolicySource, candidate: Candidate) -> list[tuple[Path, str]]:
    """The files replacing ``candidate`` writes: the policy, and the Casbin model only
    when its text changed (so a broker on the shipped model can still take a new CSV)."""
    writes = [(source.file, candidate.policy.text)]
    model, model_file = candidate.model, source.model_file
    if model is None or model_file is None:
        return writes
    if model.text != model_file.read_text(encoding="utf-8"):
        writes.insert(0, (model_file, model.text))
    return writes


def write_files(writes: list[tuple[Path, str]]) -> None:
    """Write each file atomically, keeping its previous text as ``<file>.prev``."""
    for path, text in writes:
        _write_atomically(path, text)
