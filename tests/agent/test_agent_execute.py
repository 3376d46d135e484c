"""Exec commands: exit codes, environment, separate stderr, timeouts, privilege drop."""

from __future__ import annotations

import pwd
import selectors
import signal
import time

import pytest

from agent.errors import ExecError, SpawnError
from agent.execute import ExecResult, Execution
from agent.users import UnixUser

pytestmark = pytest.mark.slow


def run(execution: Execution, timeout: float = 20.0) -> tuple[bytes, bytes, ExecResult]:
    """Drive an execution like the agent loop: select, read, check the deadline."""
    out = {execution.stdout_fd: b"", execution.stderr_fd: b""}
    readers = {
        execution.stdout_fd: execution.read_stdout,
        execution.stderr_fd: execution.read_stderr,
    }
    give_up = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for fd in out:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map() or execution.poll() is None:
            assert time.monotonic() < give_up, "command never finished"
            wait = execution.next_deadline()
            events = selector.select(min(0.05, wait) if wait is not None else 0.05)
            for key, _ in events:
                data = readers[key.fd]()
                if data == b"":
                    selector.unregister(key.fd)
                elif data:
                    out[key.fd] += data
            if not selector.get_map() and execution.poll() is None:
                time.sleep(0.01)
            execution.check_timeout()
    execution.close()
    result = execution.poll()
    assert result is not None
    return out[execution.stdout_fd], out[execution.stderr_fd], result


def test_exit_code_and_streams(me_bash: UnixUser) -> None:
    stdout, stderr, result = run(Execution.start(me_bash, "echo out; echo err >&2; exit 7"))
    assert (stdout, stderr) == (b"out\n", b"err\n")
    assert result == ExecResult(7, None, False)


def test_env_passed_and_agent_env_not_leaked(
    me_bash: UnixUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_SECRET_THING", "leak")
    execution = Execution.start(
        me_bash, 'echo "$GREETING|$AGENT_SECRET_THING|$HOME|$USER"', env={"GREETING": "hi there"}
    )
    stdout, _, result = run(execution)
    assert stdout == f"hi there||{me_bash.home}|{me_bash.name}\n".encode()
    assert result.exit_code == 0


def test_argv_form(me_bash: UnixUser) -> None:
    stdout, _, result = run(Execution.start(me_bash, ["printf", "%s-", "a b", "c"]))
    assert stdout == b"a b-c-"
    assert result.exit_code == 0


def test_timeout_terminates_then_kills(me_bash: UnixUser) -> None:
    started = time.monotonic()
    execution = Execution.start(me_bash, "sleep 30", timeout=0.3)
    _, _, result = run(execution)
    assert result.timed_out
    assert result.signal == signal.SIGTERM
    assert time.monotonic() - started < 5
    stubborn = Execution.start(
        me_bash, "trap '' TERM; echo ready; while :; do sleep 0.05; done", timeout=0.3,
        kill_grace=0.3,
    )  # fmt: skip
    _, _, result = run(stubborn)
    assert result.timed_out
    assert result.signal == signal.SIGKILL


def test_cancel_is_not_a_timeout(me_bash: UnixUser) -> None:
    execution = Execution.start(me_bash, "sleep 30")
    execution.cancel()
    _, _, result = run(execution)
    assert result.signal == signal.SIGTERM
    assert not result.timed_out


def test_runs_as_nobody(nobody_bash: UnixUser) -> None:
    stdout, _, _ = run(Execution.start(nobody_bash, "id -u; pwd"))
    assert stdout == f"{pwd.getpwnam('nobody').pw_uid}\n/\n".encode()


def test_invalid_requests(me_bash: UnixUser) -> None:
    with pytest.raises(ExecError):
        Execution.start(me_bash, "true", env={"BAD=NAME": "x"})
    with pytest.raises(ExecError):
        Execution.start(me_bash, "true", timeout=0)
    with pytest.raises(ExecError):
        Execution.start(me_bash, ["no-such-command-corral"])
    with pytest.raises(SpawnError, match="execve"):
        Execution.start(me_bash, ["/nonexistent/binary"])
