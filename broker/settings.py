"""The broker's one settings object.

Read once at start-up from an optional ``corral.toml`` and from ``CORRAL_*`` environment
variables (the environment wins), validated, frozen and passed down. Nothing else in the
broker reads the environment: collaborators receive the values they need.

An unknown key or a bad value raises :class:`SettingsError` whose message is one line that
names the setting, so a typo in a deployment stops start-up instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from broker.errors import SettingsError

__all__ = ["Settings", "load_settings"]

ENV_PREFIX = "CORRAL_"
CONFIG_ENV = "CORRAL_CONFIG"
LOG_LEVELS = ("debug", "info", "warning", "error")
POLICY_BACKENDS = ("polar", "casbin")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


@dataclass(frozen=True)
class Settings:
    """Everything the broker can be told. Defaults give the embedded single-machine setup."""

    data_dir: Path = Path(".corral")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 7080
    public_url: str = ""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    redis_url: str = ""
    log_level: str = "info"
    secret_key_file: Path | None = None
    session_grace_seconds: int = 300
    registration_token_ttl_seconds: int = 3600
    recording_retention_days: int = 365
    audit_retention_days: int = 365
    # Identity (idp/): browser sessions, lockout, mail and SMS delivery of one-time codes.
    session_idle_minutes: int = 30
    session_absolute_hours: int = 12
    login_max_failures: int = 5
    login_lockout_seconds: int = 60
    login_rate_per_minute: int = 10
    default_workspace: str = "default"
    webauthn_rp_id: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = ""
    smtp_starttls: bool = False
    sms_webhook_url: str = ""
    #: `corral up` also runs an agent for this machine (a newcomer's first terminal).
    local_agent: bool = True
    #: CA bundle that signed ``tls_cert_file``, for the local agent (default: the cert
    #: itself, which is right for a self-signed certificate).
    tls_ca_file: Path | None = None
    policy_backend: str = "polar"
    policy_file: Path | None = None
    casbin_model_file: Path | None = None
    policy_watch_seconds: int = 2
    #: The event loop `corral up` runs on: ``auto`` (uvloop when installed), ``uvloop``
    #: (required) or ``asyncio`` (the standard library's; see broker/serving.py).
    event_loop: str = "auto"

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy async URL: the embedded SQLite file unless one was given."""
        if not self.database_url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'corral.db').resolve()}"
        return normalise_database_url(self.database_url)

    @property
    def effective_secret_key_file(self) -> Path:
        return self.secret_key_file or self.data_dir / "secret.key"

    @property
    def effective_policy_file(self) -> Path:
        """The policy in force: the configured file, or the default shipped in the package."""
        if self.policy_file is not None:
            return self.policy_file
        from policies.casbin_backend import DEFAULT_POLICY as CASBIN_POLICY
        from policies.polar_backend import DEFAULT_POLICY as POLAR_POLICY

        return CASBIN_POLICY if self.policy_backend == "casbin" else POLAR_POLICY

    @property
    def effective_casbin_model_file(self) -> Path:
        from policies.casbin_backend import DEFAULT_MODEL

        return self.casbin_model_file or DEFAULT_MODEL

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def effective_rp_id(self) -> str:
        """The WebAuthn relying-party id: the public URL's host unless set."""
        return self.webauthn_rp_id or (urlsplit(self.effective_public_url).hostname or "")

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"


