"""Feasibility: the nine node filters, in Kontena's order.

Each filter takes the candidates left by the previous one and returns the nodes it keeps. A hard
filter that would leave nothing raises PlacementError with a message naming its rule; the plan
counts every node a filter drops under the filter's name.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from scheduler.placement.affinity import AffinityError, Rule, expand, rules_for
from scheduler.placement.model import NodeView, ServiceView
from scheduler.placement.state import InstanceContext, PlacementError, is_ephemeral

Nodes = list[NodeView]


@dataclass(frozen=True)
class Filter:
    """A named filter; ``soft`` ones narrow the candidates but never empty them."""

    name: str
    run: Callable[[InstanceContext, Nodes], Nodes]
    soft: bool = False


def _ruby_list(items: Iterable[str]) -> str:
    """A list the way Ruby's inspect prints it, as Kontena's messages do: ``["a", "b"]``."""
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def volume_instance_name(service: ServiceView, volume: str, instance_number: int) -> str:
    """The Docker volume of an instance-scoped volume: ``<stack>.<svc>.<vol>-<n>``.

    ``service.name`` is already ``stack.svc`` (``svc`` alone in the null stack, as Kontena's
    ``name_with_stack`` and core.service_volumes.docker_volume_name name it).
    """
    return f"{service.name}.{volume}-{instance_number}"


def availability(ctx: InstanceContext, nodes: Nodes) -> Nodes:
    """Drained nodes take no new instances."""
    kept = [node for node in nodes if node.availability == "active"]
    if not kept:
        names = ", ".join(node.name for node in nodes)
        raise PlacementError("availability", f"Did not find any active nodes (drained: {names})")
    return kept


def ephemeral(ctx: InstanceContext, nodes: Nodes) -> Nodes:
    """Stateful instances avoid `ephemeral` nodes, unless the instance already lives there."""
    if not ctx.service.stateful:
        return nodes
    here = ctx.previous_node_id
    kept = [node for node in nodes if node.id == here or not is_ephemeral(node)]
    if not kept:
        raise PlacementError(
            "ephemeral", "Did not find any non-ephemeral nodes for stateful service"
        )
    return kept


def volume_plugin(ctx: InstanceContext, nodes: Nodes) -> Nodes:
    """Every named volume's driver must be installed on the node."""
    needed = list(dict.fromkeys(ctx.service.volume_drivers))
    if not needed:
        return nodes
    kept = [node for node in nodes if set(needed) <= set(node.volume_drivers)]
    if not kept:
        raise PlacementError(
            "volume_plugin",
            f"Did not find any nodes with required volume drivers: {_ruby_list(needed)}",
        )
    return kept


def volume_instance(ctx: InstanceContext, nodes: Nodes) -> Nodes:
    """Prefer the nodes that already hold this instance's volumes; soft: never empties."""
    kept = nodes
    for volume in ctx.service.instance_volumes:
        name = volume_instance_name(ctx.service, volume, ctx.instance_number)
        kept = [node for node in kept if name in node.volume_instances]
    return kept or nodes


def _values(ctx: InstanceContext, rule: Rule, node: NodeView) -> Collection[str]:
    """The node's values for the rule's key."""
    if rule.key == "node":
        return (node.name,)
    if rule.key == "label":
        return node.labels
    if rule.key == "container":
        return ctx.cluster.container_names(node.id, ctx.instance_number, node.containers)
    return ctx.cluster.service_paths(node.id, ctx.instance_number)


def _service_rule(ctx: InstanceContext, rule: Rule) -> Rule:
    """A bare service name means a service of this service's own stack."""
    if rule.key != "service" or rule.pattern is not None or "/" in rule.value:
        return rule
    return Rule(rule.text, rule.key, rule.negate, rule.soft, f"{ctx.service.stack}/{rule.value}")


def affinity(ctx: InstanceContext, nodes: Nodes) -> Nodes:
    """Apply the affinity rules one by one, each narrowing the candidates."""
    try:
        rules = rules_for(ctx.instance_number, ctx.rules)
    except AffinityError as exc:
        raise PlacementError("affinity", str(exc)) from None
    for parsed in rules:
        rule = _service_rule(ctx, parsed)
        kept = [node for node in nodes if rule.keeps(_values(ctx, rule, node))]
        if kept:
            nodes = kept
        elif not rule.soft:
            raise PlacementError(
                "affinity", f"Did not find any nodes for affinity filter: {rule.text}"
            )
    return nodes


