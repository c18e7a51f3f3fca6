"""plan_deploy: how many instances, and the node of each, with the reason when one fits nowhere."""

from __future__ import annotations

import random
from collections.abc import Sequence

from scheduler.placement.filters import run_filters
from scheduler.placement.model import InstanceView, NodeView, Placement, Plan, ServiceView
from scheduler.placement.state import Cluster, InstanceContext, PlacementError
from scheduler.placement.strategies import STRATEGIES, Daemon, Strategy


def _failure(service: ServiceView, instance_number: int, error: PlacementError) -> str:
    return (
        f"Cannot find applicable node for service instance {service.name}-{instance_number}: "
        f"{error.message}"
    )


def _instance_count(
    strategy: Strategy, cluster: Cluster, rules: tuple[str, ...]
) -> tuple[int, PlacementError | None]:
    """The strategy's instance count over the nodes that pass the filters for some instance.

    Kontena's two-step count: ask the strategy with every node, try the filters for each of those
    instance numbers, then ask again with the number of distinct nodes that passed. Only the
    daemon strategy depends on the node count, so only it pays for the simulation.
    """
    service = cluster.service
    if not isinstance(strategy, Daemon):
        return strategy.instance_count(len(cluster.nodes), service.instances), None
    eligible: set[str] = set()
    first_error: PlacementError | None = None
    for number in range(1, strategy.instance_count(len(cluster.nodes), service.instances) + 1):
        ctx = InstanceContext(service, number, cluster, rules)
        try:
            eligible.update(node.id for node in run_filters(ctx, cluster.nodes, {}))
        except PlacementError as exc:
            first_error = first_error or exc
        if len(eligible) == len(cluster.nodes):
            break
    return strategy.instance_count(len(eligible), service.instances), first_error


def plan_deploy(
    service: ServiceView,
    nodes: Sequence[NodeView],
    existing: Sequence[InstanceView],
    default_affinity: Sequence[str],
    rng: random.Random | None = None,
) -> Plan:
    """Place every instance of ``service`` on ``nodes`` (the grid's connected nodes).

    ``existing`` holds the grid's current instance assignments (all services); this service's
    own ones make placements sticky. Instances are placed in order 1..total, each seeing the
    placements before it, so spreading and port clashes account for this deploy too.
    """
    strategy = STRATEGIES.get(service.strategy)
    if strategy is None:
        return Plan(error=f"Unknown deploy strategy '{service.strategy}' for {service.name}")
    rng = rng or random.Random()
    rules = tuple(service.affinity or default_affinity)
    cluster = Cluster(service, nodes, existing)
    total, count_error = _instance_count(strategy, cluster, rules)
    if total == 0 and service.instances > 0:
        # Kontena deploys a daemon that fits nowhere "successfully" with no instance (#3094);
        # an error that names the filter is what its users asked for.
        error = count_error or PlacementError("nodes", "There are no nodes available")
        return Plan(error=_failure(service, 1, error))
    cluster.drop_above(total)

    plan = Plan()
    for number in range(1, total + 1):
        ctx = InstanceContext(service, number, cluster, rules)
        rejected: dict[str, int] = {}
        try:
            candidates = run_filters(ctx, cluster.nodes, rejected)
            try:
                node = strategy.choose(ctx, candidates, rng)
            except PlacementError:
                rejected[strategy.name] = len(candidates)
                raise
        except PlacementError as exc:
            plan.error = _failure(service, number, exc)
            plan.rejected = rejected
            return plan
        for name, count in rejected.items():
            plan.rejected[name] = plan.rejected.get(name, 0) + count
        cluster.place(number, node)
        plan.placements.append(Placement(number, node.id))
    return plan
