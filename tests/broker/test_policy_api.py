"""The policy text over the REST API, in-process on SQLite and PostgreSQL: reading the
source in force, validating a candidate with ``file:line`` errors, decision tables
against a candidate or the policy in force, and replacing the policy file (who may,
what is refused and audited, the swap, ``.prev``, the shared-policy and packaged-default
refusals)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker.audit import SYSTEM
from broker.policy.candidate import CRASHED
from broker.settings import Settings
from broker.store.models import TokenScope
from policies.casbin_backend import DEFAULT_POLICY as DEFAULT_CSV
from tests.broker import test_api_apps
from tests.broker.test_api import assert_problem
from tests.broker.test_api_apps import ORIGIN, Api, open_api
from tests.broker.test_policy_runtime import EDITED, GOOD, SYNTAX_ERROR, UNKNOWN_ROLE, line_of
from tests.conftest import Clock

api = test_api_apps.api  # the same broker running the packaged default policy

CASES = """\
subjects:
  sam: {user: sam@acme.test, role: staff}
cases:
  - name: staff read the policy
    user: sam
    action: policy.read
    expect: allow
  - name: staff do not replace it
    user: sam
    action: policy.update
    expect: deny
"""


@pytest.fixture
async def papi(services: Any, clock: Clock, tmp_path: Path) -> AsyncIterator[Api]:
    """The broker with a policy file of the operator's own (CORRAL_POLICY_FILE)."""
    policy_file = tmp_path / "policies.polar"
    policy_file.write_text(GOOD)
    settings = Settings(data_dir=tmp_path, public_url=ORIGIN, policy_file=policy_file)
    async with open_api(services, clock, settings) as ready:
        yield ready


def polar(text: str, name: str = "mine.polar") -> dict[str, Any]:
    return {"files": [{"name": name, "text": text}]}


def policy_file(api: Api) -> Path:
    path: Path = api.app.state.runtime.policy.source.file
    return path


async def test_source_round_trip(papi: Api) -> None:
    got = await papi.call("GET", "/api/v1/policy/source", papi.staff_token)
    assert got.status_code == 200, got.text
    source = got.json()
    version = papi.app.state.runtime.policy.version
    assert source == {
        "backend": "polar",
        "files": [{"name": "policies.polar", "text": GOOD}],
        "version": version,
    }
    checked = await papi.call("POST", "/api/v1/policy/validate", papi.staff_token, source)
    assert checked.status_code == 400  # the source answer has a version: not a request body
    body = {"files": source["files"]}
    checked = await papi.call("POST", "/api/v1/policy/validate", papi.staff_token, body)
    assert checked.json() == {"valid": True, "errors": [], "version": version}
    same = await papi.call("PUT", "/api/v1/policy", body=body)
    assert same.status_code == 200, same.text
    assert same.json()["changed"] is False and same.json()["version"] == version
    denied = await papi.call("GET", "/api/v1/policy/source", papi.user_token)
    assert assert_problem(denied, 403, "policy-denied")["rule_id"] == "role.not-permitted"


async def test_validate_names_the_line_and_touches_nothing(papi: Api) -> None:
    before = papi.app.state.runtime.policy.version
    for bad, needle, message in (
        (SYNTAX_ERROR, "grant.dev-web", ""),
        (UNKNOWN_ROLE, "role:admin", "unknown role 'admin'"),
    ):
        answer = await papi.call("POST", "/api/v1/policy/validate", papi.staff_token, polar(bad))
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["valid"] is False and report["version"] is None
        (error,) = report["errors"]
        assert (error["file"], error["line"]) == ("mine.polar", line_of(bad, needle))
        assert message in error["message"]
    assert papi.app.state.runtime.policy.version == before
    # This text aborts the process that parses it (a panic in the Polar parser): the
    # broker answers "does not load" and lives on, because a child process parsed it.
    crash = polar("\u00c3\u00a9")
    answer = await papi.call("POST", "/api/v1/policy/validate", papi.staff_token, crash)
    (error,) = answer.json()["errors"]
    assert error == {"file": "mine.polar", "line": None, "message": CRASHED}
    problem = assert_problem(
        await papi.call("PUT", "/api/v1/policy", body=crash), 422, "policy-refused"
    )
    assert problem["errors"] == [error] and policy_file(papi).read_text() == GOOD
    casbin = {"backend": "casbin", "files": [{"name": "p.csv", "text": "p, x\nnonsense, 1\n"}]}
    answer = await papi.call("POST", "/api/v1/policy/validate", papi.staff_token, casbin)
    (error,) = answer.json()["errors"]
    assert error["file"] == "p.csv" and error["line"] in (1, 2)
    good_csv = {"backend": "casbin", "files": [{"name": "p.csv", "text": DEFAULT_CSV.read_text()}]}
    answer = await papi.call("POST", "/api/v1/policy/validate", papi.staff_token, good_csv)
    assert answer.json()["valid"] is True, answer.text
    for refused in (
        {"files": [{"name": "../etc/passwd", "text": GOOD}]},
        {"files": [{"name": "a.polar", "text": GOOD}, {"name": "b.polar", "text": GOOD}]},
        {"files": []},
        {"source": GOOD},
        {"files": [{"name": "big.polar", "text": "#" * (256 * 1024 + 1)}]},
    ):
        answer = await papi.call("POST", "/api/v1/policy/validate", papi.staff_token, refused)
        assert_problem(answer, 400, "invalid-request")


