"""The agent's config and credential file (default ``/etc/corral/agent.toml``).

``tomllib`` is Python 3.11+, and the agent runs on 3.9, so this module carries a small,
strict reader and writer for exactly the TOML shapes the file uses: top-level strings,
integers, booleans and one-line string arrays, plus a ``[tags]`` table of strings. Anything
else is an error that names the file and line: a config file that is silently half-read
is worse than an agent that refuses to start.

The file holds the agent's credential secret, so it must never be written non-atomically
or with a mode wider than 0600, and the secret must never appear in a repr or a log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from agent.errors import ConfigError
from websh.record import field, frozen

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AgentConfig",
    "dump_config",
    "load_config",
    "parse_config",
    "parse_toml_subset",
    "save_config",
]

DEFAULT_CONFIG_PATH = "/etc/corral/agent.toml"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

    Value = Union[str, int, bool, list[str]]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*(?:_[0-9]+)*)")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_MAX_FILE_BYTES = 1 << 20


@frozen
class AgentConfig:
    """Everything the agent needs to dial the broker and decide whom it serves.

    ``deny_users`` always wins; when ``allow_users`` is non-empty only those users are
    served. ``pty_grace_seconds`` is how long a terminal survives without a broker
    attached before it is hung up.
    """

    broker_url: str
    agent_id: str
    secret: str = field(repr=False)
    name: str = ""
    ca_file: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    allow_users: tuple[str, ...] = ()
    deny_users: tuple[str, ...] = ()
    pty_grace_seconds: int = 300

    def allows_user(self, username: str) -> bool:
        """True when the config lets the agent act as ``username``."""
        if username in self.deny_users:
            return False
        return not self.allow_users or username in self.allow_users


# ---------------------------------------------------------------------------- reading


class _Line:
    """A cursor over one line of the file, raising errors that name file and line."""

    def __init__(self, text: str, source: str, lineno: int) -> None:
        self.text = text
        self.pos = 0
        self.source = source
        self.lineno = lineno

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}:{self.lineno}: {message}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect_end(self) -> None:
        self.skip_ws()
        if self.peek() not in ("", "#"):
            raise self.error(f"unexpected text {self.text[self.pos :]!r}")

    def key(self) -> str:
        self.skip_ws()
        if self.peek() == '"':
            return self.string()
        match = _BARE_KEY.match(self.text, self.pos)
        if not match:
            raise self.error("expected a key")
        self.pos = match.end()
        return match.group()

    def string(self) -> str:
        quote = self.peek()
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.error("unterminated string")
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(out)
            if char == "\\" and quote == '"':
                out.append(self._escape())
            elif (ord(char) < 0x20 and char != "\t") or char == "\x7f":
                raise self.error("control character in string")
            else:
                out.append(char)

    def _escape(self) -> str:
        code = self.peek()
        self.pos += 1
        if code in _ESCAPES:
            return _ESCAPES[code]
        if code in ("u", "U"):
            width = 4 if code == "u" else 8
            digits = self.text[self.pos : self.pos + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise self.error(f"bad \\{code} escape")
            self.pos += width
            point = int(digits, 16)
            if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
                raise self.error(f"bad \\{code} escape")
            return chr(point)
        raise self.error(f"unknown escape \\{code}")

    def value(self) -> Value:
        self.skip_ws()
        char = self.peek()
        if char in ('"', "'"):
            return self.string()
        if char == "[":
            return self.array()
        for word, result in (("true", True), ("false", False)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return result
        match = _INT.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return int(match.group().replace("_", ""))
        raise self.error("expected a string, integer, boolean or array of strings")

    def array(self) -> list[str]:
        self.pos += 1
        items: list[str] = []
        while True:
            self.skip_ws()
            char = self.peek()
            if char == "]":
                self.pos += 1
                return items
            if char not in ('"', "'"):
                raise self.error("arrays hold strings only and must fit on one line")
            items.append(self.string())
            self.skip_ws()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                raise self.error("expected ',' or ']' in array")


def parse_toml_subset(text: str, source: str = "<config>") -> dict[str, object]:
    """Parse the TOML subset into a dict; ``[table]`` sections become nested dicts."""
    root: dict[str, object] = {}
    table: dict[str, object] = root
    seen_tables: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = _Line(raw, source, lineno)
        line.skip_ws()
        if line.peek() in ("", "#"):
            continue
        if line.peek() == "[":
            line.pos += 1
            name = line.key()
            line.skip_ws()
            if line.peek() != "]":
                raise line.error("expected ']' after table name")
            line.pos += 1
            line.expect_end()
            if name in seen_tables or name in root:
                raise line.error(f"table [{name}] defined twice")
            seen_tables.add(name)
            table = {}
            root[name] = table
            continue
        key = line.key()
        line.skip_ws()
        if line.peek() != "=":
            raise line.error(f"expected '=' after key {key!r}")
        line.pos += 1
        value = line.value()
        line.expect_end()
        if key in table:
            raise line.error(f"key {key!r} defined twice")
        table[key] = value
    return root


def _field_error(source: str, text: str, key: str, message: str) -> ConfigError:
    """Name the line that defines ``key`` (top-level) when it can be found."""
    pattern = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if pattern.match(raw):
            return ConfigError(f"{source}:{lineno}: {key}: {message}")
    return ConfigError(f"{source}: {key}: {message}")


def parse_config(text: str, source: str = "<config>") -> AgentConfig:
    """Validate parsed TOML into an ``AgentConfig``; unknown keys are errors."""
    data = parse_toml_subset(text, source)
    strings = {"broker_url", "agent_id", "secret", "name", "ca_file"}
    lists = {"allow_users", "deny_users"}
    known = strings | lists | {"pty_grace_seconds", "tags"}
    for key in data:
        if key not in known:
            raise _field_error(source, text, key, "unknown setting")
    for key in strings:
        if key in data and not isinstance(data[key], str):
            raise _field_error(source, text, key, "must be a string")
    for key in lists:
        if key in data and not isinstance(data[key], list):
            raise _field_error(source, text, key, "must be an array of strings")
    for key in ("broker_url", "agent_id", "secret"):
        if not data.get(key):
            raise ConfigError(f"{source}: missing required setting {key!r}")
    grace = data.get("pty_grace_seconds", 300)
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 0:
        raise _field_error(source, text, "pty_grace_seconds", "must be a non-negative integer")
    tags = data.get("tags", {})
    if not isinstance(tags, dict):
        raise _field_error(source, text, "tags", "must be a [tags] table")
    for tag, tag_value in tags.items():
        if not isinstance(tag_value, str):
            raise ConfigError(f"{source}: [tags] {tag}: must be a string")

    def _str(key: str) -> str:
        value = data.get(key, "")
        assert isinstance(value, str)
        return value

    def _list(key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        assert isinstance(value, list)
        return tuple(value)

    return AgentConfig(
        broker_url=_str("broker_url"),
        agent_id=_str("agent_id"),
        secret=_str("secret"),
        name=_str("name"),
        ca_file=_str("ca_file") or None,
        tags={str(k): str(v) for k, v in tags.items()},
        allow_users=_list("allow_users"),
        deny_users=_list("deny_users"),
        pty_grace_seconds=grace,
    )


def load_config(path: str = DEFAULT_CONFIG_PATH) -> AgentConfig:
    """Read and validate the config file at ``path``."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from exc
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(f"{path}: config file is larger than {_MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: config is not valid UTF-8") from exc
    return parse_config(text, path)


