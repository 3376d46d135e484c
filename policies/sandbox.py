"""Load untrusted policy text in a child process: ``python -m policies.sandbox``.

The Polar parser is native code, and some malformed texts make it abort the whole process
(a Rust panic while it formats the error location of non-ASCII input: "loc is longer than
the string"). Policy text that arrives over the API is therefore loaded here first, in a
throw-away process; the broker loads a text in-process only once this child has loaded it
without error. A child that dies says nothing about why, and the caller treats that as
"does not load" (fail closed).

Protocol: one JSON object on stdin ``{"backend", "policy": {"name", "text"},
"model": {"name", "text"} | null}``; one JSON line on stdout, either ``{"version"}`` or
``{"file", "line", "message"}``. It must never import the broker (start-up cost, and the
child needs nothing of it).

The parent's side is here too: :func:`child_command`, :func:`read_answer` (used by the
broker's asynchronous ``check_isolated``) and :func:`check_in_child`, the blocking form
that the broker's start-up and ``corral policy check`` run before loading a file
in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from policies.casbin_backend import casbin_from_text
from policies.errors import PolicyLoadError
from policies.polar_backend import polar_from_text

__all__ = ["CRASHED", "check", "check_in_child", "child_command", "read_answer"]

CRASHED = (
    "the Polar parser crashed on this text (it does so on some syntax errors near "
    "non-ASCII characters); nothing was loaded"
)
TIMEOUT = 30.0


def child_command() -> tuple[list[str], dict[str, str]]:
    """The child's argv and environment: isolated (``-I``: no current directory on the
    path, no ``PYTHON*`` variables), Rust backtraces off."""
    argv = [sys.executable, "-I", "-m", "policies.sandbox"]
    return argv, {**os.environ, "RUST_BACKTRACE": "0"}


def read_answer(out: bytes, returncode: int | None, name: str) -> dict[str, Any]:
    """The child's answer line: ``{"version"}`` or ``{"file", "line", "message"}``; a child
    that died without one (the parser aborted it) is a refusal, never a pass."""
    try:
        answer = json.loads(out.decode("utf-8").splitlines()[-1])
        if returncode == 0 and isinstance(answer.get("version"), str):
            return {"version": answer["version"]}
        line = answer["line"]
        return {
            "file": str(answer["file"]),
            "line": line if isinstance(line, int) else None,
            "message": str(answer["message"]),
        }
    except (ValueError, IndexError, KeyError, AttributeError, TypeError):
        return {"file": name, "line": None, "message": CRASHED}


def check_in_child(request: dict[str, Any], *, timeout: float = TIMEOUT) -> None:
    """Load the request's texts in a throw-away child, blocking; raise
    :class:`PolicyLoadError` (with ``file:line`` when the child could say) if they do not
    load, so the caller's own in-process load never meets a text that aborts the parser."""
    argv, env = child_command()
    name = request["policy"]["name"]
    try:
        done = subprocess.run(
            argv,
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PolicyLoadError(f"loading the policy took over {timeout:g} s", file=name) from None
    answer = read_answer(done.stdout, done.returncode, name)
    if "version" not in answer:
        raise PolicyLoadError(answer["message"], file=answer["file"], line=answer["line"])


def check(request: dict[str, Any]) -> dict[str, Any]:
    """Load the texts; the answer line the parent reads."""
    policy, model = request["policy"], request.get("model")
    try:
        if request["backend"] == "casbin" and model is not None:
            engine = casbin_from_text(model["text"], policy["text"], model["name"], policy["name"])
        else:
            engine = polar_from_text(policy["text"], policy["name"])
    except PolicyLoadError as exc:
        return {"file": exc.file or policy["name"], "line": exc.line, "message": exc.message}
    except Exception:  # not a load error we can explain: say only that it does not load
        return {"file": policy["name"], "line": None, "message": "the policy could not be loaded"}
    return {"version": engine.version}


def main() -> None:
    answer = check(json.loads(sys.stdin.read()))
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
