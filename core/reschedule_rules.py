"""Continuous rescheduling, the pure part: should a running service be redeployed, and why.

Reference §3.6 (Kontena's GridScheduler): a running stateless service with no pending or running
deploy is redeployed when its placement is wrong (a node was lost past the strategy's grace
period, drained, or a new node fits a daemon service), when it changed after its last deploy
(``revision > deployed_revision``), or when ``deploy_opts.interval`` elapsed. Nothing here touches
the database or a clock: the caller passes the facts and ``now`` (tests inject both).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scheduler.placement import STRATEGIES

DEFAULT_GRACE_SECONDS = 120  # ha's; an unknown strategy cannot be placed anyway


@dataclass(frozen=True)
class NodeFacts:
    """What rescheduling needs of a node."""

    id: str
    name: str
    connected: bool
    availability: str = "active"
    disconnected_at: datetime | None = None


@dataclass(frozen=True)
class ServiceFacts:
    """A service as the tick saw it; ``planned`` is None when placement found no layout."""

    path: str  # grid/stack/name, for the event line
    strategy: str = "ha"
    stateful: bool = False
    state: str = "running"
    deploying: bool = False  # a deploy is created (pending) or ongoing
    revision: int = 1
    deployed_revision: int | None = None
    deployed_at: datetime | None = None
    interval: int | None = None  # deploy_opts.interval, seconds
    current: Mapping[int, str | None] = field(default_factory=dict)  # instance → node id
    planned: Mapping[int, str] | None = field(default_factory=dict)  # instance → node id


@dataclass(frozen=True)
class Decision:
    """Redeploy, because of ``reasons``; ``force`` bumps the revision (interval redeploys)."""

    reasons: tuple[str, ...]
    force: bool = False

    @property
    def why(self) -> str:
        """The reasons as one line."""
        return "; ".join(self.reasons)


def grace_seconds(strategy: str) -> int:
    """How long a disconnected node still counts as holding its instances (ha 120, daemon 600,
    random 30 s)."""
    found = STRATEGIES.get(strategy)
    return found.offline_grace_seconds if found is not None else DEFAULT_GRACE_SECONDS


def within_grace(node: NodeFacts, strategy: str, now: datetime) -> bool:
    """True when the node is connected, or went offline less than the grace period ago."""
    if node.connected:
        return True
    if node.disconnected_at is None:
        return False
    return now - node.disconnected_at <= timedelta(seconds=grace_seconds(strategy))


def nodes_in_play(
    nodes: Iterable[NodeFacts], strategy: str, now: datetime, holding: Collection[str]
) -> list[NodeFacts]:
    """The nodes the placement check may use: connected ones, plus offline ones still within
    grace that hold one of the service's instances (``holding``: their ids).

    An offline node only counts for keeping what it holds: offered for new placements, it would
    make the check want a layout the deploy (connected nodes only) cannot produce, every tick.
    """
    return [
        node
        for node in nodes
        if node.connected or (node.id in holding and within_grace(node, strategy, now))
    ]


def _lost_reason(
    node_id: str | None, number: int, nodes: Mapping[str, NodeFacts], strategy: str, now: datetime
) -> str | None:
    """Why instance ``number`` cannot stay on ``node_id``, if its node is the cause."""
    if node_id is None:
        return f"instance {number} has no node"
    node = nodes.get(node_id)
    if node is None:
        return f"the node of instance {number} was removed"
    if not within_grace(node, strategy, now):
        return (
            f"node {node.name} has been offline longer than the {grace_seconds(strategy)} s "
            f"grace of strategy {strategy}"
        )
    if node.availability == "drain":
        return f"node {node.name} was drained"
    return None


def placement_reasons(
    facts: ServiceFacts, nodes: Mapping[str, NodeFacts], now: datetime
) -> list[str]:
    """Why the planned layout differs from the current one (empty: it does not)."""
    planned = facts.planned
    if planned is None or dict(planned) == dict(facts.current):
        return []
    reasons: list[str] = []
    for number, node_id in sorted(facts.current.items()):
        if planned.get(number) == node_id:
            continue
        reason = _lost_reason(node_id, number, nodes, facts.strategy, now)
        if reason is None:
            target = nodes.get(planned[number]) if number in planned else None
            reason = (
                f"instance {number} belongs on node {target.name}"
                if target is not None
                else f"instance {number} is no longer needed"
            )
        reasons.append(reason)
    occupied = {node_id for node_id in facts.current.values() if node_id}
    for node_id in sorted({planned[n] for n in planned if n not in facts.current} - occupied):
        node = nodes.get(node_id)
        reasons.append(f"node {node.name if node else node_id} is available")
    if any(n not in facts.current for n in planned) and not reasons:
        reasons.append("instances are missing")
    return list(dict.fromkeys(reasons))


def decide(
    facts: ServiceFacts, nodes: Sequence[NodeFacts] | Mapping[str, NodeFacts], now: datetime
) -> Decision | None:
    """Whether to redeploy the service now (None: leave it alone)."""
    if facts.stateful or facts.state != "running" or facts.deploying:
        # Stateful data lives on its node: never moved automatically (reference §3.9).
        return None
    by_id = nodes if isinstance(nodes, Mapping) else {node.id: node for node in nodes}
    reasons = placement_reasons(facts, by_id, now)
    if facts.deployed_revision is not None and facts.revision > facts.deployed_revision:
        reasons.append(
            f"revision {facts.revision} changed after the deploy of revision "
            f"{facts.deployed_revision}"
        )
    force = False
    if (
        facts.interval
        and facts.deployed_at is not None
        and now - facts.deployed_at >= timedelta(seconds=facts.interval)
    ):
        reasons.append(f"deploy interval of {facts.interval} s elapsed")
        force = True
    if not reasons:
        return None
    return Decision(tuple(reasons), force)
