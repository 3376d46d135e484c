"""The asciicast recorder writes exactly the lines ``json`` would, however odd the output."""

from __future__ import annotations

import json
from pathlib import Path

from broker.gateway.recorder import AsciicastRecorder

AWKWARD = [
    b"plain\r\n",
    b'quote " backslash \\ tab \t bell \x07 nul \x00 esc \x1b[31m',
    "é ✓ \u2028 \u2029 😀".encode(),
    "split ✓".encode()[:-1],  # a character cut in two across chunks
    "✓".encode()[-1:] + b" rest",
    b"\xff\xfe invalid utf-8",
]


async def test_lines_are_what_json_dumps_gives(tmp_path: Path) -> None:
    path = tmp_path / "r" / "s.cast"
    recorder = AsciicastRecorder(path, cols=80, rows=24, title="root@web-1")
    for chunk in AWKWARD:
        recorder.output(chunk)
    recorder.resize(132, 43)
    recorder.marker('command "ls"')
    size = recorder.close()
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines: U+2028
    assert size == path.stat().st_size
    header = json.loads(lines[0])
    assert (header["version"], header["width"], header["height"]) == (2, 80, 24)
    events = [json.loads(line) for line in lines[1:]]
    for line, event in zip(lines[1:], events, strict=True):
        assert line == json.dumps(event, ensure_ascii=False)  # byte for byte
    output = "".join(e[2] for e in events if e[1] == "o")
    assert output == b"".join(AWKWARD).decode("utf-8", "replace")
    assert [e[1:] for e in events if e[1] != "o"] == [["r", "132x43"], ["m", 'command "ls"']]
    times = [e[0] for e in events]
    assert times == sorted(times) and all(isinstance(t, float) for t in times)
