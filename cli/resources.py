"""The listing and deciding commands: ``servers``, ``sessions``, ``approvals``, ``audit`` and
``recordings``. Each is one or two REST calls and a table (or ``--json``); nothing here
keeps state or decides anything the broker has not already decided.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from cli.errors import EXIT_USAGE, CliError
from cli.http import Api
from cli.output import Column, cell, print_json, print_table
from cli.profiles import resolve

__all__ = [
    "approvals",
    "audit_events",
    "connect",
    "recordings_list",
    "servers",
    "sessions",
]

AUDIT_PAGE = 500
FOLLOW_SECONDS = 2.0


def connect(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Api:
    """The API client for the selected profile (or CORRAL_URL/CORRAL_TOKEN)."""
    target = resolve(
        profile=args.profile,
        url=getattr(args, "url", None),
        ca_file=getattr(args, "ca_file", None),
        env=env,
    )
    return Api.of(target)


def _listing(
    args: argparse.Namespace,
    path: str,
    key: str,
    columns: list[Column],
    empty: str,
    **params: Any,
) -> int:
    """One GET, then the rows as a table or (``--json``) as the broker sent them."""
    with connect(args) as api:
        rows = api.get(path, **params)[key]
    if args.json:
        print_json({key: rows})
    else:
        print_table(rows, columns, empty)
    return 0


def servers(args: argparse.Namespace) -> int:
    return _listing(
        args,
        "/api/v1/servers",
        "servers",
        [
            ("NAME", lambda r: r["name"]),
            ("STATUS", lambda r: "online" if r.get("online") else r.get("status")),
            ("PLATFORM", lambda r: r.get("platform")),
            ("TAGS", lambda r: r.get("tags")),
            ("ACCESS", lambda r: r.get("access")),
        ],
        "no servers you can see",
    )


def _server_names(api: Api) -> dict[str, str]:
    return {s["id"]: s["name"] for s in api.get("/api/v1/servers")["servers"]}


def sessions(args: argparse.Namespace) -> int:
    with connect(args) as api:
        rows = api.get("/api/v1/sessions")["sessions"]
        names = _server_names(api) if rows and not args.json else {}
    if args.json:
        print_json({"sessions": rows})
        return 0
    print_table(
        rows,
        [
            ("ID", lambda r: r["id"]),
            ("SERVER", lambda r: names.get(r["server_id"], r["server_id"])),
            ("UNIX USER", lambda r: r.get("unix_user")),
            ("USER ID", lambda r: r.get("user_id")),
            ("ATTACHED", lambda r: r.get("attached")),
        ],
        "no live sessions",
    )
    return 0


def approvals(args: argparse.Namespace) -> int:
    action = args.approvals_action or "list"
    if action == "list":
        return _listing(
            args,
            "/api/v1/approvals",
            "approvals",
            [
                ("ID", lambda r: r["id"]),
                ("STATUS", lambda r: r["status"]),
                ("COMMAND", lambda r: r.get("command")),
                ("RULE", lambda r: r.get("rule_id")),
                ("REQUESTER", lambda r: r.get("requester_id")),
                ("EXPIRES", lambda r: r.get("expires_at")),
            ],
            "no approvals" + (f" with status {args.status}" if args.status else ""),
            status=args.status,
        )
    if not args.id:
        raise CliError(
            f"`corral approvals {action}` needs an approval ID",
            "see `corral approvals list`",
            EXIT_USAGE,
        )
    verb = "approve" if action == "approve" else "deny"
    with connect(args) as api:
        decided = api.post(f"/api/v1/approvals/{args.id}/{verb}", {"reason": args.reason or ""})
    if args.json:
        print_json(decided)
    else:
        print(f"approval {decided['id']}: {decided['status']} ({cell(decided.get('command'))})")
    return 0


def _audit_params(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "since": args.since,
        "until": args.until,
        "actor": args.actor,
        "category": args.category,
        "server": args.server,
        "action": args.action,
        "outcome": args.outcome,
    }


def _audit_pages(api: Api, params: dict[str, Any], limit: int | None) -> Iterator[dict[str, Any]]:
    """Every event matching ``params``, oldest first, following the cursor."""
    cursor: str | None = None
    shown = 0
    while True:
        page = api.get(
            "/api/v1/audit/events",
            **params,
            limit=min(AUDIT_PAGE, limit - shown) if limit else AUDIT_PAGE,
            cursor=cursor,
        )
        for event in page.get("events", []):
            yield event
            shown += 1
            if limit and shown >= limit:
                return
        cursor = page.get("next_cursor")
        if not cursor:
            return


def _audit_line(event: dict[str, Any]) -> str:
    actor = event.get("actor_id") or event.get("actor_type") or "-"
    parts = [
        cell(event.get("ts"), 32),
        f"#{event.get('seq')}",
        cell(event.get("outcome"), 10),
        cell(event.get("action")),
        f"actor={cell(actor)}",
    ]
    if event.get("server_id"):
        parts.append(f"server={cell(event['server_id'])}")
    if event.get("target"):
        parts.append(f"target={cell(event['target'])}")
    details = event.get("details") or {}
    if isinstance(details, dict) and details:
        parts.append(cell(details, 120))
    return "  ".join(parts)


def audit_events(args: argparse.Namespace) -> int:
    params = _audit_params(args)
    last_seq = -1
    with connect(args) as api:
        events = list(_audit_pages(api, params, args.limit))
        if args.json and not args.follow:
            print_json({"events": events})
            return 0
        if not events and not args.follow:
            print("no audit events match", file=sys.stderr)
        for event in events:
            _emit_event(event, args.json)
            last_seq = max(last_seq, int(event.get("seq", -1)))
        while args.follow:
            time.sleep(FOLLOW_SECONDS)
            since = events[-1]["ts"] if events else params["since"]
            fresh = [
                e
                for e in _audit_pages(api, {**params, "since": since}, None)
                if int(e.get("seq", -1)) > last_seq
            ]
            for event in fresh:
                _emit_event(event, args.json)
                last_seq = max(last_seq, int(event.get("seq", -1)))
            events = fresh or events
    return 0


def _emit_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(event, ensure_ascii=False), flush=True)
    else:
        print(_audit_line(event), flush=True)


def recordings_list(args: argparse.Namespace) -> int:
    return _listing(
        args,
        "/api/v1/recordings",
        "recordings",
        [
            ("ID", lambda r: r["id"]),
            ("SESSION", lambda r: r.get("session_id")),
            ("SERVER", lambda r: r.get("server_name") or r.get("server_id") or "-"),
            ("UNIX USER", lambda r: r.get("unix_user")),
            ("STARTED", lambda r: (r.get("started_at") or "")[:19]),
            ("SIZE", lambda r: r.get("size_bytes")),
        ],
        "no recordings you can see",
        session_id=args.session,
    )
