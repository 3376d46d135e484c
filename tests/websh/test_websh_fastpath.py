"""The codec's shortcuts decide exactly like the full decoding path.

``ping``, ``pong`` and ``metrics`` in ``encode``'s compact shape are matched by a regex, and
small texts skip the depth and size pre-scans (``websh/codec.py``). Both are differential:
every payload here is decoded once by the shortcut (``decode``) and once by the full path
(``parse_text`` + ``validate_text``), and the two must agree on the message or on the error
class and close code.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import websh as w
from websh import codec
from websh.codec import fast_text, validate_text

SMALL = w.Limits(max_depth=2, max_keys=6, max_items=2, max_string_length=8, max_text_size=60)


def full_path(payload: str, limits: w.Limits) -> w.Message:
    """``parse_text`` + ``validate_text`` with every pre-scan, no shortcut."""
    if not codec._text_size_ok(payload, limits.max_text_size):
        raise w.MessageTooBigError("text message larger than the limit")
    codec._check_depth(payload, limits.max_depth)
    obj = codec._loads(payload, limits)
    if not isinstance(obj, dict):
        raise w.DecodeError("text message must be a JSON object")
    codec._walk(obj, 1, limits, [0])
    name = obj.get("type")
    if not isinstance(name, str):
        raise w.DecodeError("text message needs a string 'type'")
    cls = codec.TEXT_TYPES.get(name)
    if cls is None:
        raise w.UnknownMessageError("unknown")
    return validate_text(cls, obj, limits)


def outcome(decoder: object, payload: str, limits: w.Limits) -> object:
    try:
        return decoder(payload, limits)  # type: ignore[operator]
    except w.ProtocolError as exc:
        return (type(exc), exc.code)


def assert_same(payload: str, limits: w.Limits = w.DEFAULT_LIMITS) -> object:
    fast = outcome(w.decode, payload, limits)
    assert fast == outcome(full_path, payload, limits), payload
    return fast


numbers = st.one_of(
    st.integers(min_value=-(10**22), max_value=10**22),
    st.floats(allow_nan=False, allow_infinity=False),
)
literals = st.one_of(
    numbers.map(json.dumps),
    st.sampled_from(
        [
            *("-0", "0.0", "1e999", "-1e999", "1E5", "1e-5", "01", "1.", ".5", "1e", "+1"),
            *("9" * 20, "9" * 21, "1." + "0" * 24, "1." + "0" * 25, "true", "null", '"1"'),
            *("[1]", "1.5e+3"),
        ]
    ),
)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(["ping", "pong"]), nonce=literals, ts=literals)
def test_ping_and_pong_agree(kind: str, nonce: str, ts: str) -> None:
    assert_same(f'{{"type":"{kind}","nonce":{nonce},"ts":{ts}}}')


@settings(max_examples=400, deadline=None)
@given(values=st.lists(literals, min_size=9, max_size=9))
def test_metrics_agree(values: list[str]) -> None:
    names = ("ts", "cpu", "mem_used", "mem_total", "disk_used", "disk_total")
    fields = ",".join(f'"{n}":{v}' for n, v in zip(names, values, strict=False))
    payload = f'{{"type":"metrics",{fields},"load":[{",".join(values[6:])}]}}'
    assert_same(payload)
    assert_same(payload, SMALL)


def test_the_shortcut_takes_real_messages() -> None:
    ping = w.Ping(nonce=7, ts=1_795_000_000.25)
    metrics = w.Metrics(
        ts=1.5, cpu=3.0, mem_used=1, mem_total=2, disk_used=3, disk_total=4, load=(0.5, 0.0, 2.0)
    )
    for message in (ping, w.Pong(nonce=0, ts=0.0), metrics):
        assert fast_text(w.encode(message), w.DEFAULT_LIMITS) == message  # type: ignore[arg-type]
    assert fast_text(w.encode(ping), SMALL) is None  # limits too small for the shape: full path
    assert fast_text('{"type":"ping", "nonce":7,"ts":1}', w.DEFAULT_LIMITS) is None


def test_prescans_are_skipped_only_when_no_limit_can_be_reached() -> None:
    limits = w.Limits(max_depth=3, max_items=4, max_string_length=40)
    assert codec._within_limits('{"type":"resize","cols":80,"rows":24}', limits)
    assert not codec._within_limits('{"a":[[1]]}', limits)  # 3 brackets: depth 4 possible
    assert not codec._within_limits('{"a":[1,2,3,4]}', limits)  # items
    assert not codec._within_limits('{"a":"' + "x" * 40 + '"}', limits)  # string length


@pytest.mark.parametrize(
    "payload",
    [
        '{"type":"ping","nonce":1,"ts":1e999}',
        '{"type":"ping","nonce":-1,"ts":1}',
        '{"type":"ping","nonce":1.5,"ts":1}',
        '{"type":"ping","nonce":1,"ts":1,"ts":1}',
        '{"type":"ping","nonce":1,"ts":2e11}',
        '{"type":"pong","nonce":' + "9" * 21 + ',"ts":1}',
        '{"type":"metrics","ts":1,"cpu":101,"mem_used":1,"mem_total":1,"disk_used":1,'
        '"disk_total":1,"load":[1,1,1]}',
        '{"type":"metrics","ts":1,"cpu":1,"mem_used":1,"mem_total":1,"disk_used":1,'
        '"disk_total":1,"load":[1,1,1e400]}',
    ],
)
def test_bad_hot_messages_get_the_full_paths_error(payload: str) -> None:
    assert isinstance(assert_same(payload), tuple)


@settings(max_examples=300, deadline=None)
@given(
    value=st.recursive(
        st.integers() | st.text(alphabet='ab[]{},"\\', max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    )
)
def test_small_texts_skip_prescans_without_changing_verdicts(value: object) -> None:
    payload = json.dumps({"type": "terminated", "reason": "x", "extra": value})
    for limits in (
        w.DEFAULT_LIMITS,
        SMALL,
        w.Limits(max_depth=1, max_items=1),
        w.Limits(max_depth=3, max_items=3, max_string_length=40, max_keys=4),
    ):
        assert_same(payload, limits)


@settings(max_examples=200, deadline=None)
@given(nonce=st.integers(min_value=0, max_value=2**53 - 1), ts=numbers)
def test_ping_encoding_is_json_dumps(nonce: int, ts: float) -> None:
    for cls in (w.Ping, w.Pong):
        message = cls(nonce=nonce, ts=ts)
        expected = json.dumps(
            {"type": cls.type, "nonce": nonce, "ts": ts}, separators=(",", ":"), allow_nan=False
        )
        assert w.encode(message) == expected


def test_ping_encoding_refuses_what_json_refuses() -> None:
    with pytest.raises(w.UsageError):
        w.encode(w.Ping(nonce=1, ts=math.inf))
