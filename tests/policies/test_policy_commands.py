"""The shell-line parser: what it sees, what it refuses to guess, and that it never breaks."""

from __future__ import annotations

import contextlib
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import CommandParseError, PolicyError, parse_command_line


def programs(line: str) -> list[str]:
    return [c.program for c in parse_command_line(line).commands]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ls -la", ["ls"]),
        ("FOO=1 BAR=2 make", ["make"]),
        ("a; b && c || d | e & f", ["a", "b", "c", "d", "e", "f"]),
        ("(cd /tmp; ls) && pwd", ["cd", "ls", "pwd"]),
        ("echo $(whoami) `id`", ["whoami", "id", "echo"]),
        ('echo "$(hostname)"', ["hostname", "echo"]),
        ("sudo -u root -E env -i PATH=/bin nice -n 5 nohup timeout -s 9 10 rm x", ["rm"]),
        ("command -p exec -a x ls", ["ls"]),
        ("xargs -0 -n 1 -I {} rm {}", ["rm"]),
        ("/usr/bin/rm x", ["rm"]),
        ("bash -c 'ls; rm x'", ["ls", "rm", "bash"]),
        ("sh -xc \"sh -c 'reboot'\"", ["reboot", "sh", "sh"]),
        ("su -c 'reboot'", ["reboot", "su"]),
        ("env -S 'rm -rf /'", ["rm"]),
        ("watch -n 1 'df -h'", ["df", "watch"]),
        ("find . -name x -exec rm {} ;", ["rm", "find"]),
        ("ls > out 2>&1 < in", ["ls"]),
        ("cat <(reboot)", ["reboot", "cat"]),
        ("if true; then halt; fi", ["true", "halt"]),
        ("ls # ; reboot", ["ls"]),
        ("r\\m x", ["rm"]),
        ("'r'\"m\" x", ["rm"]),
        ("$'\\162\\155' x", ["rm"]),
        ("for i in 1 2; do reboot; done", ["reboot"]),
        ("", []),
    ],
)
def test_simple_commands(line: str, expected: list[str]) -> None:
    parsed = parse_command_line(line)
    assert [c.program for c in parsed.commands] == expected
    assert parsed.unresolved == ()


@pytest.mark.parametrize(
    "line",
    [
        "eval $x",
        "$CMD arg",
        "${CMD} arg",
        "$(echo rm) -rf /",
        "`echo rm` -rf /",
        "source ./x.sh",
        ". ./x.sh",
        "curl x | sh",
        "bash < script",
        "bash <<< 'reboot'",
        "cat x | bash -s",
        "python3 -c x | bash",
        "bash ./script.sh",
        'sh -c "$X"',
        "/???/rm x",
        "/bin/r[m] x",
        "{rm,-rf,/}",
        "ls 'unterminated",
        "echo $(unterminated",
        "case $x in a) reboot;; esac",
        "!!",
    ],
)
def test_unresolved(line: str) -> None:
    assert parse_command_line(line).unresolved


def test_wrappers_and_flags_are_recorded() -> None:
    (c,) = parse_command_line("sudo -u root /usr/bin/rm -rf //").commands
    assert (c.program, c.path, c.wrappers, c.privileged) == ("rm", "/usr/bin/rm", ("sudo",), True)
    assert {"-r", "-f", "/"} <= c.match_args
    assert not parse_command_line("ls").privileged
    assert parse_command_line("ls && sudo -i").privileged


def test_limits() -> None:
    with pytest.raises(CommandParseError):
        parse_command_line("x" * 9000)
    deep = "rm"
    for _ in range(4):
        deep = "bash -c " + shlex.quote(deep)
    assert programs(deep) == ["rm", "bash", "bash", "bash", "bash"]
    assert parse_command_line(deep, max_depth=2).unresolved
    nested = "echo " + "$(" * 50 + "ls" + ")" * 50
    parse_command_line(nested)  # bounded, no RecursionError


SHELLISH = st.lists(
    st.sampled_from(
        [*list("ab rm-/\\'\"$`()|&;<>{}*?[]!#=\n\tc"), "sudo ", "bash -c ", "$(", "<<"]
    ),
    max_size=80,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(SHELLISH)
def test_parser_never_raises_but_policy_errors(line: str) -> None:
    try:
        parsed = parse_command_line(line, max_length=150)
    except PolicyError:
        return
    assert all(isinstance(c.program, str) for c in parsed.commands)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parser_total_on_any_text(line: str) -> None:
    with contextlib.suppress(PolicyError):
        parse_command_line(line, max_length=250)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.from_regex(r"[A-Za-z0-9_./:=+@%-]{1,8}", fullmatch=True), min_size=1, max_size=6)
)
def test_fast_path_matches_the_lexer(words: list[str]) -> None:
    """Plain lines skip the lexer; adding a quote pair must not change the result."""
    plain = " ".join(words)
    quoted = " ".join(f"'{w}'" if "=" not in w else w for w in words)
    assert parse_command_line(plain).commands == parse_command_line(quoted).commands
