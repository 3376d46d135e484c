"""User resolution and the host's allow/deny lists."""

from __future__ import annotations

import os
import pwd

import pytest

from agent.errors import PrivilegeError, UnknownUser, UserForbidden
from agent.users import UnixUser, UserPolicy, needs_switch, resolve_user


def fake_entry(name: str, uid: int, shell: str = "", home: str = "") -> pwd.struct_passwd:
    return pwd.struct_passwd((name, "x", uid, uid, "", home, shell))


def test_resolves_root() -> None:
    root = resolve_user("root")
    assert root.uid == 0
    assert root.home
    assert root.shell
    assert 0 in root.groups


def test_unknown_and_invalid() -> None:
    with pytest.raises(UnknownUser):
        resolve_user("no-such-user-corral")
    for bad in ("", "a/b", "a\x00b", "x" * 300):
        with pytest.raises(UnknownUser):
            resolve_user(bad)


def test_deny_and_allow() -> None:
    with pytest.raises(UserForbidden, match="deny_users"):
        resolve_user("root", UserPolicy.from_lists(deny=["root"]))
    with pytest.raises(UserForbidden, match="allow_users"):
        resolve_user("root", UserPolicy.from_lists(allow=["deploy"]))
    assert resolve_user("root", UserPolicy.from_lists(allow=["root"])).uid == 0


def test_uid0_alias_refused_when_root_denied() -> None:
    def getpwnam(name: str) -> pwd.struct_passwd:
        return fake_entry(name, 0, "/bin/bash", "/root")

    with pytest.raises(UserForbidden, match="uid 0"):
        resolve_user("toor", UserPolicy(deny=("root",)), getpwnam=getpwnam)


def test_empty_shell_and_home_fallbacks() -> None:
    user = resolve_user(
        "svc", getpwnam=lambda n: fake_entry(n, 1234), getgrouplist=lambda n, g: [g, 27]
    )
    assert user == UnixUser("svc", 1234, 1234, "/", "/bin/sh", (1234, 27))


def test_needs_switch() -> None:
    user = UnixUser("u", 1000, 1000, "/", "/bin/sh")
    assert needs_switch(user, 0)
    assert not needs_switch(user, 1000)
    with pytest.raises(PrivilegeError):
        needs_switch(user, 1001)
    assert os.geteuid() >= 0
