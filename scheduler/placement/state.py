"""The working state of one plan: which instances sit on which node, updated as we place."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from scheduler.placement.model import InstanceView, NodeView, ServiceView

DEFAULT_AZ = "default"


class PlacementError(Exception):
    """No node fits one instance; ``source`` is the filter or strategy, the message says why."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(message)
        self.source = source
        self.message = message


def service_path(service_name: str) -> str:
    """``stack/svc`` from a container-style service name (``stack.svc``, or ``svc`` = no stack)."""
    stack, dot, name = service_name.partition(".")
    return f"{stack}/{name}" if dot else f"null/{service_name}"


def availability_zone(node: NodeView) -> str:
    """The node's ``az=`` label value, or ``default``."""
    for label in node.labels:
        if label.startswith("az="):
            return label[3:]
    return DEFAULT_AZ


def is_ephemeral(node: NodeView) -> bool:
    """True when the node carries an ``ephemeral`` label (any value)."""
    return any(label == "ephemeral" or label.startswith("ephemeral=") for label in node.labels)


@dataclass(frozen=True)
class Occupant:
    """An instance assigned to a node, as the filters see it."""

    service_id: str
    service_name: str
    instance_number: int
    node_ports: tuple[int, ...]
    container_name: str  # `<service_name>-<n>`
    path: str  # `stack/svc`, as affinity `service` rules name it

    @classmethod
    def of(
        cls, service_id: str, service_name: str, number: int, ports: tuple[int, ...]
    ) -> Occupant:
        """An occupant with its derived names filled in."""
        name = f"{service_name}-{number}"
        return cls(service_id, service_name, number, ports, name, service_path(service_name))


Key = tuple[str, int]  # (service_id, instance_number)


@dataclass
class _NodeIndex:
    """What sits on one node, counted so that filters need not walk the instances."""

    occupants: dict[Key, Occupant] = field(default_factory=dict)
    names: Counter[str] = field(default_factory=Counter)
    paths: Counter[str] = field(default_factory=Counter)
    ports: Counter[int] = field(default_factory=Counter)

    def add(self, key: Key, occupant: Occupant) -> None:
        self.occupants[key] = occupant
        self.names[occupant.container_name] += 1
        self.paths[occupant.path] += 1
        self.ports.update(occupant.node_ports)

    def remove(self, key: Key) -> None:
        occupant = self.occupants.pop(key, None)
        if occupant is not None:
            self.names[occupant.container_name] -= 1
            self.paths[occupant.path] -= 1
            self.ports.subtract(occupant.node_ports)


class Present(Collection[str]):
    """The names counted on a node, minus one occurrence of ``skip``, plus ``extra``."""

    __slots__ = ("_counts", "_extra", "_skip")

    def __init__(self, counts: Counter[str], skip: str | None, extra: tuple[str, ...] = ()) -> None:
        self._counts = counts
        self._skip = skip
        self._extra = extra

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._extra:
            return True
        return self._counts[name] - (name == self._skip) > 0

    def __iter__(self) -> Iterator[str]:
        for name, count in self._counts.items():
            if count - (name == self._skip) > 0:
                yield name
        yield from self._extra

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Cluster:
    """Nodes plus every instance assignment, as it stands at this point of the plan."""

    def __init__(
        self, service: ServiceView, nodes: Sequence[NodeView], existing: Sequence[InstanceView]
    ) -> None:
        self.service = service
        self.nodes = list(nodes)
        self.node_names = {node.id: node.name for node in nodes}
        self._index: dict[str, _NodeIndex] = defaultdict(_NodeIndex)
        # Where each instance of this service was before the plan (None: its node is gone).
        self.previous: dict[int, str | None] = {}
        # This service's instance numbers per node, kept for the daemon strategy's spread.
        self._own: dict[str, set[int]] = defaultdict(set)
        # Placements made by this plan, for the ha spread and the memory accounting.
        self.scheduled: Counter[str] = Counter()
        self.scheduled_az: Counter[str] = Counter()
        self.planned_memory: Counter[str] = Counter()
        self._az = {node.id: availability_zone(node) for node in nodes}
        for instance in existing:
            own = instance.service_id == service.id
            if own:
                self.previous[instance.instance_number] = instance.node_id
            if instance.node_id is None:
                continue
            occupant = Occupant.of(
                instance.service_id,
                instance.service_name,
                instance.instance_number,
                instance.node_ports,
            )
            self._index[instance.node_id].add(
                (instance.service_id, instance.instance_number), occupant
            )
            if own:
                self._own[instance.node_id].add(instance.instance_number)

    def drop_above(self, total: int) -> None:
        """Forget this service's instances numbered above ``total`` (the deploy deletes them)."""
        for number in [n for n in self.previous if n > total]:
            node_id = self.previous.pop(number)
            if node_id is not None:
                self._index[node_id].remove((self.service.id, number))
                self._own[node_id].discard(number)

    def _moving(self, index: _NodeIndex, instance_number: int) -> Occupant | None:
        # The instance being placed is moving, not staying: it never counts against itself.
        return index.occupants.get((self.service.id, instance_number))

    def container_names(
        self, node_id: str, instance_number: int, extra: tuple[str, ...] = ()
    ) -> Present:
        """Container names of the other instances on the node, plus ``extra``."""
        index = self._index.get(node_id)
        if index is None:
            return Present(Counter(), None, extra)
        moving = self._moving(index, instance_number)
        return Present(index.names, moving.container_name if moving else None, extra)

    def service_paths(self, node_id: str, instance_number: int) -> Present:
        """``stack/svc`` of the other instances on the node."""
        index = self._index.get(node_id)
        if index is None:
            return Present(Counter(), None)
        moving = self._moving(index, instance_number)
        return Present(index.paths, moving.path if moving else None)

    def ports_taken(self, node_id: str, instance_number: int, ports: Iterable[int]) -> bool:
        """True when another instance on the node publishes one of ``ports``."""
        index = self._index.get(node_id)
        if index is None:
            return False
        moving = self._moving(index, instance_number)
        own = moving.node_ports if moving else ()
        return any(index.ports[port] - own.count(port) > 0 for port in ports)

    def own_count(self, node_id: str, instance_number: int) -> int:
        """How many other instances of this service are on the node now."""
        numbers = self._own.get(node_id, set())
        return len(numbers) - (instance_number in numbers)

    def az(self, node_id: str) -> str:
        """The availability zone of a node."""
        return self._az[node_id]

    def place(self, instance_number: int, node: NodeView) -> None:
        """Record that this plan puts the instance on the node."""
        key = (self.service.id, instance_number)
        old = self.previous.get(instance_number)
        if old is not None:
            self._index[old].remove(key)
            self._own[old].discard(instance_number)
        self._index[node.id].add(
            key,
            Occupant.of(
                self.service.id, self.service.name, instance_number, self.service.node_ports
            ),
        )
        self._own[node.id].add(instance_number)
        self.scheduled[node.id] += 1
        self.scheduled_az[self._az[node.id]] += 1
        if old != node.id and self.service.memory:
            self.planned_memory[node.id] += self.service.memory


@dataclass
class InstanceContext:
    """One instance being placed: the service, its number, the cluster and its affinity rules."""

    service: ServiceView
    instance_number: int
    cluster: Cluster
    rules: tuple[str, ...]

    @property
    def name(self) -> str:
        """``<service_name>-<n>``, as in the error messages and container names."""
        return f"{self.service.name}-{self.instance_number}"

    @property
    def previous_node_id(self) -> str | None:
        """The node this instance was on before the plan, if any."""
        return self.cluster.previous.get(self.instance_number)
