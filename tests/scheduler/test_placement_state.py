"""The plan's working state: who sits where, and what the instance being placed does not see."""

from __future__ import annotations

import pytest

from scheduler.placement.state import (
    Cluster,
    Present,
    availability_zone,
    is_ephemeral,
    service_path,
)
from tests.fixtures.placement import World, node, service


@pytest.mark.parametrize(
    ("name", "path"),
    [("web", "null/web"), ("shop.web", "shop/web"), ("a.b-c", "a/b-c")],
)
def test_service_path(name: str, path: str) -> None:
    assert service_path(name) == path


@pytest.mark.parametrize(
    ("labels", "az"),
    [
        ((), "default"),
        (("ssd",), "default"),
        (("az=eu-1",), "eu-1"),
        (("ssd", "az=b", "az=c"), "b"),  # the first one wins
        (("zone=x", "az="), ""),
    ],
)
def test_availability_zone(labels: tuple[str, ...], az: str) -> None:
    assert availability_zone(node("n1", *labels)) == az


@pytest.mark.parametrize(
    ("labels", "ephemeral"),
    [
        ((), False),
        (("ephemeral",), True),
        (("ephemeral=true",), True),
        (("ephemeral=false",), True),  # Kontena looks at the label name only
        (("ephemerals",), False),
        (("x=ephemeral",), False),
    ],
)
def test_is_ephemeral(labels: tuple[str, ...], ephemeral: bool) -> None:
    assert is_ephemeral(node("n1", *labels)) is ephemeral


def test_present_skips_one_occurrence_and_adds_extras() -> None:
    from collections import Counter

    present = Present(Counter({"a": 1, "b": 2, "gone": 0}), "b", ("x",))
    assert "a" in present
    assert "b" in present  # two of them, one skipped
    assert "x" in present
    assert "gone" not in present
    assert 1 not in present
    assert sorted(present) == ["a", "b", "x"]
    assert len(present) == 3
    alone = Present(Counter({"a": 1}), "a")
    assert "a" not in alone
    assert list(alone) == []


def _cluster() -> Cluster:
    world = (
        World()
        .add(node("n1"), node("n2"))
        .run("web", 1, on="n1", ports=(80,))
        .run("web", 2, on="n1", ports=(80,))
        .run("web", 3, on="n2", ports=(80,))
        .run("web", 4, on=None)
        .run("shop.db", 1, on="n2", ports=(5432,))
    )
    return Cluster(service("web", node_ports=(8080,)), world.nodes, world.existing)


def test_the_cluster_remembers_where_each_instance_was() -> None:
    cluster = _cluster()
    assert cluster.previous == {1: "id-n1", 2: "id-n1", 3: "id-n2", 4: None}
    assert cluster.own_count("id-n1", 1) == 1
    assert cluster.own_count("id-n1", 3) == 2
    assert cluster.own_count("id-n9", 1) == 0


def test_the_instance_being_placed_does_not_see_itself() -> None:
    cluster = _cluster()
    assert sorted(cluster.container_names("id-n1", 1)) == ["web-2"]
    assert sorted(cluster.container_names("id-n1", 3)) == ["web-1", "web-2"]
    assert sorted(cluster.service_paths("id-n2", 3)) == ["shop/db"]
    assert sorted(cluster.service_paths("id-n2", 1)) == ["null/web", "shop/db"]
    assert cluster.ports_taken("id-n1", 1, (80,))  # web-2 is still there
    assert not cluster.ports_taken("id-n2", 3, (80,))
    assert cluster.ports_taken("id-n2", 3, (5432, 9))
    assert not cluster.ports_taken("id-n9", 1, (80,))
    assert list(cluster.container_names("id-n9", 1)) == []
    assert list(cluster.service_paths("id-n9", 1)) == []


def test_placing_moves_the_instance_and_its_new_ports() -> None:
    cluster = _cluster()
    n2 = node("n2")
    cluster.place(1, n2)
    assert sorted(cluster.container_names("id-n1", 2)) == []
    assert sorted(cluster.container_names("id-n2", 9)) == ["shop.db-1", "web-1", "web-3"]
    assert not cluster.ports_taken("id-n1", 2, (80,))
    assert cluster.ports_taken("id-n2", 9, (8080,))  # the new spec's port
    assert cluster.scheduled == {"id-n2": 1}
    assert cluster.scheduled_az == {"default": 1}
    assert cluster.own_count("id-n2", 9) == 2


def test_drop_above_forgets_the_instances_a_scale_down_deletes() -> None:
    cluster = _cluster()
    cluster.drop_above(1)
    assert cluster.previous == {1: "id-n1"}
    assert not cluster.ports_taken("id-n1", 1, (80,))
    assert list(cluster.service_paths("id-n2", 1)) == ["shop/db"]


def test_planned_memory_counts_only_moves() -> None:
    world = World().add(node("n1"), node("n2")).run("web", 1, on="n1")
    cluster = Cluster(service("web", memory=100, instances=2), world.nodes, world.existing)
    cluster.place(1, world.nodes[0])  # stays: already counted in the node's used memory
    cluster.place(2, world.nodes[1])  # new: its memory is not in the node's stats yet
    assert cluster.planned_memory == {"id-n2": 100}
