from __future__ import annotations

import re
from pathlib import Path

import pytest

from broker.errors import SettingsError
from broker.settings import Settings, load_settings


def test_defaults_are_the_embedded_setup(tmp_path: Path) -> None:
    settings = load_settings({}, cwd=tmp_path)
    assert settings.data_dir == tmp_path / ".corral"
    assert settings.effective_database_url == (
        f"sqlite+aiosqlite:///{tmp_path / '.corral' / 'corral.db'}"
    )
    assert settings.port == 7080
    assert not settings.tls


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text('port = 9000\nlog_level = "debug"\n')
    settings = load_settings({"CORRAL_PORT": "9100"}, cwd=tmp_path)
    assert settings.port == 9100
    assert settings.log_level == "debug"


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text('database_url = "postgresql://u@db/corral"\n')
    settings = load_settings({"CORRAL_CONFIG": str(config)}, cwd=tmp_path)
    assert settings.effective_database_url == "postgresql+asyncpg://u@db/corral"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings({}, cwd=tmp_path)
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CORRAL_PORTT": "1"}, "CORRAL_PORTT: unknown setting"),
        ({"CORRAL_PORT": "http"}, "CORRAL_PORT: expected an integer between 0 and 65535"),
        ({"CORRAL_PORT": "70000"}, "CORRAL_PORT: expected an integer"),
        ({"CORRAL_LOG_LEVEL": "loud"}, "CORRAL_LOG_LEVEL: expected one of"),
        ({"CORRAL_DATABASE_URL": "mysql://x/y"}, "CORRAL_DATABASE_URL: unsupported database"),
        ({"CORRAL_DATABASE_URL": "nonsense"}, "CORRAL_DATABASE_URL: expected a URL"),
        ({"CORRAL_PUBLIC_URL": "ftp://x"}, "CORRAL_PUBLIC_URL: expected an http(s) URL"),
        ({"CORRAL_REDIS_URL": "http://x"}, "CORRAL_REDIS_URL: expected a redis://"),
        ({"CORRAL_TLS_CERT_FILE": "/c.pem"}, "CORRAL_TLS_KEY_FILE: set both tls_cert_file"),
        ({"CORRAL_CONFIG": "/nonexistent/corral.toml"}, "CORRAL_CONFIG: config file"),
    ],
)
def test_bad_environment_names_the_setting(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match="^" + re.escape(message)):
        load_settings(environ, cwd=tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1\n", "corral.toml: prot: unknown setting"),
        ("port = true\n", "corral.toml: port: expected an integer"),
        ('port = "x"\n', "corral.toml: port: expected an integer"),
        ("port = \n", "invalid TOML"),
        ("[section]\nport = 1\n", "corral.toml: section: unknown setting"),
    ],
)
def test_bad_file_names_the_setting(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "corral.toml").write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings({}, cwd=tmp_path)


def test_error_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"CORRAL_SESSION_GRACE_SECONDS": "-5"}, cwd=tmp_path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("CORRAL_SESSION_GRACE_SECONDS:")


def test_every_field_has_a_parser() -> None:
    # load_settings asserts this at import; a new field without validation cannot ship.
    assert Settings().port == 7080


def test_policy_settings(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "CORRAL_POLICY_BACKEND": "Casbin",
            "CORRAL_POLICY_FILE": "team/policy.csv",
            "CORRAL_CASBIN_MODEL_FILE": "/etc/corral/model.conf",
            "CORRAL_POLICY_WATCH_SECONDS": "0",
        },
        cwd=tmp_path,
    )
    assert settings.policy_backend == "casbin"
    assert settings.effective_policy_file == tmp_path / "team" / "policy.csv"
    assert settings.effective_casbin_model_file == Path("/etc/corral/model.conf")
    assert settings.policy_watch_seconds == 0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CORRAL_POLICY_BACKEND": "opa"}, "CORRAL_POLICY_BACKEND: expected one of polar, casbin"),
        ({"CORRAL_POLICY_FILE": ""}, "CORRAL_POLICY_FILE: expected a path"),
        ({"CORRAL_POLICY_WATCH_SECONDS": "-1"}, "CORRAL_POLICY_WATCH_SECONDS: expected an integer"),
        ({"CORRAL_CASBIN_MODEL_FILE": "m.conf"}, "CORRAL_CASBIN_MODEL_FILE: a Casbin model needs"),
    ],
)
def test_bad_policy_settings(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(environ, cwd=tmp_path)
