"""Resolve the Unix user a terminal or command runs as.

The broker names a user ("deploy", "alice"); this module turns that into the uid, gid,
supplementary groups, home and login shell the spawner needs, and refuses unknown users
and users the host's own config forbids. The host config is the last word: even a broker
that was compromised or misconfigured cannot get a shell as a user in ``deny_users``.

This module must never spawn processes or change the agent's own credentials.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Sequence

from agent.errors import PrivilegeError, UnknownUser, UserForbidden
from websh.record import frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

__all__ = [
    "UnixUser",
    "UserPolicy",
    "current_user",
    "needs_switch",
    "resolve_user",
]

_MAX_NAME = 256


@frozen
class UnixUser:
    """A resolved Unix account; ``groups`` are the supplementary gids (initgroups)."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str
    groups: tuple[int, ...] = ()


@frozen
class UserPolicy:
    """Which users the host allows: ``deny`` always wins; an empty ``allow`` allows all."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    @classmethod
    def from_lists(cls, allow: Sequence[str] = (), deny: Sequence[str] = ()) -> UserPolicy:
        return cls(tuple(allow), tuple(deny))

    def check(self, name: str) -> None:
        """Raise ``UserForbidden`` unless ``name`` may be used."""
        if name in self.deny:
            raise UserForbidden(f"user {name!r} is forbidden on this host (deny_users)")
        if self.allow and name not in self.allow:
            raise UserForbidden(f"user {name!r} is not in this host's allow_users")


def _from_pwd(entry: pwd.struct_passwd, getgrouplist: Callable[[str, int], list[int]]) -> UnixUser:
    try:
        groups = tuple(getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError:
        groups = (entry.pw_gid,)
    return UnixUser(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        home=entry.pw_dir or "/",
        # login(1) and sshd treat an empty shell field as /bin/sh.
        shell=entry.pw_shell or "/bin/sh",
        groups=groups,
    )


def resolve_user(
    name: str,
    policy: UserPolicy | None = None,
    *,
    getpwnam: Callable[[str], pwd.struct_passwd] = pwd.getpwnam,
    getgrouplist: Callable[[str, int], list[int]] = os.getgrouplist,
) -> UnixUser:
    """Look ``name`` up; raise ``UnknownUser`` or ``UserForbidden`` when it cannot be used.

    The policy is checked against both the requested name and the resolved name, so an
    alias in the password database cannot sidestep ``deny_users``; uid 0 under any name
    is refused when ``root`` is denied.
    """
    if not name or len(name) > _MAX_NAME or "\x00" in name or "/" in name or ":" in name:
        raise UnknownUser(f"invalid user name {name!r}")
    policy = policy or UserPolicy()
    policy.check(name)
    try:
        entry = getpwnam(name)
    except KeyError:
        raise UnknownUser(f"no such user {name!r}") from None
    user = _from_pwd(entry, getgrouplist)
    policy.check(user.name)
    if user.uid == 0 and "root" in policy.deny:
        raise UserForbidden(f"user {name!r} has uid 0 and root is forbidden (deny_users)")
    return user


def current_user(
    *,
    getpwuid: Callable[[int], pwd.struct_passwd] = pwd.getpwuid,
    getgrouplist: Callable[[str, int], list[int]] = os.getgrouplist,
) -> UnixUser:
    """The user the agent itself runs as."""
    try:
        entry = getpwuid(os.geteuid())
    except KeyError:
        raise UnknownUser(f"the agent's uid {os.geteuid()} has no passwd entry") from None
    return _from_pwd(entry, getgrouplist)


def needs_switch(user: UnixUser, euid: int) -> bool:
    """Whether the child must drop privileges to ``user``; refuse what cannot work.

    Root may become anyone. A non-root agent may only run things as itself: it cannot
    switch, and pretending otherwise would run the shell under the wrong identity.
    """
    if user.uid == euid:
        return False
    if euid != 0:
        raise PrivilegeError(
            f"the agent runs as uid {euid}, not root: it can only run as itself, "
            f"not as {user.name!r}"
        )
    return True