def port(ctx: InstanceContext, nodes: Nodes) -> Nodes:
    """A published node port must not be taken by any other instance assigned to the node."""
    wanted = ctx.service.node_ports
    if not wanted:
        return nodes
    taken = ctx.cluster.ports_taken
    kept = [node for node in nodes if not taken(node.id, ctx.instance_number, wanted)]
    if not kept:
        raise PlacementError(
            "port", f"Did not find any nodes with unused ports: {list(ctx.service.node_ports)}"
        )
    return kept


def cpu(ctx: InstanceContext, nodes: Nodes) -> Nodes:
    """The node must have at least the service's `cpus`."""
    cpus = ctx.service.cpus
    if cpus is None:
        return nodes
    kept = [node for node in nodes if (node.cpus or 0) >= cpus]
    if not kept:
        raise PlacementError("cpu", f"Did not find any nodes with {cpus} CPUs available")
    return kept


def memory(ctx: InstanceContext, nodes: Nodes) -> Nodes:
    """The node must have the memory, unless the instance is already there."""
    required = ctx.service.memory
    if not required:
        return nodes
    here = ctx.previous_node_id
    planned = ctx.cluster.planned_memory

    def fits(node: NodeView) -> bool:
        if node.id == here:
            return True
        if (node.mem_total or 0) < required:
            return False
        # No stats yet: Kontena lets the node through on its total alone.
        return node.mem_free is None or node.mem_free - planned[node.id] >= required

    kept = [node for node in nodes if fits(node)]
    if not kept:
        raise PlacementError(
            "memory", f"Did not find any nodes with sufficient free memory: {required}"
        )
    return kept


def _dependency_names(ctx: InstanceContext) -> list[tuple[str, str]]:
    """(container name, why) pairs this instance must sit next to, numbers substituted."""
    wanted = [(v, "volumes_from") for v in ctx.service.volumes_from]
    net = ctx.service.net
    if net.startswith("container:") and len(net) > len("container:"):
        wanted.append((net.removeprefix("container:"), "net"))
    expanded = []
    for template, why in wanted:
        try:
            expanded.append((expand(template, ctx.instance_number), why))
        except AffinityError:
            raise PlacementError(
                "dependency", f"Invalid {why} container name: {template} (malformed %)"
            ) from None
    return expanded


def dependency(ctx: InstanceContext, nodes: Nodes) -> Nodes:
    """`volumes_from` and `net: container:x` need the other container on the same node."""
    wanted = _dependency_names(ctx)
    stack = ctx.service.stack
    for name, why in wanted:
        # A bare name means a container of this service's own stack, or a container of that
        # exact name (one the node reports that no service owns).
        aliases = {name} if "." in name or stack == "null" else {name, f"{stack}.{name}"}
        containers = ctx.cluster.container_names
        kept = [
            node
            for node in nodes
            if not aliases.isdisjoint(containers(node.id, ctx.instance_number, node.containers))
        ]
        if not kept:
            raise PlacementError(
                "dependency", f"Did not find any nodes with container {name} (needed by {why})"
            )
        nodes = kept
    return nodes


# The fixed order (Kontena's): node properties first (drain, ephemeral, volume drivers), then the
# soft volume preference, then the rules that look at other instances (affinity, ports), then
# resources (cpu, memory), then co-location (dependency). The order decides which filter an
# error names, so it is part of the behaviour.
FILTERS: tuple[Filter, ...] = (
    Filter("availability", availability),
    Filter("ephemeral", ephemeral),
    Filter("volume_plugin", volume_plugin),
    Filter("volume_instance", volume_instance, soft=True),
    Filter("affinity", affinity),
    Filter("port", port),
    Filter("cpu", cpu),
    Filter("memory", memory),
    Filter("dependency", dependency),
)


def run_filters(ctx: InstanceContext, nodes: Nodes, rejected: dict[str, int]) -> Nodes:
    """Run every filter in order; count dropped nodes by filter; raise when none is left."""
    if not nodes:
        raise PlacementError("nodes", "There are no nodes available")
    for node_filter in FILTERS:
        try:
            kept = node_filter.run(ctx, nodes)
        except PlacementError:
            rejected[node_filter.name] = rejected.get(node_filter.name, 0) + len(nodes)
            raise
        if len(kept) < len(nodes):
            rejected[node_filter.name] = rejected.get(node_filter.name, 0) + len(nodes) - len(kept)
        if not kept:
            raise PlacementError(
                node_filter.name, f"Filter {node_filter.name} did not return any nodes"
            )
        nodes = kept
    return nodes
