"""The asciicast recorder writes exactly the lines ``json`` would, however odd the output."""

from __future__ import annotations

import json
import random
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from broker.gateway import recorder as recorder_module
from broker.gateway.recorder import AsciicastRecorder

AWKWARD = [
    b"plain\r\n",
    b'quote " backslash \\ tab \t bell \x07 nul \x00 esc \x1b[31m',
    "é ✓ \u2028 \u2029 😀".encode(),
    "split ✓".encode()[:-1],  # a character cut in two across chunks
    "✓".encode()[-1:] + b" rest",
    b"\xff\xfe invalid utf-8",
    # large chunks: escaped as bytes when they are whole UTF-8 without rare controls
    b'line of cat output with a \\ and a " and a tab\t\x1b[0m\x07\x08\x0c\r\n' * 40,
    "box drawing \u2500\u2502 and \u00e9 \u2713 \u2028\r\n".encode() * 60,
    b"a rare control \x01 in a big chunk\r\n" * 30,
    b"cut in two: " * 50 + "✓".encode()[:2],
    "✓".encode()[2:] + b" after the cut" * 50,
    b"x" * 600 + b"\xc3",  # a big chunk ending in a lone lead byte
    b"\xa9 continued" * 50,
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


@pytest.mark.parametrize("seed", range(4))
async def test_random_chunks_match_json(tmp_path: Path, seed: int) -> None:
    """Chunks of every size and mix (ASCII, UTF-8 cut anywhere, control characters,
    invalid bytes) give the lines and text json and a strict decoder would."""
    rng = random.Random(seed)
    alphabet = [
        b"a",
        b"Z",
        b" ",
        b"\\",
        b'"',
        b"\r\n",
        b"\t",
        b"\x1b[1m",
        b"\x07",
        b"\x00",
        b"\x7f",
        "é".encode(),
        "✓".encode(),
        "😀".encode(),
        b"\xff",
    ]
    if seed % 2:  # mostly whole UTF-8 without rare controls: the bytes path
        alphabet = [a for a in alphabet if a not in (b"\x00", b"\xff")]
    stream = b"".join(rng.choice(alphabet) for _ in range(20000))
    path = tmp_path / "s.cast"
    recorder = AsciicastRecorder(path, cols=80, rows=24)
    at = 0
    while at < len(stream):
        size = rng.choice([1, 7, 511, 512, 513, 2000, 5000])
        recorder.output(stream[at : at + size])
        at += size
    recorder.close()
    lines = path.read_bytes().decode("utf-8").split("\n")[1:-1]
    events = [json.loads(line) for line in lines]
    for line, event in zip(lines, events, strict=True):
        assert line == json.dumps(event, ensure_ascii=False)
    assert "".join(e[2] for e in events) == stream.decode("utf-8", "replace")


async def test_times_are_seconds_rounded_to_the_microsecond(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Elapsed times come from integer nanoseconds, rounded half up to the microsecond
    (as ``round(seconds, 6)`` would, without its float error), written as json writes them."""
    start = 10**15
    offsets = [0, 49_999, 50_000, 499, 500, 1_499_500, 3_600_000_000_499, 86_400_123_456_789]
    clock = iter([start, *(start + offset for offset in offsets)])
    fake = SimpleNamespace(monotonic_ns=lambda: next(clock), time=lambda: 1_700_000_000)
    monkeypatch.setattr(recorder_module, "time", fake)
    path = tmp_path / "t.cast"
    recorder = AsciicastRecorder(path, cols=80, rows=24)
    for _ in offsets:
        recorder.output(b"x")
    recorder.close()
    lines = path.read_text(encoding="utf-8").split("\n")[1:-1]
    expected = [
        float((Decimal(offset) / 10**9).quantize(Decimal("0.000001"), ROUND_HALF_UP))
        for offset in offsets
    ]
    assert [json.loads(line)[0] for line in lines] == expected
    assert lines == [json.dumps([t, "o", "x"], ensure_ascii=False) for t in expected]
    assert lines[1].startswith("[5e-05, ")  # json's own float format, exponent included
