"""Pure placement: filters, strategies and the affinity grammar; no database, no I/O."""

from scheduler.placement.affinity import AffinityError, validate
from scheduler.placement.filters import FILTERS, volume_instance_name
from scheduler.placement.model import InstanceView, NodeView, Placement, Plan, ServiceView
from scheduler.placement.plan import plan_deploy
from scheduler.placement.strategies import STRATEGIES

__all__ = [
    "FILTERS",
    "STRATEGIES",
    "AffinityError",
    "InstanceView",
    "NodeView",
    "Placement",
    "Plan",
    "ServiceView",
    "plan_deploy",
    "validate",
    "volume_instance_name",
]