async def test_replace_refusals_are_audited_and_write_nothing(papi: Api) -> None:
    path = policy_file(papi)
    staff = await papi.call("PUT", "/api/v1/policy", papi.staff_token, polar(EDITED))
    assert assert_problem(staff, 403, "policy-denied")["rule_id"] == "role.not-permitted"
    _, read_token = await papi.token(papi.root, TokenScope.READ)
    weak = await papi.call("PUT", "/api/v1/policy", read_token, polar(EDITED))
    assert_problem(weak, 403, "forbidden")
    invalid = await papi.call("PUT", "/api/v1/policy", body=polar(SYNTAX_ERROR))
    problem = assert_problem(invalid, 422, "policy-refused")
    errors: Any = problem["errors"]
    assert errors[0]["line"] == line_of(SYNTAX_ERROR, "grant.dev-web")
    assert "nothing was written" in str(problem["detail"])
    assert path.read_text() == GOOD and not path.with_name("policies.polar.prev").exists()
    denied = [
        (e.actor_id, json.loads(e.details).get("rule_id") or json.loads(e.details)["reason"])
        for e in await papi.events("action.denied")
    ]
    assert denied == [
        (papi.staff, "role.not-permitted"),
        (papi.root, "token scope"),
        (papi.root, "invalid"),
    ]
    assert await papi.events("policy.replaced") == []


async def test_replace_swaps_the_policy_keeps_prev_and_audits(papi: Api) -> None:
    path = policy_file(papi)
    runtime = papi.app.state.runtime.policy
    v1 = runtime.version
    assert (await papi.call("GET", "/api/v1/policy", papi.staff_token)).status_code == 200
    replaced = await papi.call("PUT", "/api/v1/policy", body=polar(EDITED))
    assert replaced.status_code == 200, replaced.text
    out = replaced.json()
    assert out["changed"] is True and out["old_version"] == v1 and out["version"] != v1
    assert out["version"] == runtime.version and out["file"] == str(path)
    assert path.read_text() == EDITED and path.with_name("policies.polar.prev").read_text() == GOOD
    # In force at once: staff lost policy.read.
    refused = await papi.call("GET", "/api/v1/policy", papi.staff_token)
    assert_problem(refused, 403, "policy-denied")
    (event,) = await papi.events("policy.replaced")
    details = json.loads(event.details)
    assert event.actor_id == papi.root
    assert (details["version"], details["old_version"]) == (out["version"], v1)
    assert "EDITED" not in event.details and "permission(" not in event.details
    (reload,) = await papi.events("policy.reloaded")
    assert json.loads(reload.details)["trigger"] == "api"
    assert (await papi.services.audit.verify(papi.ws)).ok


async def test_replace_refused_while_workspaces_share_the_policy(papi: Api) -> None:
    other = await papi.services.workspaces.create("globex")
    answer = await papi.call("PUT", "/api/v1/policy", body=polar(EDITED))
    problem = assert_problem(answer, 409, "policy-not-replaceable")
    assert "shared by 2 workspaces" in str(problem["detail"])
    assert policy_file(papi).read_text() == GOOD
    (event,) = await papi.events("action.denied")
    assert json.loads(event.details)["reason"] == "shared"
    # A deleted workspace no longer shares it.
    await papi.services.workspaces.delete(other.id, confirm_name="globex", actor=SYSTEM)
    answer = await papi.call("PUT", "/api/v1/policy", body=polar(EDITED))
    assert answer.status_code == 200, answer.text
    assert policy_file(papi).read_text() == EDITED


