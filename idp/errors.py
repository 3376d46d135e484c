"""Identity errors. Everything else the identity layer refuses is a broker error
(:class:`AuthenticationFailed`, :class:`InvalidInput`), so the API maps one tree.

    CorralError
    └── IdentityError
        ├── RateLimited        too many attempts; ``retry_after`` seconds until the next
        └── MfaRequired        the password was right, a second factor is still owed
"""

from __future__ import annotations

from broker.errors import CorralError

__all__ = ["IdentityError", "MfaRequired", "RateLimited"]


class IdentityError(CorralError):
    """Root of the identity layer's own refusals."""


class RateLimited(IdentityError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))


class MfaRequired(IdentityError):
    """The caller must complete (or enrol) a second factor first."""
