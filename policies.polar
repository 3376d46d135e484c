# Corral default policy (Polar).
#
# Security teams: this file is the source of truth for who may reach which server, which
# commands need an approval or a fresh MFA, and which never run at all. Edit the facts in
# sections 1-6; section 7 is the decision logic and normally stays as shipped.
# Check it with `corral policy check policies.polar` before deploying (the broker also
# refuses a broken file at start-up and on reload, and keeps the previous one).
#
# Selectors used below:
#   who:   "*", "user:<id>", "group:<user group>", "role:user|staff|superuser"
#   where: "*", "name:<glob>" (e.g. "name:production-*"), "group:<server group>",
#          "tag:<key>=<glob>" (e.g. "tag:env=prod")
#   Either may start with "!" to negate it ("!role:superuser").
# Command patterns: a program glob (basename, or full path when it contains "/") and an
# argument spec: space-separated requirements, each a "|"-list of globs; each requirement
# must match some argument ("-r|-R|--recursive /" = a recursive flag AND the root).
# Precedence: deny > require_approval > require_mfa > allow; on a tie the first rule in
# this file wins. A line is decided command by command; the strictest outcome counts.

# --- Fact shapes (the loader rejects any fact that does not fit, with its line) --------
type unresolved_default(id: String, effect: String, approvers: String, reason: String);
type permission(id: String, role: String, action: String);
type grant(id: String, who: String, where: String, level: String);
type rule(id: String, kind: String, effect: String, who: String, where: String,
          what: String, args: String, approvers: String, mfa_within: Integer, reason: String);
type lockdown(id: String, who: String, where: String, reason: String);
type allow_command(lockdown: String, program: String, args: String);

# --- 1. What happens to what the parser cannot see -------------------------------------
# `eval`, `$CMD args`, `curl ... | bash`, `source file`: the broker cannot know what runs.
# Effect: "deny", "require_approval" (with approvers), "require_mfa" or "allow".
unresolved_default("default.unresolved", "require_approval", "group:security",
    "the command line runs text the broker cannot inspect");

# --- 2. Roles: management actions --------------------------------------------------------
# permission(id, role, action glob). Users reach only their servers (and manage their own
# API tokens, password, browser and terminal sessions, share links and approvals: the
# "*.own.*" actions); staff run daily operations (servers, users, groups, grants, service
# accounts, audit; and may read which policy is in force) but not billing, workspace
# settings or deletion, promoting people to staff or superuser (users.promote), or changing
# security policy, MFA enforcement or SSO; superusers do all. The REST API asks one action
# per route (docs/api.md, "Roles").
permission("perm.user.servers-read", "user", "servers.read");
permission("perm.staff.servers", "staff", "servers.*");
permission("perm.staff.users-invite", "staff", "users.invite");
permission("perm.staff.users-read", "staff", "users.read");
permission("perm.staff.groups", "staff", "groups.*");
permission("perm.staff.audit-read", "staff", "audit.read");
permission("perm.staff.policy-read", "staff", "policy.read");
permission("perm.staff.sessions", "staff", "sessions.*");
permission("perm.staff.approvals", "staff", "approvals.*");
permission("perm.user.tokens-own", "user", "tokens.own.*");
permission("perm.user.servers-connect", "user", "servers.connect");
permission("perm.user.sessions-own", "user", "sessions.own.*");
permission("perm.user.sessions-shared", "user", "sessions.shared.*");
permission("perm.user.approvals-own", "user", "approvals.own.*");
permission("perm.user.self", "user", "users.own.*");
permission("perm.staff.self", "staff", "users.own.*");
permission("perm.staff.users-sessions-read", "staff", "users.sessions.read");
permission("perm.staff.tokens", "staff", "tokens.*");
permission("perm.staff.users-update", "staff", "users.update");
permission("perm.staff.grants", "staff", "grants.*");
permission("perm.staff.service-accounts", "staff", "service_accounts.*");
permission("perm.staff.workspace-read", "staff", "workspace.read");
permission("perm.staff.sso-read", "staff", "sso.read");
permission("perm.superuser.all", "superuser", "*");

