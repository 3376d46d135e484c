"""``corral audit`` against the contract of ``GET /api/v1/audit/events`` (contracts.md),
served by a small HTTP server on 127.0.0.1 that pages at 3 events: the client follows
``next_cursor``, passes the filters through, stops at ``--limit`` and, with ``--follow``,
prints events that arrive later exactly once. (The real endpoint is exercised in
tests/integration/test_cli_client.py once it is on the branch.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

_SCRIPT = Path(sys.executable).with_name("corral")
CORRAL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli.main"]
PAGE = 3


@dataclass
class AuditLog:
    events: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, list[str]]] = field(default_factory=list)

    def add(self, action: str) -> None:
        seq = len(self.events) + 1
        self.events.append(
            {
                "seq": seq,
                "ts": f"2026-01-01T00:00:{seq:02d}+00:00",
                "category": "authentication",
                "action": action,
                "outcome": "success",
                "actor_type": "user",
                "actor_id": "u1",
                "credential_id": "t1",
                "server_id": "",
                "session_id": "",
                "target": "",
                "details": {"n": seq},
            }
        )


@pytest.fixture
def broker() -> Iterator[tuple[str, AuditLog]]:
    log = AuditLog()
    for i in range(7):
        log.add(f"event.{i + 1}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path != "/api/v1/audit/events" or self.headers["Authorization"] != (
                "Bearer crlpat_test"
            ):
                self.send_response(404)
                self.end_headers()
                return
            log.queries.append(query)
            after = int(query.get("cursor", ["0"])[0])
            since = query.get("since", [""])[0]
            rows = [e for e in log.events if e["seq"] > after and e["ts"] >= since]
            limit = min(int(query.get("limit", ["100"])[0]), PAGE)
            page = rows[:limit]
            more = len(rows) > limit
            body = json.dumps(
                {"events": page, "next_cursor": str(page[-1]["seq"]) if more else None}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", log
    server.shutdown()
    server.server_close()
    thread.join()


def _env(url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    return {
        **env,
        "CORRAL_URL": url,
        "CORRAL_TOKEN": "crlpat_test",
        "XDG_CONFIG_HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }


def test_pages_are_followed_filters_passed_and_limit_kept(
    broker: tuple[str, AuditLog], tmp_path: Path
) -> None:
    url, log = broker
    run = subprocess.run(
        [*CORRAL, "audit", "--json", "--category", "authentication", "--limit", "5"],
        env=_env(url, tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert [e["seq"] for e in json.loads(run.stdout)["events"]] == [1, 2, 3, 4, 5]
    assert [q.get("cursor") for q in log.queries] == [None, ["3"]]
    assert all(q["category"] == ["authentication"] for q in log.queries)

    every = subprocess.run(
        [*CORRAL, "audit", "--since", "2025-12-31T00:00:00"],
        env=_env(url, tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = every.stdout.splitlines()
    assert len(lines) == 7 and lines[0].startswith("2026-01-01T00:00:01+00:00  #1  success")
    assert "event.7" in lines[-1] and "actor=u1" in lines[-1] and "n=7" in lines[-1]
    assert log.queries[-1]["since"] == ["2025-12-31T00:00:00+00:00"]


def test_follow_prints_new_events_once(broker: tuple[str, AuditLog], tmp_path: Path) -> None:
    url, log = broker
    proc = subprocess.Popen(
        [*CORRAL, "audit", "--follow", "--json", "--limit", "7"],
        env=_env(url, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = [json.loads(proc.stdout.readline())["seq"] for _ in range(7)]
        log.add("later.one")
        log.add("later.two")
        seen += [json.loads(proc.stdout.readline())["seq"] for _ in range(2)]
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert seen == list(range(1, 10))
