"""Config file: round-trip, strict errors naming file and line, atomic 0600 writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.config import AgentConfig, dump_config, load_config, parse_config, save_config
from agent.errors import ConfigError

FULL = AgentConfig(
    broker_url="https://broker.example:8443",
    agent_id="ag_123",
    secret='s3cr"et\\with\nodd chars',
    name="web-1",
    ca_file="/etc/corral/ca.pem",
    tags={"env": "prod", "team.name": "infra ops"},
    allow_users=("deploy", "alice"),
    deny_users=("root",),
    pty_grace_seconds=120,
)


def test_round_trip_through_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "corral" / "agent.toml"
    save_config(FULL, str(path))
    assert load_config(str(path)) == FULL


def test_defaults() -> None:
    config = parse_config('broker_url = "wss://b"\nagent_id = "a"\nsecret = "s"\n')
    assert config.pty_grace_seconds == 300
    assert config.deny_users == ()
    assert config.allow_users == ()
    assert config.tags == {}
    assert config.ca_file is None
    assert config.name == ""


def test_file_is_0600_and_new_parent_0700(tmp_path: Path) -> None:
    path = tmp_path / "new" / "agent.toml"
    os.umask(0o022)
    save_config(FULL, str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    save_config(FULL, str(path))  # overwrite keeps the mode and leaves no temp files
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["agent.toml"]


def test_secret_not_in_repr() -> None:
    assert "s3cr" not in repr(FULL)


def test_hand_written_subset() -> None:
    text = """
# comment
broker_url = 'wss://b'   # literal string
agent_id = "a"
secret = "\\u00e9"
deny_users = [ "root", 'toor', ]
pty_grace_seconds = 1_000

[tags]
"k k" = "v"
"""
    config = parse_config(text, "x.toml")
    assert config.secret == "\u00e9"
    assert config.deny_users == ("root", "toor")
    assert config.pty_grace_seconds == 1000
    assert config.tags == {"k k": "v"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('broker_url = "x\nagent_id = "a"', "agent.toml:1: unterminated string"),
        ('broker_url = "x"\nagent_id = 1.5', "agent.toml:2: unexpected text"),
        ('broker_url = "x"\nbroker_url = "y"', "agent.toml:2: key 'broker_url' defined twice"),
        ('broker_url = "x"\ncolour = "red"', "agent.toml:2: colour: unknown setting"),
        ('broker_url = "x"\nallow_users = [1]', "agent.toml:2: arrays hold strings only"),
        ('broker_url = "x"\nallow_users = ["a",', "agent.toml:2: arrays hold strings only"),
        ('broker_url = "x"\nagent_id = "a"\nsecret = "s"\npty_grace_seconds = -1',
         "agent.toml:4: pty_grace_seconds: must be a non-negative integer"),
        ('broker_url = "x"\nagent_id = "a"\nsecret = "s"\nname = true',
         "agent.toml:4: name: must be a string"),
        ('broker_url = "x"\nagent_id = "a"', "agent.toml: missing required setting 'secret'"),
        ('[tags]\n[tags]', "agent.toml:2: table [tags] defined twice"),
        ('secret = "\\q"', "agent.toml:1: unknown escape \\q"),
        ("just words", "agent.toml:1: expected '=' after key 'just'"),
    ],
)  # fmt: skip
def test_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agent.toml")
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(str(tmp_path / "nope.toml"))


def test_dump_is_parseable_by_tomllib() -> None:
    import tomllib  # the test suite runs on 3.11+: check we emit real TOML

    data = tomllib.loads(dump_config(FULL))
    assert data["secret"] == FULL.secret
    assert data["tags"] == dict(FULL.tags)


def test_allows_user() -> None:
    assert not FULL.allows_user("root")
    assert FULL.allows_user("deploy")
    assert not FULL.allows_user("mallory")
