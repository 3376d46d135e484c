"""The broker's side of policy: turning store rows into policy requests, and (later) the
policy in force with its reloads. The decisions themselves live in :mod:`policies`."""

from broker.policy.subjects import server_of, subject_of

__all__ = ["server_of", "subject_of"]