# --- 3. Access grants: who reaches which server, at which level ----------------------
# Levels: none (server invisible), read-only (info and metrics), terminal (commands, no
# sudo), full (sudo, file transfer, deploy). The highest matching level wins, except that
# any matching "none" grant hides the server (use it to carve out exceptions).
grant("grant.superusers", "role:superuser", "*", "full");
grant("grant.staff-visibility", "role:staff", "*", "read-only");
grant("grant.staff-staging", "role:staff", "name:staging-*", "full");
grant("grant.ops-prod", "group:ops", "name:production-*", "full");
grant("grant.ops-pci", "group:ops", "tag:zone=pci", "full");
grant("grant.dev-staging", "group:developers", "name:staging-*", "terminal");
grant("grant.dev-web", "group:developers", "name:web-*", "terminal");
grant("grant.dev-prod-readonly", "group:developers", "name:production-*", "read-only");
grant("grant.dba-databases", "group:dba", "group:databases", "full");
grant("grant.support-prod", "group:support", "tag:env=prod", "read-only");
grant("grant.contractors-staging", "group:contractors", "name:staging-*", "terminal");
grant("grant.contractors-no-prod", "group:contractors", "tag:env=prod", "none");
grant("grant.auditor-pci", "user:auditor", "tag:zone=pci", "terminal");

# --- 4. Command, session and action rules ----------------------------------------------
# rule(id, kind, effect, who, where, what, args, approvers, mfa_within, reason)
#   kind "command": what = program glob, args = argument spec
#   kind "session": what = access level glob ("*", "full"); args = ""
#   kind "action":  what = action glob ("policy.*"); where must be "*"
#   effect "deny" | "require_approval" (approvers: space-separated who selectors)
#          | "require_mfa" (mfa_within: seconds since the last MFA that still count)

# Blocklist: never, for anyone.
rule("block.rm-root", "command", "deny", "*", "*", "rm", "-r|-R|--recursive /|/[*]", "", 0,
    "deleting the root file system is never allowed");
rule("block.mkfs", "command", "deny", "*", "*", "mkfs*", "", "", 0,
    "formatting a file system is never allowed from a session");
rule("block.dd-disk", "command", "deny", "*", "*", "dd", "of=/dev/sd*|of=/dev/nvme*|of=/dev/vd*", "", 0,
    "writing raw disks is never allowed");
rule("block.chmod-root", "command", "deny", "*", "*", "chmod", "-R|--recursive /", "", 0,
    "recursive permission changes on / break the host");
rule("block.tmp-exec", "command", "deny", "*", "*", "/tmp/*", "", "", 0,
    "running programs from /tmp is not allowed");
rule("block.history-clear", "command", "deny", "*", "*", "history", "-c", "", 0,
    "clearing the shell history hides activity");
rule("block.unset-histfile", "command", "deny", "*", "*", "unset", "HISTFILE", "", 0,
    "disabling the shell history hides activity");
# Power commands: denied except for ops, who need an approval (next block).
rule("block.shutdown", "command", "deny", "!group:ops", "*", "shutdown", "", "", 0,
    "only ops may power servers off (with an approval)");
rule("block.reboot", "command", "deny", "!group:ops", "*", "reboot", "", "", 0,
    "only ops may reboot servers (with an approval)");
rule("block.halt", "command", "deny", "!group:ops", "*", "halt", "", "", 0,
    "only ops may halt servers (with an approval)");
rule("block.poweroff", "command", "deny", "!group:ops", "*", "poweroff", "", "", 0,
    "only ops may power servers off (with an approval)");
rule("block.systemctl-power", "command", "deny", "!group:ops", "*", "systemctl",
    "poweroff|reboot|halt|kexec", "", 0, "only ops may power servers off (with an approval)");

# Approvals: the line is held until a named approver agrees.
rule("approve.shutdown", "command", "require_approval", "group:ops", "*", "shutdown", "",
    "group:sre-leads", 0, "powering off needs an SRE lead's approval");
rule("approve.reboot", "command", "require_approval", "group:ops", "*", "reboot", "",
    "group:sre-leads", 0, "rebooting needs an SRE lead's approval");
rule("approve.systemctl-prod", "command", "require_approval", "*", "name:production-*",
    "systemctl", "stop|restart|disable|mask|poweroff|reboot|halt|kexec",
    "group:sre-leads user:alice", 0, "changing services on production needs an approval");
rule("approve.psql-prod", "command", "require_approval", "!group:dba", "name:production-*",
    "psql", "", "group:dba", 0, "production database shells need a DBA's approval");
rule("approve.crontab-remove", "command", "require_approval", "*", "*", "crontab", "-r", "group:sre-leads", 0,
    "removing a crontab needs an approval");
rule("approve.iptables-flush", "command", "require_approval", "*", "*", "iptables", "-F|--flush",
    "group:security", 0, "flushing the firewall needs security's approval");

