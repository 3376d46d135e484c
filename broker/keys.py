"""The broker's signing key: made once, kept 0600 beside the data, never logged.

It signs audit checkpoints (and later, anything else the broker must vouch for). Losing it
means old checkpoints can no longer be verified, so operations docs say to back it up.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from broker.errors import SettingsError

__all__ = ["load_or_create_key"]

KEY_BYTES = 32


def load_or_create_key(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return _create(path)
    except OSError as exc:
        raise SettingsError(f"secret_key_file: cannot read {path} ({exc.strerror})") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise SettingsError(f"secret_key_file: {path} does not hold a {KEY_BYTES}-byte hex key")
    return key


def _create(path: Path) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key(path)
    except OSError as exc:
        raise SettingsError(f"secret_key_file: cannot create {path} ({exc.strerror})") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    return key
