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
"""

from __future__ import annotations

import json
import sys
from typing import Any

from policies.casbin_backend import casbin_from_text
from policies.errors import PolicyLoadError
from policies.polar_backend import polar_from_text

__all__ = ["check"]


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
