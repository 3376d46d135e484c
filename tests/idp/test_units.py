"""Pure pieces of idp: the secret box, the rate limiter, recovery-code shapes."""

from __future__ import annotations

import pytest

from broker.errors import CorralError
from idp.ratelimit import RateLimiter
from idp.recovery import looks_like_recovery_code
from idp.secretbox import SecretBox, derive_key
from tests.conftest import TEST_KEY


def test_secretbox_round_trip_and_binding() -> None:
    box = SecretBox(TEST_KEY, "totp")
    sealed = box.seal(b"JBSWY3DPEHPK3PXP", bound_to="factor-a")
    assert b"JBSWY3DPEHPK3PXP" not in sealed.encode()
    assert box.open(sealed, bound_to="factor-a") == b"JBSWY3DPEHPK3PXP"
    assert box.seal(b"x", bound_to="a") != box.seal(b"x", bound_to="a")  # fresh nonce
    with pytest.raises(CorralError, match="cannot be decrypted"):
        box.open(sealed, bound_to="factor-b")  # copied onto another row
    with pytest.raises(CorralError):
        SecretBox(bytes(32), "totp").open(sealed, bound_to="factor-a")  # another broker key
    with pytest.raises(CorralError):
        box.open("v1:" + "A" * 40, bound_to="factor-a")
    with pytest.raises(CorralError):
        box.open("v9:abc", bound_to="factor-a")


def test_subkeys_differ_by_purpose_and_from_the_broker_key() -> None:
    a, b = derive_key(TEST_KEY, "one"), derive_key(TEST_KEY, "two")
    assert len(a) == 32 and a != b and TEST_KEY not in (a, b)


def test_rate_limiter_window_and_bound() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 60, clock=lambda: now[0], max_keys=3)
    assert limiter.hit("k") == 0 and limiter.hit("k") == 0
    assert limiter.hit("k") == 60
    now[0] = 30
    assert limiter.hit("k") == 30
    now[0] = 60.5
    assert limiter.hit("k") == 0
    for key in "abcd":
        limiter.hit(key)
    assert "k" not in limiter._hits and len(limiter._hits) == 3


@pytest.mark.parametrize(
    ("code", "expected"),
    [("abcde-fghjk", True), ("ABCDE FGHJK", True), ("123456", False), ("1234567890", False)],
)
def test_recovery_code_shape(code: str, expected: bool) -> None:
    assert looks_like_recovery_code(code) is expected
