"""Volume filters inside whole plans: the driver rule is hard, the instance's volume is sticky.

Table-driven through the in-memory harness (tests/fixtures/placement.py): each case is the
nodes (drivers, Docker volumes held), the service (drivers, instance-scoped volumes, count,
strategy, affinity) and the placement or the error the plan must give.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.fixtures.placement import World, node, service

REXRAY = ("local", "rexray")


def _world(*nodes: tuple[str, dict[str, Any]]) -> World:
    return World().add(*(node(name, **kw) for name, kw in nodes))


@pytest.mark.parametrize(
    ("nodes", "svc", "expected"),
    [
        pytest.param(
            [("n1", {}), ("n2", {"volume_drivers": REXRAY})],
            {"volume_drivers": ("rexray",), "instances": 2},
            {1: "n2", 2: "n2"},
            id="only the node with the plugin takes instances",
        ),
        pytest.param(
            [("n1", {}), ("n2", {})],
            {"volume_drivers": ("local",), "instances": 2},
            {"n1": 1, "n2": 1},
            id="local is everywhere: ha still spreads",
        ),
        pytest.param(
            [("n1", {}), ("n2", {"volume_instances": ("db.data-1",)})],
            {"instance_volumes": ("data",)},
            {1: "n2"},
            id="a stack-less instance goes back to its volume",
        ),
        pytest.param(
            [
                ("n1", {"volume_instances": ("app.db.data-2",)}),
                ("n2", {"volume_instances": ("app.db.data-1",)}),
            ],
            {"name": "app.db", "instance_volumes": ("data",), "instances": 2},
            {1: "n2", 2: "n1"},
            id="each instance follows its own volume, even against the spread order",
        ),
        pytest.param(
            [("n1", {"volume_instances": ("app.db.data-1", "app.db.data-2")}), ("n2", {})],
            {"name": "app.db", "instance_volumes": ("data",), "instances": 2},
            {1: "n1", 2: "n1"},
            id="the volume wins over the ha spread",
        ),
        pytest.param(
            [("n1", {"volume_instances": ("db.data-1",), "availability": "drain"}), ("n2", {})],
            {"instance_volumes": ("data",)},
            {1: "n2"},
            id="soft: a drained holder gives way to an empty node",
        ),
        pytest.param(
            [("n1", {"volume_instances": ("db.data-1",)}), ("n2", {})],
            {"instance_volumes": ("data",), "affinity": ("node==n2",)},
            "Did not find any nodes for affinity filter: node==n2",
            id="the volume's node is all affinity sees (Kontena's order): a clash is an error",
        ),
        pytest.param(
            [("n1", {"volume_instances": ("db.data-1",)}), ("n2", {"volume_drivers": REXRAY})],
            {"instance_volumes": ("data",), "volume_drivers": ("rexray",)},
            {1: "n2"},
            id="the plugin rule runs first: a holder without the driver is out",
        ),
        pytest.param(
            [("n1", {}), ("n2", {})],
            {"volume_drivers": ("rexray", "portworx")},
            'Did not find any nodes with required volume drivers: ["rexray", "portworx"]',
            id="no node has the driver: the plan says which",
        ),
        pytest.param(
            [("n1", {}), ("n2", {"volume_drivers": ("rexray",)})],
            {"volume_drivers": ("rexray", "local")},
            'Did not find any nodes with required volume drivers: ["rexray", "local"]',
            id="every driver is needed on one node",
        ),
    ],
)
def test_volume_placement(
    nodes: list[tuple[str, dict[str, Any]]], svc: dict[str, Any], expected: Any
) -> None:
    world = _world(*nodes)
    kw = dict(svc)
    name = kw.pop("name", "db")
    plan = world.plan(service(name, **kw))
    if isinstance(expected, str):
        assert not plan.ok
        assert expected in (plan.error or "")
        return
    assert plan.ok, plan.error
    where = {p.instance_number: p.node_id.removeprefix("id-") for p in plan.placements}
    if all(isinstance(key, str) for key in expected):  # only the per-node counts are fixed
        assert Counter(where.values()) == expected
    else:
        assert where == expected


def test_an_instance_whose_volume_node_went_away_is_placed_anew() -> None:
    world = _world(("n2", {}), ("n3", {}))
    world.run("db", 1, None)  # its node (n1, holding db.data-1) was removed
    for seed in range(5):
        assert world.where(service("db", instance_volumes=("data",)), seed)[1] in ("n2", "n3")
