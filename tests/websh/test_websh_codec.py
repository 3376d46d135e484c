"""Decoder limits and the translation of foreign errors into websh errors."""

from __future__ import annotations

import time

import pytest

import websh as w
from websh.errors import excerpt, safe_reason

SMALL = w.Limits(
    max_text_size=200,
    max_binary_size=16,
    max_depth=3,
    max_keys=6,
    max_items=4,
    max_string_length=20,
    max_cols=100,
    max_rows=50,
)

DECODE_ERRORS = [
    ("not json", "{nope", w.DecodeError),
    ("truncated", '{"type":"eof"', w.DecodeError),
    ("array top level", "[1]", w.DecodeError),
    ("string top level", '"eof"', w.DecodeError),
    ("no type", '{"cols":1}', w.DecodeError),
    ("type not string", '{"type":1}', w.DecodeError),
    ("duplicate key", '{"type":"eof","type":"eof"}', w.DecodeError),
    ("NaN", '{"type":"ping","nonce":1,"ts":NaN}', w.DecodeError),
    ("Infinity", '{"type":"ping","nonce":1,"ts":-Infinity}', w.DecodeError),
    ("float overflow", '{"type":"ping","nonce":1,"ts":1e999}', w.DecodeError),
    ("huge int", '{"type":"ping","nonce":' + "9" * 30 + ',"ts":1}', w.DecodeError),
    ("empty binary", b"", w.DecodeError),
    ("unknown type", '{"type":"shell_exec"}', w.UnknownMessageError),
    ("unknown kind", b"\x09abc", w.UnknownMessageError),
    ("kind zero", b"\x00", w.UnknownMessageError),
    ("text too big", '{"type":"eof","x":"' + "a" * 300 + '"}', w.MessageTooBigError),
    ("text too big in bytes", '{"type":"eof","x":"' + "\u20ac" * 70 + '"}', w.MessageTooBigError),
    ("binary too big", b"\x02" + b"x" * 16, w.MessageTooBigError),
    ("too deep", '{"type":"eof","x":[[[1]]]}', w.MessageTooBigError),
    ("too deep objects", '{"type":"eof","x":{"a":{"b":{}}}}', w.MessageTooBigError),
    ("very deep", "[" * 50000 + "]" * 50000, w.MessageTooBigError),
    ("too many keys", '{"type":"eof","a":1,"b":2,"c":3,"d":4,"e":5,"f":6}', w.MessageTooBigError),
    ("too many items", '{"type":"eof","a":[1,2,3,4,5]}', w.MessageTooBigError),
    ("long string", '{"type":"eof","a":"' + "x" * 21 + '"}', w.MessageTooBigError),
    ("long key", '{"type":"eof","' + "k" * 21 + '":1}', w.MessageTooBigError),
    ("long field", '{"type":"terminated","reason":"' + "x" * 21 + '"}', w.MessageTooBigError),
    ("cols over limit", '{"type":"resize","cols":101,"rows":1}', w.ValidationError),
    ("bad version", '{"type":"channel_welcome","protocol":"websh/2"}', w.UnsupportedVersionError),
    ("garbage version", '{"type":"channel_welcome","protocol":"ssh/1"}', w.UnsupportedVersionError),
    ("missing version", '{"type":"channel_welcome"}', w.UnsupportedVersionError),
]


@pytest.mark.parametrize(
    ("case", "payload", "error"), DECODE_ERRORS, ids=[c for c, _, _ in DECODE_ERRORS]
)
def test_decode_errors(case: str, payload: str | bytes, error: type[w.ProtocolError]) -> None:
    with pytest.raises(error) as info:
        w.decode(payload, SMALL)
    assert info.value.code == error.default_code
    assert 0 < len(info.value.reason.encode("ascii")) <= 123


def test_depth_scan_ignores_brackets_inside_strings() -> None:
    payload = '{"type":"terminated","reason":"[[[{{{\\"]]]"}'
    assert w.decode(payload, SMALL) == w.Terminated(reason='[[[{{{"]]]')


