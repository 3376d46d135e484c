"""The policy in force: start-up refusal, hot reload (API-style call, file change, watcher),
refusals that keep the last good policy, and the audit trail of both, on both databases."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from broker.audit import Actor
from broker.errors import PolicyRefused
from broker.policy import PolicyRuntime, PolicySource
from broker.runtime import open_runtime
from broker.services import Services
from broker.settings import load_settings
from policies import ActionRequest, Effect, Role, Subject
from policies.casbin_backend import DEFAULT_MODEL
from policies.casbin_backend import DEFAULT_POLICY as DEFAULT_CSV
from policies.polar_backend import DEFAULT_POLICY

GOOD = DEFAULT_POLICY.read_text()
STAFF = Subject("sam", Role.STAFF)
# A harmless edit that changes a decision: staff may no longer read the policy version.
EDITED = GOOD.replace('permission("perm.staff.policy-read", "staff", "policy.read");\n', "")
SYNTAX_ERROR = GOOD.replace('grant("grant.dev-web", ', 'grant("grant.dev-web" ')
UNKNOWN_ROLE = GOOD.replace('"role:staff", "name:staging-*"', '"role:admin", "name:staging-*"')


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def write(path: Path, text: str) -> None:
    """Write and move the mtime on, so a poll sees the change even within one tick."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def events(services: Services, workspace_id: str, action: str) -> list[dict[str, object]]:
    found = await services.audit.events(workspace_id, limit=1000)
    return [
        {"actor": e.actor_id, "outcome": e.outcome, **json.loads(e.details)}
        for e in found
        if e.action == action
    ]


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies.polar"
    path.write_text(GOOD)
    return path


async def test_reload_swaps_refuses_and_audits_in_every_workspace(
    services: Services, policy_file: Path
) -> None:
    first = await services.workspaces.create("acme")
    second = await services.workspaces.create("globex")
    runtime = PolicyRuntime(PolicySource("polar", policy_file), services)
    v1 = runtime.version
    assert runtime.engine().decide(ActionRequest(STAFF, "policy.read")).effect is Effect.ALLOW

    write(policy_file, EDITED)
    actor = Actor("user", "u-1", "tok-1")
    result = await runtime.reload(trigger="api", actor=actor, workspace_id=first.id)
    assert result.swapped and result.old_version == v1 and result.new_version == runtime.version
    assert runtime.engine().decide(ActionRequest(STAFF, "policy.read")).effect is Effect.DENY
    v2 = runtime.version

    for bad, needle, message in (
        (SYNTAX_ERROR, "grant.dev-web", ""),
        (UNKNOWN_ROLE, "role:admin", "unknown role 'admin'"),
    ):
        write(policy_file, bad)
        refused = await runtime.reload(trigger="sighup")
        assert not refused.swapped and refused.error is not None
        assert str(refused.error).startswith(f"{policy_file}:{line_of(bad, needle)}: ")
        assert message in str(refused.error)
        assert runtime.version == v2  # the last good policy stays in force

    mine = await events(services, first.id, "policy.reloaded")
    theirs = await events(services, second.id, "policy.reloaded")
    assert [(e["version"], e["old_version"], e["trigger"]) for e in mine] == [(v2, v1, "api")]
    assert mine[0]["actor"] == "u-1" and theirs[0]["actor"] == ""  # the system, elsewhere
    refusals = await events(services, second.id, "policy.reload_refused")
    assert [(e["outcome"], e["version"], e["trigger"]) for e in refusals] == [
        ("failure", v2, "sighup")
    ] * 2
    assert all(str(e["error"]).startswith(f"{policy_file}:") for e in refusals)
    assert all(e["candidate_version"] not in (v1, v2) for e in refusals)
    assert (await services.audit.verify(first.id)).ok


async def test_file_changes_are_picked_up_by_the_watcher(
    services: Services, policy_file: Path
) -> None:
    ws = await services.workspaces.create("acme")
    runtime = PolicyRuntime(PolicySource("polar", policy_file), services)
    seen: list[str] = []

    async def listener(result: object) -> None:
        seen.append(runtime.version)

    runtime.on_change(listener)
    v1 = runtime.version
    os.utime(policy_file)
    assert await runtime.check_files() is None  # same text: nothing to do, nothing audited

    runtime.start_watching(0.05)
    try:
        write(policy_file, EDITED)

        async def changed() -> None:
            while not seen:  # listeners run after the swap and its audit
                await asyncio.sleep(0.02)

        await asyncio.wait_for(changed(), 10)
        assert seen == [runtime.version] and runtime.version != v1
        write(policy_file, SYNTAX_ERROR)

        async def refused() -> None:
            while not await events(services, ws.id, "policy.reload_refused"):
                await asyncio.sleep(0.02)

        await asyncio.wait_for(refused(), 10)
        await asyncio.sleep(0.2)  # further polls of the same bad text audit nothing new
        assert len(await events(services, ws.id, "policy.reload_refused")) == 1
        assert seen == [runtime.version]
    finally:
        await runtime.aclose()
    reloads = await events(services, ws.id, "policy.reloaded")
    assert [e["trigger"] for e in reloads] == ["file"]


async def test_casbin_source_reloads_too(services: Services, tmp_path: Path) -> None:
    await services.workspaces.create("acme")
    csv = tmp_path / "policy.csv"
    csv.write_text(DEFAULT_CSV.read_text())
    runtime = PolicyRuntime(PolicySource("casbin", csv, DEFAULT_MODEL), services)
    assert runtime.info()["backend"] == "casbin"
    assert runtime.source.text_version() == runtime.version
    staff_read = "p4, perm.staff.policy-read, staff, policy.read\n"
    write(csv, DEFAULT_CSV.read_text().replace(staff_read, ""))
    assert (await runtime.reload(trigger="api")).swapped
    assert runtime.engine().decide(ActionRequest(STAFF, "policy.read")).effect is Effect.DENY
    write(csv, "p4, perm.x, admin, *\n")
    result = await runtime.reload(trigger="api")
    assert result.error is not None and not result.swapped


def test_a_bad_policy_refuses_start_up_before_anything_is_created(tmp_path: Path) -> None:
    bad = tmp_path / "bad.polar"
    bad.write_text(UNKNOWN_ROLE)
    settings = load_settings(
        {"CORRAL_POLICY_FILE": str(bad), "CORRAL_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path
    )

    async def start() -> None:
        async with open_runtime(settings):
            pass

    with pytest.raises(PolicyRefused) as refused:
        asyncio.run(start())
    assert str(refused.value).startswith(f"{bad}:{line_of(UNKNOWN_ROLE, 'role:admin')}: ")
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "data").exists()


async def test_a_file_that_crashes_the_parser_is_refused_not_fatal(
    services: Services, policy_file: Path
) -> None:
    """This text makes the Polar parser abort the process that parses it; the reload
    parses it in a child process first, so the broker refuses it and lives on."""
    from broker.policy.candidate import CRASHED

    await services.workspaces.create("acme")
    runtime = PolicyRuntime(PolicySource("polar", policy_file), services)
    v1 = runtime.version
    write(policy_file, "\u00c3\u00a9")
    refused = await runtime.reload(trigger="file")
    assert refused.error is not None and not refused.swapped
    assert str(refused.error) == f"{policy_file}: {CRASHED}"
    assert runtime.version == v1
