"""Helpers for agent tests that drive real ptys and processes."""

from __future__ import annotations

import os
import pwd
import shutil
import sys

import pytest

# tests/conftest.py puts tests/ on sys.path (pytest "prepend" import mode), which makes
# tests/agent look like a namespace package called ``agent``. A regular package anywhere
# on sys.path wins over a namespace portion, so make sure the checkout root is there.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from agent.users import UnixUser, current_user  # noqa: E402
from websh.record import replace  # noqa: E402

BASH = shutil.which("bash") or "/bin/bash"


@pytest.fixture
def me_bash(tmp_path_factory: pytest.TempPathFactory) -> UnixUser:
    """The current user, with bash as its login shell and a clean home.

    A clean home keeps the machine's own dotfiles out of the tests: a login shell that
    runs, say, ``pyenv init`` and is killed mid-way can leave a lock that stalls every
    later shell for a minute.
    """
    home = tmp_path_factory.mktemp("home")
    return replace(current_user(), shell=BASH, home=str(home))


@pytest.fixture
def nobody_bash() -> UnixUser:
    if os.geteuid() != 0:
        pytest.skip("privilege drop needs root")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    from agent.users import resolve_user

    # nobody's real shell is nologin; give the resolved account bash to observe the drop.
    return replace(resolve_user("nobody"), shell=BASH)
