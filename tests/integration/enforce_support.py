"""What the enforcement tests share: a test policy, a gateway with the gate wired to it,
canary files that show whether a blocked command ran, and a terminal helper."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

from broker.enforce import ApprovalDesk
from broker.gateway import GatewaySessions
from policies import PolicyEngine, compile_engine
from policies.polar_backend import DEFAULT_POLICY, polar_from_text

SHELL_USER = "corral-e2e"
CANARY_DIR = Path("/tmp")
FAKE_BIN = Path("/var/tmp/corral-fake-bin")

#: Section 6 of the shipped policy, filled in for the tests.
TEST_RULES = """
rule("test.canary-rm", "command", "deny", "*", "*", "rm", "*corral-canary-*", "", 0,
    "the canary must not be deleted");
rule("test.canary-unlink", "command", "deny", "*", "*", "unlink", "*corral-canary-*", "", 0,
    "the canary must not be deleted");
rule("test.canary-shred", "command", "deny", "*", "*", "shred", "*corral-canary-*", "", 0,
    "the canary must not be deleted");
rule("test.canary-find", "command", "deny", "*", "*", "find", "*corral-canary-*", "", 0,
    "the canary must not be deleted");
rule("test.mfa", "command", "require_mfa", "*", "*", "touch", "*corral-mfa-*", "", 300,
    "touching the MFA canary needs a fresh MFA");
rule("test.approve", "command", "require_approval", "*", "*", "touch", "*corral-approve-*",
    "user:approver@example.com", 0, "touching the approval canary needs an approval");
"""


def policy_text() -> str:
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    marker = "# --- 6. (your additions here) "
    head, _, tail = text.partition(marker)
    return head + marker + tail.split("\n", 1)[0] + "\n" + TEST_RULES + tail.split("\n", 1)[1]


def engine() -> PolicyEngine:
    return compile_engine(polar_from_text(policy_text(), "test.polar"))


@dataclass
class TotpStepUp:
    """The injected step-up verifier, backed by a real TOTP secret per user."""

    secrets: dict[str, str] = field(default_factory=dict)
    tried: list[str] = field(default_factory=list)

    def provision(self, user_id: str) -> pyotp.TOTP:
        secret = pyotp.random_base32()
        self.secrets[user_id] = secret
        return pyotp.TOTP(secret)

    async def verify(self, workspace_id: str, user_id: str, code: str) -> bool:
        self.tried.append(code)
        secret = self.secrets.get(user_id)
        return secret is not None and pyotp.TOTP(secret).verify(code, valid_window=1)


def enforcing_gateway(
    services: Any, hub: Any, recordings: Path, **options: Any
) -> tuple[GatewaySessions, TotpStepUp, ApprovalDesk]:
    step_up = options.pop("step_up", None) or TotpStepUp()
    desk = options.pop("approvals", None) or ApprovalDesk(services, timeout=5.0)
    policy = engine()
    gateway = GatewaySessions(
        services,
        hub,
        recordings_dir=recordings,
        policy=lambda: policy,
        step_up=step_up,
        approvals=desk,
        **options,
    )
    return gateway, step_up, desk


def canary(name: str) -> Path:
    """A file only ``SHELL_USER`` may delete, so a missed block shows as its absence."""
    path = CANARY_DIR / f"corral-canary-{name}"
    path.write_text("canary\n")
    entry = pwd.getpwnam(SHELL_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def fake_programs() -> Path:
    """Harmless stand-ins named like blocked programs: each only leaves a trace file."""
    FAKE_BIN.mkdir(parents=True, exist_ok=True)
    for name in ("shutdown", "mkfs", "mkfs.ext4"):
        script = FAKE_BIN / name
        script.write_text(f'#!/bin/sh\ntouch "/tmp/corral-ran-{name}-$CORRAL_CASE"\n')
        script.chmod(0o755)
    return FAKE_BIN


def ran_trace(program: str, case: str) -> Path:
    return Path(f"/tmp/corral-ran-{program}-{case}")


def cleanup(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def cleanup_matching(pattern: str) -> None:
    cleanup(sorted(CANARY_DIR.glob(pattern)))


def exists(path: Path) -> bool:
    return path.exists()


async def eventually(check: Any, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return bool(check())
