"""Where the client commands find the broker and the token: named profiles in
``$XDG_CONFIG_HOME/corral/credentials.toml`` (default ``~/.config``), overridden by
``CORRAL_URL`` / ``CORRAL_TOKEN`` / ``CORRAL_CA_FILE`` for scripts and CI.

The file holds bearer tokens, so it is written 0600 inside a 0700 directory, atomically
(a crash never leaves half a file), and a file other users can read is refused rather
than used, the way ssh treats a private key. Tokens never reach the command line, the
process list or any output.

Layout::

    current = "work"

    [profiles.work]
    url = "https://corral.example.com"
    token = "crlpat_..."
    token_id = "..."          # set when `corral login` minted it: logout revokes it
    ca_file = ""
    user = "alice@example.com"
    workspace = "default"
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cli.errors import EXIT_AUTH, CliError

__all__ = [
    "DEFAULT_PROFILE",
    "DEFAULT_URL",
    "Credentials",
    "Profile",
    "credentials_path",
    "resolve",
]

DEFAULT_PROFILE = "default"
DEFAULT_URL = "http://127.0.0.1:7080"
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEYS = ("url", "token", "token_id", "ca_file", "user", "workspace")


@dataclass
class Profile:
    name: str
    url: str
    token: str = field(repr=False)
    token_id: str = ""
    ca_file: str = ""
    user: str = ""
    workspace: str = ""

    @property
    def minted(self) -> bool:
        """True when `corral login` created the token, so `logout` may revoke it."""
        return bool(self.token_id)


def credentials_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "corral" / "credentials.toml"


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.match(name):
        raise CliError(
            f"invalid profile name {name[:64]!r}",
            "use letters, digits, '.', '_' or '-' (up to 64)",
            exit_code=2,
        )
    return name


@dataclass
class Credentials:
    """The whole file: the profiles and which one is current."""

    path: Path
    current: str = DEFAULT_PROFILE
    profiles: dict[str, Profile] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        if not path.exists():
            return cls(path)
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CliError(
                f"{path} can be read by other users",
                f"run `chmod 600 {path}` (and log in again if you did not expect this)",
            )
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CliError(
                f"cannot read {path}: {str(exc)[:120]}", "fix or delete the file and log in again"
            ) from None
        creds = cls(path, str(data.get("current", DEFAULT_PROFILE)))
        table = data.get("profiles", {})
        if not isinstance(table, dict):
            raise CliError(f"{path}: [profiles] is not a table", "delete the file and log in again")
        for name, entry in table.items():
            if not isinstance(entry, dict):
                continue
            values = {key: str(entry.get(key, "")) for key in _KEYS}
            creds.profiles[name] = Profile(name=name, **values)
        return creds

    def save(self) -> None:
        """Write the file 0600 in a 0700 directory, atomically."""
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        lines = [f"current = {_toml(self.current)}", ""]
        for name, profile in sorted(self.profiles.items()):
            lines.append(f"[profiles.{_toml(name)}]")
            values = asdict(profile)
            for key in _KEYS:
                lines.append(f"{key} = {_toml(values[key])}")
            lines.append("")
        fd, temp = tempfile.mkstemp(prefix=".credentials.", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write("\n".join(lines))
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _toml(value: str) -> str:
    """A TOML basic string: JSON's escapes (\\" \\\\ \\n \\uXXXX) are all valid TOML."""
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Target:
    """What one command talks to: the broker URL, the token, and where they came from."""

    url: str
    token: str = field(repr=False)
    ca_file: str
    profile: str
    source: str  # "env" or "profile"


def selected_profile(explicit: str | None, env: Mapping[str, str], creds: Credentials) -> str:
    return check_profile_name(explicit or env.get("CORRAL_PROFILE") or creds.current)


def resolve(
    *,
    profile: str | None,
    url: str | None,
    ca_file: str | None,
    env: Mapping[str, str],
) -> Target:
    """The broker and token for a command: CORRAL_TOKEN wins over the profile's token."""
    creds = Credentials.load(credentials_path(env))
    name = selected_profile(profile, env, creds)
    saved = creds.profiles.get(name)
    token = env.get("CORRAL_TOKEN", "").strip()
    if token:
        return Target(
            url=url or env.get("CORRAL_URL") or (saved.url if saved else DEFAULT_URL),
            token=token,
            ca_file=ca_file or env.get("CORRAL_CA_FILE") or (saved.ca_file if saved else ""),
            profile=name,
            source="env",
        )
    if saved is None or not saved.token:
        raise CliError(
            f"not logged in (profile {name!r})",
            "run `corral login URL`, or set CORRAL_URL and CORRAL_TOKEN",
            exit_code=EXIT_AUTH,
        )
    return Target(
        url=url or env.get("CORRAL_URL") or saved.url,
        token=saved.token,
        ca_file=ca_file or env.get("CORRAL_CA_FILE") or saved.ca_file,
        profile=name,
        source="profile",
    )
