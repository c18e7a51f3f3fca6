"""The strategies (ha, daemon, random) through the in-memory harness."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from scheduler.placement.state import PlacementError, availability_zone
from scheduler.placement.strategies import STRATEGIES, Daemon, HighAvailability, Random
from tests.fixtures.placement import World, node, per_node, service


def _zones(azs: int, per_az: int, **kw: object) -> World:
    world = World()
    number = 0
    for az in range(azs):
        for _ in range(per_az):
            number += 1
            world.add(node(f"n{number}", f"az=z{az}", "ssd", **kw))  # type: ignore[arg-type]
    return world


def _az_of(world: World, mapping: dict[int, str]) -> Counter[str]:
    by_name = {n.name: availability_zone(n) for n in world.nodes}
    return Counter(by_name[name] for name in mapping.values())


def test_the_registry_and_grace_periods() -> None:
    assert sorted(STRATEGIES) == ["daemon", "ha", "random"]
    assert isinstance(STRATEGIES["ha"], HighAvailability)
    assert isinstance(STRATEGIES["daemon"], Daemon)
    assert isinstance(STRATEGIES["random"], Random)
    grace = {name: s.offline_grace_seconds for name, s in STRATEGIES.items()}
    assert grace == {"ha": 120, "daemon": 600, "random": 30}


@pytest.mark.parametrize(
    ("strategy", "nodes", "containers", "count"),
    [
        ("ha", 3, 5, 5),
        ("ha", 0, 2, 2),
        ("random", 4, 7, 7),
        ("daemon", 3, 1, 3),
        ("daemon", 3, 2, 6),
        ("daemon", 0, 2, 0),
        ("daemon", 5, 0, 0),
    ],
)
def test_instance_counts(strategy: str, nodes: int, containers: int, count: int) -> None:
    assert STRATEGIES[strategy].instance_count(nodes, containers) == count


# --- ha ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("azs", "per_az", "instances", "per_zone", "max_per_node"),
    [
        (3, 2, 6, {"z0": 2, "z1": 2, "z2": 2}, 1),
        (3, 2, 3, {"z0": 1, "z1": 1, "z2": 1}, 1),
        (3, 2, 9, {"z0": 3, "z1": 3, "z2": 3}, 2),
        (2, 3, 4, {"z0": 2, "z1": 2}, 1),
        (2, 1, 5, {"z0": 3, "z1": 2}, 3),  # an odd count: one zone gets one more
        (1, 4, 8, {"z0": 8}, 2),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3, 42])
def test_ha_spreads_over_zones_then_nodes(
    azs: int,
    per_az: int,
    instances: int,
    per_zone: dict[str, int],
    max_per_node: int,
    seed: int,
) -> None:
    world = _zones(azs, per_az)
    mapping = world.where(service("web", instances=instances), seed)
    zones = _az_of(world, mapping)
    if instances % azs:
        assert sorted(zones.values()) == sorted(per_zone.values())
    else:
        assert zones == per_zone
    assert max(per_node(mapping).values()) == max_per_node


def test_ha_nodes_without_an_az_label_share_the_default_zone() -> None:
    world = World().add(node("a1", "az=a"), node("d1"), node("d2"))
    mapping = world.where(service("web", instances=2))
    assert _az_of(world, mapping) == {"a": 1, "default": 1}


def test_ha_breaks_ties_at_random_but_reproducibly() -> None:
    world = _zones(1, 5)
    first = {seed: world.where(service("web"), seed)[1] for seed in range(20)}
    again = {seed: world.where(service("web"), seed)[1] for seed in range(20)}
    assert first == again
    assert len(set(first.values())) > 1  # not always the first node


def test_ha_redeploy_keeps_a_balanced_layout_in_place() -> None:
    world = _zones(3, 2)
    before = world.where(service("web", instances=6), seed=7)
    for number, name in before.items():
        world.run("web", number, on=name)
    for seed in range(5):
        assert world.where(service("web", instances=6), seed) == before


def test_ha_prefers_the_emptier_node_among_equals() -> None:
    world = World().add(
        node("full", mem_total=100, mem_free=10), node("empty", mem_total=100, mem_free=90)
    )
    for seed in range(10):
        assert world.where(service("web"), seed) == {1: "empty"}


def test_ha_moves_an_instance_off_a_zone_that_is_overloaded() -> None:
    # Both instances sit in zone a; a zone b node is free, so instance 2 moves there.
    world = World().add(node("a1", "az=a"), node("a2", "az=a"), node("b1", "az=b"))
    world.run("web", 1, on="a1").run("web", 2, on="a2")
    mapping = world.where(service("web", instances=2))
    assert mapping[1] == "a1"
    assert mapping[2] == "b1"


def test_ha_scale_up_adds_to_the_emptiest_zone() -> None:
    world = _zones(2, 2)
    world.run("web", 1, on="n1").run("web", 2, on="n3")
    mapping = world.where(service("web", instances=4))
    assert (mapping[1], mapping[2]) == ("n1", "n3")
    assert sorted([mapping[3], mapping[4]]) == ["n2", "n4"]


def test_ha_scale_down_drops_the_highest_numbers() -> None:
    world = _zones(1, 3)
    for number, name in {1: "n1", 2: "n2", 3: "n3", 4: "n1"}.items():
        world.run("web", number, on=name)
    assert world.where(service("web", instances=2)) == {1: "n1", 2: "n2"}


# --- daemon --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "containers", "expected"),
    [
        (3, 1, {1: "n1", 2: "n2", 3: "n3"}),
        (2, 2, {1: "n1", 2: "n2", 3: "n1", 4: "n2"}),
        (3, 2, {1: "n1", 2: "n2", 3: "n3", 4: "n1", 5: "n2", 6: "n3"}),
        (1, 3, {1: "n1", 2: "n1", 3: "n1"}),
    ],
)
def test_daemon_runs_containers_on_every_node_in_node_order(
    nodes: int, containers: int, expected: dict[int, str]
) -> None:
    world = World().add(*(node(f"n{i}") for i in range(nodes, 0, -1)))  # listed in reverse
    assert world.where(service("agent", strategy="daemon", instances=containers)) == expected


def test_daemon_counts_only_nodes_that_pass_the_filters() -> None:
    world = World().add(
        node("n1", "ssd"), node("n2"), node("n3", "ssd"), node("n4", "ssd", availability="drain")
    )
    svc = service("agent", strategy="daemon", instances=2, affinity=("label==ssd",))
    mapping = world.where(svc)
    assert per_node(mapping) == {"n1": 2, "n3": 2}


def test_daemon_counts_nodes_that_pass_for_some_instance_number() -> None:
    world = World().add(node("n1"), node("n2"), node("n3"))
    svc = service("agent", strategy="daemon", affinity=("node!=n%s",))
    # instance 1 may not go to n1, 2 not to n2, 3 not to n3: every node passes for someone
    mapping = world.where(svc)
    assert len(mapping) == 3
    assert all(mapping[n] != f"n{n}" for n in mapping)


def test_daemon_is_sticky() -> None:
    world = World().add(node("n1"), node("n2"), node("n3"))
    world.run("agent", 1, on="n3").run("agent", 2, on="n1").run("agent", 3, on="n2")
    assert world.where(service("agent", strategy="daemon")) == {1: "n3", 2: "n1", 3: "n2"}


def test_daemon_new_node_gets_the_new_instances_and_nothing_moves() -> None:
    world = World().add(node("n1"), node("n2"), node("n3"))
    for number, name in {1: "n1", 2: "n2", 3: "n1", 4: "n2"}.items():
        world.run("agent", number, on=name)
    mapping = world.where(service("agent", strategy="daemon", instances=2))
    assert mapping == {1: "n1", 2: "n2", 3: "n1", 4: "n2", 5: "n3", 6: "n3"}


def test_daemon_evens_out_a_layout_that_went_uneven() -> None:
    # n2 was away; both instances ended on n1. Kontena would keep them there forever.
    world = World().add(node("n1"), node("n2"))
    world.run("agent", 1, on="n1").run("agent", 2, on="n1")
    mapping = world.where(service("agent", strategy="daemon"))
    assert per_node(mapping) == {"n1": 1, "n2": 1}
    assert mapping[2] == "n1"  # one of them stays


def test_daemon_lost_node_shrinks_the_count() -> None:
    world = World().add(node("n1"), node("n3"))
    world.run("agent", 1, on="n1").run("agent", 2, on="n2").run("agent", 3, on="n3")
    assert world.where(service("agent", strategy="daemon")) == {1: "n1", 2: "n3"}


def test_daemon_with_a_published_port_fits_one_per_node() -> None:
    world = World().add(node("n1"), node("n2"))
    svc = service("lb", strategy="daemon", node_ports=(80,))
    assert world.where(svc) == {1: "n1", 2: "n2"}


# --- random --------------------------------------------------------------------------------


def test_random_is_deterministic_with_a_seeded_source() -> None:
    world = World().add(*(node(f"n{i}") for i in range(1, 6)))
    svc = service("web", strategy="random", instances=10)
    assert world.where(svc, seed=11) == world.where(svc, seed=11)
    layouts = {tuple(world.where(svc, seed).values()) for seed in range(10)}
    assert len(layouts) > 1


def test_random_matches_the_source_it_is_given() -> None:
    world = World().add(node("n1"), node("n2"), node("n3"))
    rng = random.Random(99)
    expected = [rng.choice(world.nodes).name for _ in range(4)]
    mapping = world.where(service("web", strategy="random", instances=4), seed=99)
    assert list(mapping.values()) == expected


def test_random_keeps_instances_where_they_are() -> None:
    world = World().add(node("n1"), node("n2"), node("n3"))
    world.run("web", 1, on="n3").run("web", 2, on="n3")
    for seed in range(10):
        mapping = world.where(service("web", strategy="random", instances=3), seed)
        assert (mapping[1], mapping[2]) == ("n3", "n3")


def test_random_moves_an_instance_whose_node_no_longer_fits() -> None:
    world = World().add(node("n1"), node("n2", availability="drain"))
    world.run("web", 1, on="n2")
    assert world.where(service("web", strategy="random")) == {1: "n1"}


# --- stateful ------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["ha", "daemon", "random"])
def test_stateful_instances_stay_on_their_node(strategy: str) -> None:
    world = World().add(node("n1"), node("n2"), node("n3"))
    world.run("db", 1, on="n3").run("db", 2, on="n3")
    svc = service(
        "db", stateful=True, strategy=strategy, instances=2 if strategy != "daemon" else 1
    )
    for seed in range(5):
        mapping = world.where(svc, seed)
        assert mapping[1] == "n3"
        if strategy != "daemon":
            assert mapping[2] == "n3"


@pytest.mark.parametrize(
    ("strategy", "label"),
    [("ha", "ha"), ("random", "random")],
)
def test_stateful_instance_whose_node_is_drained_fails_naming_the_node(
    strategy: str, label: str
) -> None:
    world = World().add(node("n1"), node("n2", availability="drain"))
    world.run("db", 1, on="n2")
    result = world.plan(service("db", stateful=True, strategy=strategy))
    assert result.error == (
        "Cannot find applicable node for service instance db-1: "
        f"Strategy {label} did not find any node: stateful instance db-1 lives on node n2, "
        "which did not pass the filters"
    )
    assert result.rejected == {"availability": 1, label: 1}


def test_stateful_instance_whose_node_is_offline_fails() -> None:
    world = World().add(node("n1"))
    world.run("db", 1, on="n9")
    result = world.plan(service("db", stateful=True))
    assert result.error is not None
    assert result.error.endswith("stateful instance db-1 lives on a node not connected")


def test_stateful_instance_that_lost_its_node_is_placed_again() -> None:
    world = World().add(node("n1"), node("n2"))
    world.run("db", 1, on=None)
    assert world.where(service("db", stateful=True), seed=3)[1] in {"n1", "n2"}


def test_stateful_new_instances_are_spread_like_stateless_ones() -> None:
    world = _zones(2, 1)
    world.run("db", 1, on="n1")
    assert world.where(service("db", stateful=True, instances=2)) == {1: "n1", 2: "n2"}


def test_stateful_choose_directly_raises_placement_error() -> None:
    world = World().add(node("n1"))
    world.run("db", 1, on="n2")
    ctx = world.context(service("db", stateful=True))
    with pytest.raises(PlacementError) as caught:
        STRATEGIES["ha"].choose(ctx, world.nodes, random.Random(1))
    assert caught.value.source == "ha"
