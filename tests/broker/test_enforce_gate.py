"""The command gate with a scripted shell: what is forwarded, held, refused and audited."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from broker.enforce.gate import CommandGate
from broker.enforce.tracker import ACCEPT, PROMPT_END, PROMPT_START, LineTracker
from policies import Decision, Effect

PROMPT = PROMPT_START + b"$ " + PROMPT_END


def decision(effect: Effect, rule: str = "r1") -> Decision:
    return Decision(effect, rule, f"because {rule}", "v1", approvers=("user:boss",))


@dataclass
class Script:
    """Verdicts by line, and a shell that echoes what it is sent."""

    rules: dict[str, Decision] = field(default_factory=dict)
    codes: list[str] = field(default_factory=list)
    approve: asyncio.Future[bool] | None = None
    sent: bytearray = field(default_factory=bytearray)
    shown: bytearray = field(default_factory=bytearray)
    audited: list[tuple[str, str, bool]] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)
    gate: CommandGate | None = None
    continues: bool = False  # the next accept gets PS2, not a new prompt
    quiet: bool = False  # a full-screen program took the terminal: no prompt comes back

    async def decide(self, line: str) -> Decision:
        return self.rules.get(line, decision(Effect.ALLOW, "grant"))

    async def step_up(self, code: str) -> bool:
        self.codes.append(code)
        return code == "123456"

    async def approval(self, line: str, decision: Decision) -> bool:
        assert self.approve is not None
        return await self.approve

    async def send(self, data: bytes) -> None:
        self.sent += data
        assert self.gate is not None
        if self.quiet and data == ACCEPT:
            return
        if data == ACCEPT and self.continues:
            self.continues = False
            self.gate.output(b"\r\n> " + PROMPT_END)  # PS2
        elif data in (ACCEPT, b"\x03"):
            self.gate.output(b"\r\n" + PROMPT)  # the command ran (or was dropped)
        else:
            self.gate.output(data.replace(b"\x1b[200~", b"").replace(b"\x1b[201~", b""))

    async def audit(self, line: str, decision: Decision, ran: bool) -> None:
        self.audited.append((line, decision.effect.value, ran))


def make(script: Script) -> CommandGate:
    gate = CommandGate(
        LineTracker(80),
        script,
        send=script.send,
        show=script.shown.extend,
        audit=script.audit,
        mark=script.marks.append,
        settle_seconds=0.005,
        prompt_timeout=0.2,
    )
    script.gate = gate
    gate.output(PROMPT)
    return gate


async def settle(script: Script, audits: int) -> None:
    for _ in range(200):
        if len(script.audited) >= audits:
            await asyncio.sleep(0.02)
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {script.audited}")


async def test_allow_deny_and_what_the_person_sees() -> None:
    script = Script(rules={"rm -rf /": decision(Effect.DENY, "block.rm-root")})
    gate = make(script)
    await gate.input(b"ls -l\r")
    await settle(script, 1)
    await gate.input(b"rm -rf /\r")
    await settle(script, 2)
    assert script.audited == [("ls -l", "allow", True), ("rm -rf /", "deny", False)]
    assert script.marks == ["ls -l", "rm -rf /"]
    assert bytes(script.sent) == b"ls -l" + ACCEPT + b"rm -rf /\x03"
    assert b"corral: denied by block.rm-root: because block.rm-root" in script.shown
    gate.close()


async def test_a_paste_runs_line_by_line_and_stops_at_a_refusal() -> None:
    script = Script(rules={"rm -rf /": decision(Effect.DENY)})
    gate = make(script)
    await gate.input(b"echo one\rrm -rf /\recho three\r")
    await settle(script, 2)
    await asyncio.sleep(0.3)
    assert [a[0] for a in script.audited] == ["echo one", "rm -rf /"]
    assert b"echo three" not in script.sent
    gate.close()


async def test_mfa_code_is_read_by_the_gate_never_sent() -> None:
    script = Script(rules={"apt install x": decision(Effect.REQUIRE_MFA)})
    gate = make(script)
    await gate.input(b"apt install x\r")
    await asyncio.sleep(0.1)
    assert b"MFA code (not shown): " in script.shown
    await gate.input(b"12345")
    await gate.input(b"6\r")
    await settle(script, 1)
    assert script.codes == ["123456"]
    assert b"123456" not in script.sent and b"123456" not in script.shown
    assert script.audited == [("apt install x", "require_mfa", True)]
    await gate.input(b"apt install x\r")
    await asyncio.sleep(0.1)
    await gate.input(b"000000\r")
    await settle(script, 2)
    assert script.audited[1] == ("apt install x", "require_mfa", False)
    gate.close()


async def test_approval_holds_input_and_ctrl_c_withdraws() -> None:
    loop = asyncio.get_running_loop()
    script = Script(
        rules={"reboot": decision(Effect.REQUIRE_APPROVAL)}, approve=loop.create_future()
    )
    gate = make(script)
    await gate.input(b"reboot\r")
    await asyncio.sleep(0.05)
    await gate.input(b"echo typed meanwhile\r")
    assert b"typed meanwhile" not in script.sent  # held, not forwarded
    script.approve.set_result(True)
    await settle(script, 2)
    assert script.audited == [
        ("reboot", "require_approval", True),
        ("echo typed meanwhile", "allow", True),
    ]

    script.approve = loop.create_future()
    await gate.input(b"reboot\r")
    await asyncio.sleep(0.05)
    await gate.input(b"\x03")
    await settle(script, 3)
    assert script.audited[2] == ("reboot", "require_approval", False)
    gate.close()


async def test_continued_lines_are_decided_whole() -> None:
    script = Script(rules={"rm -rf /": decision(Effect.DENY)})
    gate = make(script)
    script.continues = True
    await gate.input(b"rm -rf \\\r")
    await asyncio.sleep(0.1)
    await gate.input(b"/\r")
    await settle(script, 1)
    assert script.audited == [("rm -rf /", "deny", False)]
    gate.close()


async def test_keystrokes_pass_through_while_a_program_runs() -> None:
    script = Script(quiet=True)
    gate = make(script)
    await gate.input(b"vim\r")
    await settle(script, 1)
    await asyncio.sleep(0.3)  # no prompt came back: a program has the terminal
    await gate.input(b"irm -rf /\x1b:wq\r")
    assert script.sent.endswith(b"irm -rf /\x1b:wq\r")
    assert len(script.audited) == 1
    gate.close()


async def test_input_now_returns_the_forward_unstarted_and_holds_at_enter_at_once() -> None:
    """The relay's callback path: the split happens in the call, the send when stepped;
    input behind an Enter queues even before the Enter's forward has run."""
    script = Script()
    gate = make(script)
    assert gate.input_now(b"") is None  # nothing to send
    send = gate.input_now(b"l")
    assert send is not None and script.sent == b""
    await send
    enter = gate.input_now(b"s\r")
    behind = gate.input_now(b"x")
    assert enter is not None and behind is not None
    await enter
    await behind
    assert bytes(script.sent) == b"ls"  # "x" waits for the decision and the next prompt
    await settle(script, 1)
    assert script.audited == [("ls", "allow", True)]
    assert bytes(script.sent) == b"ls" + ACCEPT + b"x"
    gate.close()
