"""The problem+json a policy decision that is not ``allow`` becomes: ``policy-denied``,
``mfa-required`` or ``approval-required``, naming the rule and what would be needed.

Shared by the management actions (:mod:`api.authz`) and exec-mode commands
(:mod:`api.policy`); it only shapes answers and never decides anything itself.
"""

from __future__ import annotations

from typing import Any

from api.problems import ApiError
from policies import Decision, Effect

__all__ = ["ApprovalRequired", "CommandDenied", "MfaRequired", "decision_problem"]


class CommandDenied(ApiError):
    status, code, title = 403, "policy-denied", "Denied by policy"


class MfaRequired(ApiError):
    status, code, title = 403, "mfa-required", "A recent MFA is required"


class ApprovalRequired(ApiError):
    status, code, title = 409, "approval-required", "An approval is required"


def decision_problem(decision: Decision) -> ApiError:
    """The problem for a decision that is not ``allow``: names the rule and what is needed."""
    extra: dict[str, Any] = {
        "rule_id": decision.rule_id,
        "reason": decision.reason,
        "effect": str(decision.effect),
        "policy_version": decision.version,
    }
    if decision.effect is Effect.REQUIRE_MFA:
        extra["mfa_within"] = decision.mfa_within
        detail = f"an MFA within {decision.mfa_within} s is required ({decision.rule_id})"
        return MfaRequired(detail, **extra)
    if decision.effect is Effect.REQUIRE_APPROVAL:
        extra["approvers"] = list(decision.approvers)
        detail = (
            f"an approval by {' or '.join(decision.approvers)} is required ({decision.rule_id}); "
            "exec requests are not held: ask for the approval, then retry"
        )
        return ApprovalRequired(detail, **extra)
    return CommandDenied(f"denied by {decision.rule_id}: {decision.reason}", **extra)
