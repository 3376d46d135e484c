"""Tenant-scoped services: the only code that reads or writes domain rows.

Every public method of every class in :data:`TENANT_SERVICES` takes the workspace id as its
first argument (after ``self``) and cannot see or touch another workspace's rows;
``tests/broker/test_tenancy.py`` walks them all to prove it.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.audit import AuditLog
from broker.services.accounts import AccountService
from broker.services.approvals import ApprovalService
from broker.services.base import Clock, Service
from broker.services.browser import BrowserSessionService
from broker.services.credentials import AgentService, TokenService
from broker.services.directory import GroupService, UserService
from broker.services.factors import FactorService
from broker.services.grants import GrantService
from broker.services.inventory import ServerGroupService, ServerService
from broker.services.lifecycle import IdentityLifecycleService
from broker.services.service_accounts import ServiceAccountService
from broker.services.sessions import RecordingService, SessionService
from broker.services.sso import SsoService
from broker.services.workspaces import WorkspaceService
from broker.store.db import Database
from broker.store.models import utcnow

__all__ = [
    "TENANT_SERVICES",
    "AccountService",
    "AgentService",
    "ApprovalService",
    "BrowserSessionService",
    "FactorService",
    "GrantService",
    "GroupService",
    "IdentityLifecycleService",
    "RecordingService",
    "ServerGroupService",
    "ServerService",
    "ServiceAccountService",
    "Services",
    "SessionService",
    "SsoService",
    "TokenService",
    "UserService",
    "WorkspaceService",
]

TENANT_SERVICES: tuple[type[Service], ...] = (
    UserService,
    GroupService,
    ServerService,
    ServerGroupService,
    GrantService,
    SessionService,
    RecordingService,
    ApprovalService,
    TokenService,
    AgentService,
    WorkspaceService,
    AccountService,
    BrowserSessionService,
    FactorService,
    SsoService,
    IdentityLifecycleService,
    ServiceAccountService,
)


@dataclass(frozen=True)
class Services:
    """Every service over one database, audit log and clock; built once per process."""

    db: Database
    audit: AuditLog
    workspaces: WorkspaceService
    users: UserService
    groups: GroupService
    servers: ServerService
    server_groups: ServerGroupService
    grants: GrantService
    sessions: SessionService
    recordings: RecordingService
    approvals: ApprovalService
    tokens: TokenService
    agents: AgentService
    accounts: AccountService
    browser_sessions: BrowserSessionService
    factors: FactorService
    sso: SsoService
    lifecycle: IdentityLifecycleService
    service_accounts: ServiceAccountService

    @classmethod
    def build(cls, db: Database, audit: AuditLog, *, clock: Clock = utcnow) -> Services:
        return cls(
            db=db,
            audit=audit,
            workspaces=WorkspaceService(db, audit, clock=clock),
            users=UserService(db, audit, clock=clock),
            groups=GroupService(db, audit, clock=clock),
            servers=ServerService(db, audit, clock=clock),
            server_groups=ServerGroupService(db, audit, clock=clock),
            grants=GrantService(db, audit, clock=clock),
            sessions=SessionService(db, audit, clock=clock),
            recordings=RecordingService(db, audit, clock=clock),
            approvals=ApprovalService(db, audit, clock=clock),
            tokens=TokenService(db, audit, clock=clock),
            agents=AgentService(db, audit, clock=clock),
            accounts=AccountService(db, audit, clock=clock),
            browser_sessions=BrowserSessionService(db, audit, clock=clock),
            factors=FactorService(db, audit, clock=clock),
            sso=SsoService(db, audit, clock=clock),
            lifecycle=IdentityLifecycleService(db, audit, clock=clock),
            service_accounts=ServiceAccountService(db, audit, clock=clock),
        )
