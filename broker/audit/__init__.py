"""The tamper-evident audit trail: one hash chain per workspace."""

from broker.audit.chain import ChainBreak, VerifyResult
from broker.audit.log import SYSTEM, Actor, AuditLog, Category, Outcome

__all__ = ["SYSTEM", "Actor", "AuditLog", "Category", "ChainBreak", "Outcome", "VerifyResult"]
