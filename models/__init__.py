"""SQLAlchemy models, database setup and migrations."""

from models.acme import AcmeAccount, Certificate, CertificateRequest, DomainAuthorization
from models.auth_requests import AuthorizationRequest
from models.base import Base
from models.config import ConfigEntry
from models.container_logs import ContainerLog, ContainerLogCursor
from models.containers import Container, ContainerStat
from models.grids import Grid
from models.leases import Lease, TickRun
from models.logs import AuditLog, EventLog
from models.nodes import Node, NodeStat
from models.registries import Registry
from models.secrets import GridSecret
from models.services import Service, ServiceDeploy, ServiceInstance
from models.stacks import Stack, StackDeploy, StackRemoval, StackRevision
from models.tokens import AccessToken
from models.users import Role, User, grid_users, user_roles
from models.volumes import Volume, VolumeInstance
from models.work import WorkRowMixin, WorkState

__all__ = [
    "AccessToken",
    "AcmeAccount",
    "AuditLog",
    "AuthorizationRequest",
    "Base",
    "Certificate",
    "CertificateRequest",
    "ConfigEntry",
    "Container",
    "ContainerLog",
    "ContainerLogCursor",
    "ContainerStat",
    "DomainAuthorization",
    "EventLog",
    "Grid",
    "GridSecret",
    "Lease",
    "Node",
    "NodeStat",
    "Registry",
    "Role",
    "Service",
    "ServiceDeploy",
    "ServiceInstance",
    "Stack",
    "StackDeploy",
    "StackRemoval",
    "StackRevision",
    "TickRun",
    "User",
    "Volume",
    "VolumeInstance",
    "WorkRowMixin",
    "WorkState",
    "grid_users",
    "user_roles",
]