# ---------------------------------------------------------------------------- writing


def _quote(value: str) -> str:
    out = ['"']
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 0x20 or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _quote(key)


def dump_config(config: AgentConfig) -> str:
    """Render ``config`` in the TOML subset; ``parse_config`` reads it back unchanged."""
    lines = [
        "# Corral agent configuration. Holds this host's credential: keep mode 0600.",
        f"broker_url = {_quote(config.broker_url)}",
        f"agent_id = {_quote(config.agent_id)}",
        f"secret = {_quote(config.secret)}",
        f"name = {_quote(config.name)}",
    ]
    if config.ca_file:
        lines.append(f"ca_file = {_quote(config.ca_file)}")
    for key, users in (("allow_users", config.allow_users), ("deny_users", config.deny_users)):
        lines.append(f"{key} = [{', '.join(_quote(u) for u in users)}]")
    lines.append(f"pty_grace_seconds = {int(config.pty_grace_seconds)}")
    lines.append("")
    lines.append("[tags]")
    for tag in sorted(config.tags):
        lines.append(f"{_key(tag)} = {_quote(config.tags[tag])}")
    return "\n".join(lines) + "\n"


def save_config(config: AgentConfig, path: str = DEFAULT_CONFIG_PATH) -> None:
    """Write ``config`` atomically with mode 0600; a new parent directory gets 0700.

    The temporary file is created 0600 from the start (never chmod-ed afterwards), fsynced,
    renamed over ``path`` and the directory fsynced, so a crash leaves the old file or the
    new one, never a torn or world-readable secret.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
            os.chmod(directory, 0o700)
        tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            data = dump_config(config).encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write config: {exc.strerror or exc}") from exc
