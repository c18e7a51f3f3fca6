"""Selection: how many instances a strategy runs, and which candidate each instance gets."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

from scheduler.placement.model import NodeView
from scheduler.placement.state import InstanceContext, PlacementError


class Strategy:
    """A deploy strategy: instance count, offline grace and node choice."""

    name: ClassVar[str]
    # How long a disconnected node still counts as holding its instances (for rescheduling).
    offline_grace_seconds: ClassVar[int]

    def instance_count(self, node_count: int, container_count: int) -> int:
        """How many instances to run, given the nodes that pass the filters."""
        return container_count

    def choose(
        self, ctx: InstanceContext, candidates: Sequence[NodeView], rng: random.Random
    ) -> NodeView:
        """The node for this instance; raises PlacementError when the strategy finds none."""
        if ctx.service.stateful and ctx.previous_node_id is not None:
            return self._stay(ctx, candidates, ctx.previous_node_id)
        return self.pick(ctx, candidates, rng)

    def pick(
        self, ctx: InstanceContext, candidates: Sequence[NodeView], rng: random.Random
    ) -> NodeView:
        """The choice for an instance that is free to go anywhere among the candidates."""
        raise NotImplementedError

    def _stay(self, ctx: InstanceContext, candidates: Sequence[NodeView], node_id: str) -> NodeView:
        # Stateful data lives on the node: never move it, fail loudly instead.
        for node in candidates:
            if node.id == node_id:
                return node
        name = ctx.cluster.node_names.get(node_id)
        where = f"node {name}, which did not pass the filters" if name else "a node not connected"
        raise PlacementError(
            self.name,
            f"Strategy {self.name} did not find any node: stateful instance {ctx.name} "
            f"lives on {where}",
        )


def _memory_used(node: NodeView) -> float:
    if not node.mem_total or node.mem_free is None:
        return 0.0
    return (node.mem_total - node.mem_free) / node.mem_total


class HighAvailability(Strategy):
    """Spread over availability zones (`az=` labels), then over nodes; sticky when balanced."""

    name = "ha"
    offline_grace_seconds = 120

    def pick(
        self, ctx: InstanceContext, candidates: Sequence[NodeView], rng: random.Random
    ) -> NodeView:
        """Fewest of this deploy's instances in the zone, then on the node, then stay, then free."""
        cluster = ctx.cluster
        here = ctx.previous_node_id

        def key(node: NodeView) -> tuple[int, int, float]:
            rank = 10 - (5 if node.id == here else 0) + _memory_used(node)
            return (cluster.scheduled_az[cluster.az(node.id)], cluster.scheduled[node.id], rank)

        # Shuffle first so that ties are broken at random, not by node order.
        shuffled = list(candidates)
        rng.shuffle(shuffled)
        return min(shuffled, key=key)


class Daemon(Strategy):
    """`container_count` instances on every node that passes the filters, spread evenly."""

    name = "daemon"
    offline_grace_seconds = 600

    def instance_count(self, node_count: int, container_count: int) -> int:
        """Nodes times containers per node."""
        return node_count * container_count

    def pick(
        self, ctx: InstanceContext, candidates: Sequence[NodeView], rng: random.Random
    ) -> NodeView:
        """Fewest instances of the service first, staying put while within the per-node share."""
        here = ctx.previous_node_id
        cluster = ctx.cluster
        share = ctx.service.instances

        def key(node: NodeView) -> tuple[int, int]:
            count = cluster.own_count(node.id, ctx.instance_number)
            # Kontena always stays (-1); we stay only while the node holds no more than its
            # share, so a layout that went uneven (a node was away) evens out again.
            if node.id == here and count < share:
                count = -1
            return (count, node.node_number)

        return min(candidates, key=key)


class Random(Strategy):
    """Where the instance already is, if it can stay; else any candidate."""

    name = "random"
    offline_grace_seconds = 30

    def pick(
        self, ctx: InstanceContext, candidates: Sequence[NodeView], rng: random.Random
    ) -> NodeView:
        """The previous node when it is a candidate, else a random one."""
        here = ctx.previous_node_id
        for node in candidates:
            if node.id == here:
                return node
        return rng.choice(list(candidates))


STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy for strategy in (HighAvailability(), Daemon(), Random())
}
