"""Bad policies are refused with file:line, and a refused reload keeps the last good one."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import PolicyHolder, PolicyLoadError, load_casbin, load_polar
from policies.casbin_backend import DEFAULT_MODEL, DEFAULT_POLICY
from policies.polar_backend import DEFAULT_POLICY as DEFAULT_POLAR

GOOD = DEFAULT_POLAR.read_text()


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_polar_syntax_error_has_file_and_line(tmp_path: Path) -> None:
    bad = GOOD.replace('grant("grant.dev-web", ', 'grant("grant.dev-web" ')
    path = tmp_path / "p.polar"
    path.write_text(bad)
    with pytest.raises(PolicyLoadError) as err:
        load_polar(path)
    assert err.value.file == str(path)
    assert err.value.line == line_of(bad, "grant.dev-web")
    assert str(err.value).startswith(f"{path}:{err.value.line}: ")


def test_polar_unknown_role_is_refused(tmp_path: Path) -> None:
    bad = GOOD.replace('"role:staff", "name:staging-*"', '"role:admin", "name:staging-*"')
    path = tmp_path / "p.polar"
    path.write_text(bad)
    with pytest.raises(PolicyLoadError, match="unknown role 'admin'") as err:
        load_polar(path)
    assert err.value.line == line_of(bad, "role:admin")


def test_polar_unknown_role_in_permission(tmp_path: Path) -> None:
    bad = GOOD.replace('"perm.staff.groups", "staff"', '"perm.staff.groups", "operator"')
    path = tmp_path / "p.polar"
    path.write_text(bad)
    with pytest.raises(PolicyLoadError, match="unknown role 'operator'") as err:
        load_polar(path)
    assert err.value.line == line_of(bad, "perm.staff.groups")


def test_polar_wrong_arity_is_refused_with_line(tmp_path: Path) -> None:
    bad = GOOD.replace('"name:web-*", "terminal");', '"name:web-*");')
    path = tmp_path / "p.polar"
    path.write_text(bad)
    with pytest.raises(PolicyLoadError) as err:
        load_polar(path)
    assert err.value.line == line_of(bad, "grant.dev-web")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"terminal");\ngrant("grant.dev-prod', '"root");\ngrant("grant.dev-prod', "access level"),
        ('"mkfs*", "", "", 0,', '"mkfs*", "", "", 0,\n', None),
        (
            '"require_mfa", "*", "tag:env=prod", "apt*"',
            '"allow", "*", "tag:env=prod", "apt*"',
            "effect",
        ),
        ('"group:dba", 0,', '"", 0,', "approver"),
        (
            '"block.mkfs", "command", "deny", "*", "*"',
            '"block.mkfs", "command", "deny", "*", "host:x"',
            "selector",
        ),
        ('rule("block.halt"', 'rule("block.reboot"', "duplicate"),
    ],
)
def test_polar_semantic_errors(tmp_path: Path, old: str, new: str, message: str | None) -> None:
    assert old in GOOD
    path = tmp_path / "p.polar"
    path.write_text(GOOD.replace(old, new, 1))
    if message is None:  # a harmless edit still loads
        load_polar(path)
        return
    with pytest.raises(PolicyLoadError, match=message) as err:
        load_polar(path)
    assert err.value.line is not None


def test_missing_file() -> None:
    with pytest.raises(PolicyLoadError, match="cannot read"):
        load_polar("/nonexistent/policies.polar")


def test_casbin_bad_row_has_file_and_line(tmp_path: Path) -> None:
    text = DEFAULT_POLICY.read_text()
    bad = text.replace(
        "p2, grant.dev-web, group:developers, name:web-*, terminal",
        "p2, grant.dev-web, group:developers, terminal",
    )
    policy = tmp_path / "policy.csv"
    policy.write_text(bad)
    with pytest.raises(PolicyLoadError, match="fields") as err:
        load_casbin(DEFAULT_MODEL, policy)
    assert (err.value.file, err.value.line) == (str(policy), line_of(bad, "grant.dev-web"))


def test_casbin_unknown_role(tmp_path: Path) -> None:
    text = DEFAULT_POLICY.read_text()
    bad = text.replace("p4, perm.staff.groups, staff,", "p4, perm.staff.groups, admin,")
    policy = tmp_path / "policy.csv"
    policy.write_text(bad)
    with pytest.raises(PolicyLoadError, match="unknown role 'admin'") as err:
        load_casbin(DEFAULT_MODEL, policy)
    assert err.value.line == line_of(bad, "perm.staff.groups")


def test_casbin_bad_model(tmp_path: Path) -> None:
    model = tmp_path / "model.conf"
    model.write_text(DEFAULT_MODEL.read_text().replace("whoMatch(r2.sub", "nosuchFunction(r2.sub"))
    with pytest.raises(PolicyLoadError, match="casbin model rejected") as err:
        load_casbin(model, DEFAULT_POLICY)
    assert err.value.file == str(model)


def test_reload_swaps_good_and_keeps_last_good_on_error(tmp_path: Path) -> None:
    path = tmp_path / "p.polar"
    path.write_text(GOOD)
    holder = PolicyHolder(lambda: load_polar(path))
    first = holder.engine
    v1 = holder.version

    path.write_text(
        GOOD.replace('"role:staff", "*", "read-only"', '"role:superuser", "*", "read-only"')
    )
    result = holder.reload()
    assert result.swapped and result.old_version == v1 and result.new_version != v1
    assert holder.engine is not first
    good_second = holder.engine

    path.write_text(GOOD.replace("grant(", "grant((", 1))  # syntax error
    result = holder.reload()
    assert not result.swapped and result.error is not None and result.error.line is not None
    assert holder.engine is good_second

    path.write_text(GOOD.replace('"role:staff"', '"role:owner"', 1))  # unknown role
    result = holder.reload()
    assert not result.swapped and "unknown role" in str(result.error)
    assert holder.engine is good_second


def test_holder_refuses_a_bad_policy_at_start(tmp_path: Path) -> None:
    path = tmp_path / "p.polar"
    path.write_text("grant(")
    with pytest.raises(PolicyLoadError):
        PolicyHolder(lambda: load_polar(path))
