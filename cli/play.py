"""``corral recordings play ID``: download a session's asciicast (v2) and replay it in this
terminal with its timing, like ``asciinema play``; ``--raw`` writes the file itself.

Long pauses are shortened to ``--max-wait`` seconds so a recording of a day-long session
stays watchable; ``--speed`` divides every delay. Output events are written as recorded
(they are the bytes the person saw); input and other event kinds are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable

from cli.errors import CliError
from cli.output import write_all
from cli.resources import connect

__all__ = ["play", "replay_cast"]


def replay_cast(
    lines: Iterable[str],
    write: Callable[[bytes], object],
    *,
    speed: float = 1.0,
    max_wait: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write a cast's output events with their delays; the number of events written."""
    iterator = iter(lines)
    header = json.loads(next(iterator, "") or "null")
    if not isinstance(header, dict) or header.get("version") != 2:
        raise CliError("the recording is not an asciicast v2 file", "report it to your admin")
    previous = 0.0
    written = 0
    for line in iterator:
        if not line.strip():
            continue
        event = json.loads(line)
        if not (isinstance(event, list) and len(event) >= 3 and event[1] == "o"):
            continue
        at = float(event[0])
        delay = min(max(at - previous, 0.0), max_wait) / speed
        previous = at
        if delay > 0:
            sleep(delay)
        write(str(event[2]).encode())
        written += 1
    return written


def play(args: argparse.Namespace) -> int:
    if not args.speed > 0:
        raise CliError("--speed must be more than 0", "e.g. --speed 2 plays twice as fast", 2)
    with connect(args) as api:
        response = api.request("GET", f"/api/v1/recordings/{args.id}/download")
    if args.raw:
        sys.stdout.buffer.write(response.content)
        sys.stdout.flush()
        return 0
    out = sys.stdout.fileno()
    try:
        replay_cast(
            response.text.splitlines(),
            lambda data: write_all(out, data),
            speed=args.speed,
            max_wait=args.max_wait,
        )
    except (ValueError, TypeError) as exc:
        raise CliError(f"the recording cannot be read: {str(exc)[:100]}", "try --raw") from None
    return 0
