"""Invariants over many seeded random grids: whatever the layout, a plan keeps the rules."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from scheduler.placement import InstanceView, NodeView, Plan, ServiceView, plan_deploy
from scheduler.placement.state import availability_zone, is_ephemeral

SEEDS = range(40)


def _random_grid(rng: random.Random) -> tuple[list[NodeView], list[InstanceView]]:
    nodes = []
    for i in range(1, rng.randint(2, 12) + 1):
        labels = [f"az=z{rng.randint(0, 2)}"]
        if rng.random() < 0.5:
            labels.append("ssd")
        if rng.random() < 0.15:
            labels.append("ephemeral")
        nodes.append(
            NodeView(
                id=f"id-{i}",
                name=f"n{i}",
                node_number=i,
                labels=tuple(labels),
                availability="drain" if rng.random() < 0.15 else "active",
                cpus=rng.choice([1, 2, 4]),
                mem_total=8 << 30,
                mem_free=rng.choice([1, 4, 8]) << 30,
            )
        )
    existing = [
        InstanceView(
            service_id=f"svc-other{k}",
            service_name=f"other{k}",
            instance_number=1,
            node_id=rng.choice(nodes).id,
            node_ports=(rng.choice([80, 443, 9000]),),
        )
        for k in range(rng.randint(0, 4))
    ]
    return nodes, existing


def _random_service(rng: random.Random) -> ServiceView:
    return ServiceView(
        id="svc-web",
        name="web",
        stack="null",
        strategy=rng.choice(["ha", "daemon", "random"]),
        stateful=rng.random() < 0.2,
        instances=rng.randint(1, 6),
        affinity=rng.choice([(), ("label==ssd",), ("label!=~ssd",), ("service!=~other0",)]),
        node_ports=rng.choice([(), (), (80,), (8080,)]),
        cpus=rng.choice([None, None, 2.0]),
        memory=rng.choice([None, 2 << 30]),
    )


def _check(service: ServiceView, nodes: list[NodeView], existing: list[InstanceView]) -> Plan:
    plan = plan_deploy(service, nodes, existing, (), random.Random(0))
    by_id = {n.id: n for n in nodes}
    placed = [by_id[p.node_id] for p in plan.placements]
    assert [p.instance_number for p in plan.placements] == list(range(1, len(placed) + 1))
    for chosen in placed:
        assert chosen.availability == "active"
        if service.stateful:
            assert not is_ephemeral(chosen)
        if service.cpus:
            assert (chosen.cpus or 0) >= service.cpus
        if service.affinity == ("label==ssd",):
            assert "ssd" in chosen.labels
    if service.node_ports:
        # no two instances of the plan and no other service share a published port on a node
        taken = {i.node_id for i in existing if set(i.node_ports) & set(service.node_ports)}
        nodes_used = [p.node_id for p in plan.placements]
        assert len(nodes_used) == len(set(nodes_used))
        assert not taken & set(nodes_used)
    if service.memory:
        planned = Counter(p.node_id for p in plan.placements)
        for node_id, count in planned.items():
            assert count * service.memory <= (by_id[node_id].mem_free or 0)
    return plan


@pytest.mark.parametrize("seed", SEEDS)
def test_every_placement_passes_the_filters(seed: int) -> None:
    rng = random.Random(seed)
    nodes, existing = _random_grid(rng)
    for _ in range(5):
        _check(_random_service(rng), nodes, existing)


@pytest.mark.parametrize("seed", SEEDS)
def test_ha_zones_never_differ_by_more_than_one(seed: int) -> None:
    rng = random.Random(seed)
    nodes, _ = _random_grid(rng)
    nodes = [NodeView(**{**n.__dict__, "availability": "active"}) for n in nodes]
    service = ServiceView(id="s", name="web", stack="null", instances=rng.randint(1, 20))
    plan = plan_deploy(service, nodes, [], (), random.Random(seed))
    assert plan.ok
    zones = Counter(availability_zone(n) for n in nodes)
    per_zone = Counter(
        availability_zone(next(n for n in nodes if n.id == p.node_id)) for p in plan.placements
    )
    counts = [per_zone.get(z, 0) for z in zones]
    assert max(counts) - min(counts) <= 1
    per_node = Counter(p.node_id for p in plan.placements)
    for zone in zones:
        in_zone = [per_node.get(n.id, 0) for n in nodes if availability_zone(n) == zone]
        assert max(in_zone) - min(in_zone) <= 1


@pytest.mark.parametrize("seed", SEEDS)
def test_daemon_runs_exactly_its_count_on_each_eligible_node(seed: int) -> None:
    rng = random.Random(seed)
    nodes, _ = _random_grid(rng)
    count = rng.randint(1, 3)
    service = ServiceView(id="s", name="agent", stack="null", strategy="daemon", instances=count)
    plan = plan_deploy(service, nodes, [], (), random.Random(seed))
    active = [n for n in nodes if n.availability == "active"]
    if not active:
        assert plan.error is not None
        return
    assert plan.ok
    assert Counter(p.node_id for p in plan.placements) == {n.id: count for n in active}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_second_plan_over_the_first_changes_nothing(seed: int) -> None:
    rng = random.Random(seed)
    nodes, existing = _random_grid(rng)
    # Without memory: the nodes' free memory here would not drop after the first plan's moves.
    service = ServiceView(**{**_random_service(rng).__dict__, "memory": None})
    first = plan_deploy(service, nodes, existing, (), random.Random(1))
    if not first.ok:
        return
    applied = existing + [
        InstanceView(service.id, service.name, p.instance_number, p.node_id, service.node_ports)
        for p in first.placements
    ]
    second = plan_deploy(service, nodes, applied, (), random.Random(2))
    assert second.ok
    if service.strategy != "ha" or service.stateful:
        assert second.placements == first.placements
    else:
        # ha re-spreads only when the zones allow a better balance; counts per zone never change
        def zones(plan: Plan) -> Counter[str]:
            by_id = {n.id: n for n in nodes}
            return Counter(availability_zone(by_id[p.node_id]) for p in plan.placements)

        assert zones(second) == zones(first)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_same_seed_gives_the_same_plan(seed: int) -> None:
    rng = random.Random(seed)
    nodes, existing = _random_grid(rng)
    service = _random_service(rng)
    assert plan_deploy(service, nodes, existing, (), random.Random(seed)) == plan_deploy(
        service, nodes, existing, (), random.Random(seed)
    )