# Step-up MFA: the line runs only if the person did MFA within the window.
rule("mfa.packages-prod", "command", "require_mfa", "*", "tag:env=prod", "apt*",
    "install|remove|purge|upgrade|dist-upgrade", "", 300,
    "package changes on production need an MFA within 5 minutes");
rule("mfa.kubectl-prod", "command", "require_mfa", "*", "name:production-*", "kubectl",
    "delete|apply|drain|scale", "", 600,
    "cluster changes from production hosts need an MFA within 10 minutes");
rule("mfa.prod-session", "session", "require_mfa", "*", "tag:env=prod", "*", "", "", 3600,
    "production sessions need an MFA within the last hour");
rule("approve.pci-full", "session", "require_approval", "!role:superuser", "tag:zone=pci",
    "full", "", "group:security", 0, "full access to PCI servers needs security's approval");
rule("deny.suspended", "action", "deny", "group:suspended", "*", "*", "", "", 0,
    "suspended accounts may not manage anything");
rule("mfa.policy-update", "action", "require_mfa", "*", "*", "policy.update", "", "", 300,
    "changing security policy needs an MFA within 5 minutes");
rule("mfa.workspace-delete", "action", "require_mfa", "*", "*", "workspace.delete", "", "", 300,
    "deleting the workspace needs an MFA within 5 minutes");
rule("mfa.billing", "action", "require_mfa", "*", "*", "billing.*", "", "", 900,
    "billing changes need an MFA within 15 minutes");

# --- 5. Locked-down servers: only allowlisted commands run -----------------------------
# lockdown(id, who, where, reason); allow_command(lockdown id, program glob, arg spec).
lockdown("lockdown.pci", "*", "tag:zone=pci", "PCI servers run only allowlisted commands");
allow_command("lockdown.pci", "ls", "");
allow_command("lockdown.pci", "cat", "");
allow_command("lockdown.pci", "tail", "");
allow_command("lockdown.pci", "head", "");
allow_command("lockdown.pci", "grep", "");
allow_command("lockdown.pci", "df", "");
allow_command("lockdown.pci", "free", "");
allow_command("lockdown.pci", "uptime", "");
allow_command("lockdown.pci", "ps", "");
allow_command("lockdown.pci", "whoami", "");
allow_command("lockdown.pci", "journalctl", "");
allow_command("lockdown.pci", "systemctl", "status");
lockdown("lockdown.bastion", "!role:superuser", "name:bastion-*",
    "bastions only forward connections");
allow_command("lockdown.bastion", "ssh", "");
allow_command("lockdown.bastion", "whoami", "");

# --- 6. (your additions here) ------------------------------------------------------------

# --- 7. Decision logic: how the facts above are applied --------------------------------
# The broker asks these questions; Match.* are the shared matching primitives (globs,
# selectors, argument specs, MFA windows) so every backend matches identically.
unresolved_default(_: String, _: String, _: String, _: String) if false;
permission(_: String, _: String, _: String) if false;
grant(_: String, _: String, _: String, _: String) if false;
rule(_: String, _: String, _: String, _: String, _: String, _: String, _: String, _: String,
     _: Integer, _: String) if false;
lockdown(_: String, _: String, _: String, _: String) if false;
allow_command(_: String, _: String, _: String) if false;

grant_for(subject: Subject, server: Server, id, level) if
    grant(id, who, where, level) and
    Match.subject(subject, who) and
    Match.server(server, where);

rule_for(subject: Subject, server, kind, target, id, effect, approvers, within, reason) if
    rule(id, kind, effect, who, where, what, args, approvers, within, reason) and
    Match.subject(subject, who) and
    Match.server(server, where) and
    Match.target(kind, target, what, args) and
    Match.step_up(subject, effect, within);

lockdown_for(subject: Subject, server: Server, cmd: SimpleCommand, id, reason) if
    lockdown(id, who, where, reason) and
    Match.subject(subject, who) and
    Match.server(server, where) and
    not allowlisted(id, cmd);

allowlisted(id, cmd: SimpleCommand) if
    allow_command(id, program, args) and
    Match.command(cmd, program, args);

permitted(subject: Subject, action: String, id) if
    permission(id, role, pattern) and
    Match.has_role(subject, role) and
    Match.glob(pattern, action);

# oso's conventional entry point, for tools that expect one.
allow(subject: Subject, action: String, _resource) if permitted(subject, action, _);
