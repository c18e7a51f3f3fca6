"""Plain data the placement works on: nodes, the service, existing instances, the plan."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeView:
    """A connected node as placement sees it."""

    id: str
    name: str
    node_number: int
    labels: tuple[str, ...] = ()
    availability: str = "active"  # active | drain
    cpus: int | None = None
    mem_total: int | None = None
    mem_free: int | None = None  # total - (used - cached - buffers) from the latest stats
    volume_drivers: tuple[str, ...] = ("local",)
    # Named volume instances on the node ("stack.svc.vol-1"), for the soft volume-instance filter.
    volume_instances: tuple[str, ...] = ()
    # Container names on the node that no instance below accounts for (affinity `container`).
    containers: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstanceView:
    """An instance already assigned to a node (any service of the grid)."""

    service_id: str
    service_name: str  # "svc" or "stack.svc", as container names start
    instance_number: int
    node_id: str | None
    node_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class ServiceView:
    """The service being placed."""

    id: str
    name: str  # "svc" or "stack.svc"
    stack: str
    strategy: str = "ha"  # ha | daemon | random
    stateful: bool = False
    instances: int = 1  # container_count
    affinity: tuple[str, ...] = ()  # empty → the grid's default_affinity applies
    node_ports: tuple[int, ...] = ()
    cpus: float | None = None
    memory: int | None = None  # memory or memory_swap, bytes
    volume_drivers: tuple[str, ...] = ()
    instance_volumes: tuple[str, ...] = ()  # names of the `instance`-scoped named volumes
    volumes_from: tuple[str, ...] = ()  # may contain %s = instance number
    net: str = "bridge"


@dataclass(frozen=True)
class Placement:
    """Instance ``instance_number`` goes to ``node_id``."""

    instance_number: int
    node_id: str


@dataclass
class Plan:
    """The outcome: placements, or an error naming the filter and the rule that emptied it."""

    placements: list[Placement] = field(default_factory=list)
    error: str | None = None
    # How many nodes each filter rejected, by filter name: summed over the instances when the
    # plan succeeds, the failing instance's counts alone when it does not.
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every instance found a node."""
        return self.error is None