def test_version_checked_before_fields() -> None:
    # A websh/2 hello may look entirely different: the version wins over field errors.
    with pytest.raises(w.UnsupportedVersionError) as info:
        w.decode('{"type":"hello","protocol":"websh/2","totally":"new"}')
    assert "websh/1" in info.value.reason


def test_minor_versions_are_accepted() -> None:
    assert w.decode('{"type":"channel_welcome","protocol":"websh/1.7"}') == w.ChannelWelcome(
        protocol="websh/1.7"
    )


def test_accepts_bytearray_and_memoryview() -> None:
    assert w.decode(bytearray(b"\x01ab")) == w.Input(b"ab")
    assert w.decode(memoryview(b"\x03")) == w.Stdout(b"")


def test_encode_refuses_non_messages() -> None:
    with pytest.raises(w.UsageError):
        w.encode("hello")  # type: ignore[arg-type]
    with pytest.raises(w.UsageError):
        w.encode(w.Input("text"))  # type: ignore[arg-type]


def test_unknown_type_reason_is_a_bounded_sanitised_excerpt() -> None:
    with pytest.raises(w.UnknownMessageError) as info:
        w.decode('{"type":"\\u001b[31m' + "A" * 500 + '"}')
    assert "\x1b" not in info.value.reason
    assert len(info.value.reason) < 80


def test_safe_reason_and_excerpt() -> None:
    assert safe_reason("caf\u00e9\n") == "caf??"
    assert len(safe_reason("x" * 1000)) == 123
    assert excerpt("a'b\\c" + "z" * 100) == "'a?b?c" + "z" * 19 + "...'"
    assert excerpt(b"\xff\x00ok") == "'??ok'"
    assert excerpt(42) == "'int'"


def test_error_tree() -> None:
    for cls in (
        w.DecodeError,
        w.UnexpectedMessageError,
        w.ValidationError,
        w.UnknownMessageError,
        w.MessageTooBigError,
        w.UnsupportedVersionError,
    ):
        assert issubclass(cls, w.ProtocolError)
    for cls in (w.ProtocolError, w.ConnectionClosedError, w.UsageError):
        assert issubclass(cls, w.WebshError)
    error = w.ProtocolError("nope", w.CloseCode.FORBIDDEN)
    assert error.code == 4003
    assert repr(error) == "ProtocolError(code=4003, reason='nope')"


def test_close_codes_are_application_range() -> None:
    for code in w.CloseCode:
        assert code in (1000, 1001) or 4000 <= code <= 4999
    assert w.CloseCode.RETRY_LATER in w.RECONNECTABLE
    assert w.CloseCode.REVOKED not in w.RECONNECTABLE


@pytest.mark.parametrize("field", ["max_text_size", "max_depth", "max_cols"])
def test_limits_refuse_nonsense(field: str) -> None:
    with pytest.raises(w.UsageError):
        w.Limits(**{field: 0})  # type: ignore[arg-type]
    with pytest.raises(w.UsageError):
        w.Limits(max_binary_size=1)


ADVERSARIAL = {
    "escaped quotes": '"' + '\\"' * 32000,
    "unterminated strings": '"a' * 32000,
    "deep arrays": "[" * 65000,
    "deep objects": '{"a":' * 13000,
    "backslashes": '"' + "\\" * 65000,
    "many keys": "{" + ",".join(f'"k{i}":1' for i in range(6000)) + "}",
    "many items": '{"type":"eof","a":[' + ",".join("1" * 30000) + "]}",
}


@pytest.mark.parametrize("payload", ADVERSARIAL.values(), ids=list(ADVERSARIAL))
def test_adversarial_text_is_refused_quickly(payload: str) -> None:
    start = time.perf_counter()
    with pytest.raises(w.ProtocolError):
        w.decode(payload)
    assert time.perf_counter() - start < 0.5
