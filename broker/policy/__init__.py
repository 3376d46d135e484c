"""The broker's side of policy: turning store rows into policy requests, the policy in
force with its reloads, and exec-mode decisions. The decisions themselves live in
:mod:`policies`."""

from broker.policy.mfa import MfaAges, NoMfa
from broker.policy.runtime import PolicyRuntime, PolicySource
from broker.policy.subjects import server_of, subject_of

__all__ = ["MfaAges", "NoMfa", "PolicyRuntime", "PolicySource", "server_of", "subject_of"]