def normalise_database_url(url: str) -> str:
    """Accept the URLs people paste (``postgresql://``, ``sqlite:///``) and pick async drivers."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("expected a URL such as postgresql://user@host/db or sqlite:///path")
    drivers = {
        "postgres": "postgresql+asyncpg",
        "postgresql": "postgresql+asyncpg",
        "postgresql+asyncpg": "postgresql+asyncpg",
        "sqlite": "sqlite+aiosqlite",
        "sqlite+aiosqlite": "sqlite+aiosqlite",
    }
    if scheme not in drivers:
        raise ValueError(f"unsupported database scheme {scheme!r}; use postgresql:// or sqlite://")
    return f"{drivers[scheme]}://{rest}"


def _parse_int(low: int, high: int) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise ValueError(f"expected an integer between {low} and {high}")
        try:
            value = int(raw) if isinstance(raw, int | str) else None
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ValueError(f"expected an integer between {low} and {high}, got {raw!r}")
        return value

    return parse


def _parse_str(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {raw!r}")
    return raw


def _parse_path(raw: object) -> Path:
    text = _parse_str(raw)
    if not text:
        raise ValueError("expected a path, got an empty string")
    return Path(text).expanduser()


def _parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = _parse_str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _parse_log_level(raw: object) -> str:
    text = _parse_str(raw).lower()
    if text not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return text


def _parse_database_url(raw: object) -> str:
    text = _parse_str(raw)
    if text:
        normalise_database_url(text)
    return text


def _parse_url(raw: object) -> str:
    text = _parse_str(raw)
    if text and (urlsplit(text).scheme not in ("http", "https") or not urlsplit(text).netloc):
        raise ValueError(f"expected an http(s) URL, got {raw!r}")
    return text


def _parse_redis_url(raw: object) -> str:
    text = _parse_str(raw)
    if text and urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected a redis:// or rediss:// URL")
    return text


def _parse_backend(raw: object) -> str:
    text = _parse_str(raw).lower()
    if text not in POLICY_BACKENDS:
        raise ValueError(f"expected one of {', '.join(POLICY_BACKENDS)}, got {raw!r}")
    return text


def _parse_event_loop(raw: object) -> str:
    text = _parse_str(raw).lower()
    if text not in EVENT_LOOPS:
        raise ValueError(f"expected one of {', '.join(EVENT_LOOPS)}, got {raw!r}")
    return text


_PARSERS: dict[str, Callable[[object], Any]] = {
    "data_dir": _parse_path,
    "database_url": _parse_database_url,
    "host": _parse_str,
    "port": _parse_int(0, 65535),
    "public_url": _parse_url,
    "tls_cert_file": _parse_path,
    "tls_key_file": _parse_path,
    "redis_url": _parse_redis_url,
    "log_level": _parse_log_level,
    "secret_key_file": _parse_path,
    "session_grace_seconds": _parse_int(0, 86400),
    "registration_token_ttl_seconds": _parse_int(60, 30 * 86400),
    "recording_retention_days": _parse_int(1, 36500),
    "audit_retention_days": _parse_int(1, 36500),
    "session_idle_minutes": _parse_int(1, 7 * 24 * 60),
    "session_absolute_hours": _parse_int(1, 30 * 24),
    "login_max_failures": _parse_int(1, 100),
    "login_lockout_seconds": _parse_int(1, 3600),
    "login_rate_per_minute": _parse_int(1, 10000),
    "default_workspace": _parse_str,
    "webauthn_rp_id": _parse_str,
    "smtp_host": _parse_str,
    "smtp_port": _parse_int(1, 65535),
    "smtp_from": _parse_str,
    "smtp_starttls": _parse_bool,
    "sms_webhook_url": _parse_url,
    "local_agent": _parse_bool,
    "tls_ca_file": _parse_path,
    "policy_backend": _parse_backend,
    "policy_file": _parse_path,
    "casbin_model_file": _parse_path,
    "policy_watch_seconds": _parse_int(0, 3600),
    "event_loop": _parse_event_loop,
}
assert set(_PARSERS) == {f.name for f in dataclasses.fields(Settings)}


def _apply(values: dict[str, Any], key: str, raw: object, label: str) -> None:
    parser = _PARSERS.get(key)
    if parser is None:
        raise SettingsError(f"{label}: unknown setting")
    try:
        values[key] = parser(raw)
    except ValueError as exc:
        raise SettingsError(f"{label}: {exc}") from None


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"{CONFIG_ENV}: config file {path} does not exist") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML ({exc})") from None


def load_settings(environ: Mapping[str, str] | None = None, *, cwd: Path | None = None) -> Settings:
    """Build the settings from ``corral.toml`` (if any) and then ``CORRAL_*`` variables.

    ``environ`` defaults to the process environment; tests pass their own mapping.
    """
    env = dict(os.environ if environ is None else environ)
    base = cwd or Path.cwd()
    values: dict[str, Any] = {}

    config_path: Path | None = None
    if CONFIG_ENV in env:
        config_path = Path(env[CONFIG_ENV]).expanduser()
    elif (base / "corral.toml").is_file():
        config_path = base / "corral.toml"
    if config_path is not None:
        for key, raw in _read_toml(config_path).items():
            _apply(values, key, raw, f"{config_path.name}: {key}")

    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        _apply(values, name[len(ENV_PREFIX) :].lower(), raw, name)

    settings = Settings(**values)
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise SettingsError(
            "CORRAL_TLS_KEY_FILE: set both tls_cert_file and tls_key_file, or neither"
        )
    if settings.casbin_model_file is not None and settings.policy_backend != "casbin":
        raise SettingsError(
            "CORRAL_CASBIN_MODEL_FILE: a Casbin model needs CORRAL_POLICY_BACKEND=casbin"
        )
    for name in ("policy_file", "casbin_model_file"):
        path = getattr(settings, name)
        if path is not None and not path.is_absolute():
            settings = dataclasses.replace(settings, **{name: base / path})
    if not settings.data_dir.is_absolute():
        settings = dataclasses.replace(settings, data_dir=(base / settings.data_dir))
    return settings