async def test_replace_refused_for_the_packaged_default(api: Api) -> None:
    answer = await api.call("PUT", "/api/v1/policy", body=polar(EDITED))
    problem = assert_problem(answer, 409, "policy-not-replaceable")
    assert "CORRAL_POLICY_FILE" in str(problem["detail"])
    source = (await api.call("GET", "/api/v1/policy/source", api.staff_token)).json()
    assert source["files"][0]["name"] == "default.polar"
    other = {"backend": "casbin", "files": [{"name": "p.csv", "text": DEFAULT_CSV.read_text()}]}
    answer = await api.call("PUT", "/api/v1/policy", body=other)
    assert "CORRAL_POLICY_BACKEND" in str(
        assert_problem(answer, 409, "policy-not-replaceable")["detail"]
    )


async def test_decision_tables_against_the_policy_in_force_or_a_candidate(papi: Api) -> None:
    ran = await papi.call("POST", "/api/v1/policy/test", papi.staff_token, {"cases_yaml": CASES})
    assert ran.status_code == 200, ran.text
    report = ran.json()
    assert (report["passed"], report["failed"]) == (2, 0)
    assert report["version"] == papi.app.state.runtime.policy.version
    first = report["results"][0]
    assert first == {
        "line": 4,
        "name": "staff read the policy",
        "ok": True,
        "expected": "allow",
        "got": "allow",
        "rule_id": first["rule_id"],
        "problem": None,
    }
    candidate = {"cases_yaml": CASES, **polar(EDITED)}
    ran = await papi.call("POST", "/api/v1/policy/test", papi.staff_token, candidate)
    report = ran.json()
    assert (report["passed"], report["failed"]) == (1, 1)
    flipped = report["results"][0]
    assert flipped["ok"] is False and flipped["got"] == "deny" and flipped["problem"]
    assert report["version"] != papi.app.state.runtime.policy.version

    broken = CASES.replace("    expect: deny", "    expect: maybe")
    answer = await papi.call(
        "POST", "/api/v1/policy/test", papi.staff_token, {"cases_yaml": broken}
    )
    problem = assert_problem(answer, 400, "invalid-request")
    assert problem["line"] == 8 and str(problem["detail"]).startswith("cases_yaml:8: ")
    bad_yaml = {"cases_yaml": "cases:\n  - [unclosed\n"}
    answer = await papi.call("POST", "/api/v1/policy/test", papi.staff_token, bad_yaml)
    assert "invalid YAML" in str(assert_problem(answer, 400, "invalid-request")["detail"])
    bad_policy = {"cases_yaml": CASES, **polar(SYNTAX_ERROR)}
    answer = await papi.call("POST", "/api/v1/policy/test", papi.staff_token, bad_policy)
    assert assert_problem(answer, 422, "policy-refused")["errors"]
    answer = await papi.call("POST", "/api/v1/policy/test", papi.user_token, {"cases_yaml": CASES})
    assert_problem(answer, 403, "policy-denied")


@pytest.fixture
async def casbin_api(services: Any, clock: Clock, tmp_path: Path) -> AsyncIterator[Api]:
    """A Casbin broker: the operator's own CSV, the model shipped in the package."""
    csv = tmp_path / "policy.csv"
    csv.write_text(DEFAULT_CSV.read_text())
    settings = Settings(
        data_dir=tmp_path, public_url=ORIGIN, policy_backend="casbin", policy_file=csv
    )
    async with open_api(services, clock, settings) as ready:
        yield ready


async def test_casbin_csv_replaced_next_to_the_shipped_model(casbin_api: Api) -> None:
    source = (await casbin_api.call("GET", "/api/v1/policy/source", casbin_api.staff_token)).json()
    assert [f["name"] for f in source["files"]] == ["default_casbin_model.conf", "policy.csv"]
    edited = DEFAULT_CSV.read_text().replace("p4, perm.staff.policy-read, staff, policy.read\n", "")
    body = {"files": [{"name": "policy.csv", "text": edited}]}
    replaced = await casbin_api.call("PUT", "/api/v1/policy", body=body)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["changed"] is True
    csv = policy_file(casbin_api)
    assert csv.read_text() == edited and csv.with_name("policy.csv.prev").exists()
    refused = await casbin_api.call("GET", "/api/v1/policy", casbin_api.staff_token)
    assert_problem(refused, 403, "policy-denied")
    # A changed model would be written into the package: refused, nothing written.
    model = {"name": "m.conf", "text": source["files"][0]["text"] + "\n# edited\n"}
    answer = await casbin_api.call("PUT", "/api/v1/policy", body={"files": [model, *body["files"]]})
    assert "CORRAL_POLICY_FILE" in str(
        assert_problem(answer, 409, "policy-not-replaceable")["detail"]
    )
