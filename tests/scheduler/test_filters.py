"""The nine filters, one by one and in their fixed order, through the in-memory harness."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.placement.filters import (
    FILTERS,
    Filter,
    availability,
    cpu,
    dependency,
    ephemeral,
    memory,
    port,
    run_filters,
    volume_instance,
    volume_instance_name,
    volume_plugin,
)
from scheduler.placement.model import NodeView
from scheduler.placement.state import InstanceContext, PlacementError
from tests.fixtures.placement import World, names, node, service

GiB = 1024**3


def test_the_filters_run_in_kontenas_order() -> None:
    assert [f.name for f in FILTERS] == [
        "availability",
        "ephemeral",
        "volume_plugin",
        "volume_instance",
        "affinity",
        "port",
        "cpu",
        "memory",
        "dependency",
    ]
    assert [f.name for f in FILTERS if f.soft] == ["volume_instance"]


# --- availability --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("availabilities", "kept"),
    [
        (("active", "active"), ["n1", "n2"]),
        (("drain", "active"), ["n2"]),
        (("active", "drain"), ["n1"]),
        (("active", "unknown"), ["n1"]),
    ],
)
def test_availability_drops_drained_nodes(availabilities: tuple[str, str], kept: list[str]) -> None:
    world = World().add(
        node("n1", availability=availabilities[0]), node("n2", availability=availabilities[1])
    )
    assert names(availability(world.context(service()), world.nodes)) == kept


def test_availability_with_every_node_drained_names_them() -> None:
    world = World().add(node("n1", availability="drain"), node("n2", availability="drain"))
    with pytest.raises(PlacementError) as caught:
        availability(world.context(service()), world.nodes)
    assert caught.value.message == "Did not find any active nodes (drained: n1, n2)"


# --- ephemeral -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stateful", "previous", "kept"),
    [
        (False, None, ["n1", "n2", "n3"]),
        (True, None, ["n1"]),
        (True, "n2", ["n1", "n2"]),  # the instance already lives there: it may stay
        (True, "n3", ["n1", "n3"]),
    ],
)
def test_ephemeral_nodes_take_no_stateful_instance(
    stateful: bool, previous: str | None, kept: list[str]
) -> None:
    world = World().add(node("n1", "ssd"), node("n2", "ephemeral"), node("n3", "ephemeral=yes"))
    if previous:
        world.run("db", 1, on=previous)
    ctx = world.context(service("db", stateful=stateful))
    assert names(ephemeral(ctx, world.nodes)) == kept


def test_ephemeral_matches_the_label_name_only() -> None:
    world = World().add(node("n1", "ephemeralish"), node("n2", "not-ephemeral"))
    ctx = world.context(service("db", stateful=True))
    assert names(ephemeral(ctx, world.nodes)) == ["n1", "n2"]


def test_ephemeral_everywhere_is_kontenas_error() -> None:
    world = World().add(node("n1", "ephemeral"))
    with pytest.raises(PlacementError) as caught:
        ephemeral(world.context(service("db", stateful=True)), world.nodes)
    assert caught.value.message == "Did not find any non-ephemeral nodes for stateful service"


# --- volume plugin ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drivers", "kept"),
    [
        ((), ["n1", "n2", "n3"]),
        (("local",), ["n1", "n2", "n3"]),
        (("rexray",), ["n2", "n3"]),
        (("rexray", "local"), ["n2", "n3"]),
        (("rexray", "rexray"), ["n2", "n3"]),
        (("rexray", "portworx"), ["n3"]),
    ],
)
def test_volume_plugin_needs_every_driver(drivers: tuple[str, ...], kept: list[str]) -> None:
    world = World().add(
        node("n1"),
        node("n2", volume_drivers=("local", "rexray")),
        node("n3", volume_drivers=("local", "rexray", "portworx")),
    )
    ctx = world.context(service(volume_drivers=drivers))
    assert names(volume_plugin(ctx, world.nodes)) == kept


def test_volume_plugin_missing_everywhere_lists_the_drivers() -> None:
    world = World().add(node("n1"))
    with pytest.raises(PlacementError) as caught:
        volume_plugin(world.context(service(volume_drivers=("a", "b", "a"))), world.nodes)
    assert caught.value.message == 'Did not find any nodes with required volume drivers: ["a", "b"]'


# --- volume instance (soft) ----------------------------------------------------------------


def test_volume_instance_names() -> None:
    assert volume_instance_name(service("app.db"), "data", 2) == "app.db.data-2"
    assert volume_instance_name(service("db"), "data", 1) == "db.data-1"


@pytest.mark.parametrize(
    ("volumes", "number", "kept"),
    [
        ((), 1, ["n1", "n2", "n3"]),
        (("data",), 1, ["n2", "n3"]),
        (("data",), 2, ["n1"]),
        (("data", "logs"), 1, ["n3"]),
        (("data",), 3, ["n1", "n2", "n3"]),  # nobody has it: every node stays (soft)
        (("logs", "data"), 2, ["n1", "n2", "n3"]),  # nobody has both: soft again
    ],
)
def test_volume_instance_prefers_nodes_holding_the_volume(
    volumes: tuple[str, ...], number: int, kept: list[str]
) -> None:
    world = World().add(
        node("n1", volume_instances=("app.db.data-2",)),
        node("n2", volume_instances=("app.db.data-1", "app.other.logs-1")),
        node("n3", volume_instances=("app.db.data-1", "app.db.logs-1")),
    )
    ctx = world.context(service("app.db", instance_volumes=volumes), number)
    assert names(volume_instance(ctx, world.nodes)) == kept


def test_a_stateless_service_goes_back_to_its_volume() -> None:
    world = World().add(node("n1"), node("n2", volume_instances=("app.db.data-1",)), node("n3"))
    for seed in range(10):
        assert world.where(service("app.db", instance_volumes=("data",)), seed) == {1: "n2"}


# --- port ----------------------------------------------------------------------------------


def _port_world() -> World:
    return (
        World()
        .add(node("n1"), node("n2"), node("n3"))
        .run("lb", 1, on="n1", ports=(80, 443))
        .run("web", 1, on="n2", ports=(8080,))
        .run("web", 2, on="n3", ports=(8080,))
        .run("dns", 1, on="n3", ports=(53,))
    )


@pytest.mark.parametrize(
    ("svc", "number", "kept"),
    [
        (service("api"), 1, ["n1", "n2", "n3"]),
        (service("api", node_ports=(81,)), 1, ["n1", "n2", "n3"]),
        (service("api", node_ports=(80,)), 1, ["n2", "n3"]),
        (service("api", node_ports=(81, 443)), 1, ["n2", "n3"]),
        (service("api", node_ports=(53,)), 1, ["n1", "n2"]),
        (service("api", node_ports=(80, 53)), 1, ["n2"]),
        # the same service: its own instance does not clash with itself, the others do
        (service("web", node_ports=(8080,)), 1, ["n1", "n2"]),
        (service("web", node_ports=(8080,)), 2, ["n1", "n3"]),
        (service("web", node_ports=(8080,)), 3, ["n1"]),
    ],
)
def test_port_drops_nodes_where_another_instance_publishes_the_port(
    svc: Any, number: int, kept: list[str]
) -> None:
    world = _port_world()
    assert names(port(world.context(svc, number), world.nodes)) == kept


def test_port_taken_everywhere_is_kontenas_error() -> None:
    world = World().add(node("n1"), node("n2")).run("lb", 1, "n1", (80,)).run("x", 1, "n2", (80,))
    with pytest.raises(PlacementError) as caught:
        port(world.context(service("web", node_ports=(80, 8080))), world.nodes)
    assert caught.value.message == "Did not find any nodes with unused ports: [80, 8080]"


def test_ports_of_instances_on_disconnected_nodes_do_not_matter() -> None:
    world = World().add(node("n1")).run("lb", 1, on="gone", ports=(80,))
    assert world.where(service("web", node_ports=(80,))) == {1: "n1"}


# --- cpu -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "kept"),
    [
        (None, ["n1", "n2", "n3"]),
        (0.5, ["n1", "n2"]),
        (1.0, ["n1", "n2"]),
        (2.0, ["n2"]),
        (1.5, ["n2"]),
    ],
)
def test_cpu_needs_enough_cores(cpus: float | None, kept: list[str]) -> None:
    world = World().add(node("n1", cpus=1), node("n2", cpus=4), node("n3"))  # n3: unknown
    assert names(cpu(world.context(service(cpus=cpus)), world.nodes)) == kept


def test_cpu_everywhere_too_small_is_kontenas_error() -> None:
    world = World().add(node("n1", cpus=2))
    with pytest.raises(PlacementError) as caught:
        cpu(world.context(service(cpus=8.0)), world.nodes)
    assert caught.value.message == "Did not find any nodes with 8.0 CPUs available"


# --- memory --------------------------------------------------------------------------------


def _memory_world() -> World:
    return World().add(
        node("small", mem_total=1 * GiB, mem_free=1 * GiB),
        node("busy", mem_total=8 * GiB, mem_free=1 * GiB),
        node("big", mem_total=8 * GiB, mem_free=6 * GiB),
        node("nostats", mem_total=4 * GiB),
        node("unknown"),
    )


@pytest.mark.parametrize(
    ("required", "previous", "kept"),
    [
        (None, None, ["small", "busy", "big", "nostats", "unknown"]),
        (512 * 1024**2, None, ["small", "busy", "big", "nostats"]),
        (2 * GiB, None, ["big", "nostats"]),
        (5 * GiB, None, ["big"]),
        # already there: it stays even though the node is full (its memory is counted in use)
        (5 * GiB, "busy", ["busy", "big"]),
        (5 * GiB, "unknown", ["big", "unknown"]),
    ],
)
def test_memory_needs_total_and_free_memory(
    required: int | None, previous: str | None, kept: list[str]
) -> None:
    world = _memory_world()
    if previous:
        world.run("web", 1, on=previous)
    ctx = world.context(service("web", memory=required))
    assert names(memory(ctx, world.nodes)) == kept


def test_memory_short_everywhere_is_kontenas_error() -> None:
    world = _memory_world()
    with pytest.raises(PlacementError) as caught:
        memory(world.context(service(memory=16 * GiB)), world.nodes)
    assert caught.value.message == f"Did not find any nodes with sufficient free memory: {16 * GiB}"


def test_memory_placed_by_this_plan_is_taken_from_the_free_memory() -> None:
    world = World().add(node("n1", mem_total=4 * GiB, mem_free=3 * GiB))
    result = world.plan(service("web", instances=4, memory=1 * GiB))
    assert len(result.placements) == 3
    assert result.error == (
        "Cannot find applicable node for service instance web-4: "
        f"Did not find any nodes with sufficient free memory: {GiB}"
    )


def test_memory_of_instances_that_stay_is_not_counted_twice() -> None:
    world = World().add(node("n1", mem_total=4 * GiB, mem_free=1 * GiB))
    for number in (1, 2, 3):
        world.run("web", number, on="n1")
    assert world.where(service("web", instances=3, memory=1 * GiB)) == {1: "n1", 2: "n1", 3: "n1"}


# --- dependency ----------------------------------------------------------------------------


def _dependency_world() -> World:
    return (
        World()
        .add(node("n1"), node("n2"), node("n3", containers=("sidecar",)))
        .run("app.data", 1, on="n1")
        .run("app.data", 2, on="n2")
        .run("data", 5, on="n2")
        .run("app.vpn", 1, on="n2")
    )


@pytest.mark.parametrize(
    ("svc", "number", "kept"),
    [
        (service("app.web"), 1, ["n1", "n2", "n3"]),
        (service("app.web", volumes_from=("data-%s",)), 1, ["n1"]),
        (service("app.web", volumes_from=("data-%s",)), 2, ["n2"]),
        (service("app.web", volumes_from=("app.data-1",)), 2, ["n1"]),
        (service("web", volumes_from=("data-%s",)), 5, ["n2"]),  # no stack: exact names
        (service("web", volumes_from=("data-%s",)), 1, None),
        (service("app.web", volumes_from=("data-%s",)), 5, ["n2"]),  # a literal name matches too
        (service("app.web", net="container:vpn-1"), 1, ["n2"]),
        (service("app.web", net="container:sidecar"), 1, ["n3"]),
        (service("app.web", net="host"), 1, ["n1", "n2", "n3"]),
        (service("app.web", net="container:vpn-%s", volumes_from=("data-%s",)), 1, None),
        (service("app.web", net="container:vpn-1", volumes_from=("data-2",)), 1, ["n2"]),
        # every volumes_from container must be local (Docker mounts them from the same host)
        (service("app.web", volumes_from=("data-1", "data-2")), 1, None),
    ],
)
def test_dependency_needs_the_containers_on_the_node(
    svc: Any, number: int, kept: list[str] | None
) -> None:
    world = _dependency_world()
    ctx = world.context(svc, number)
    if kept is None:
        with pytest.raises(PlacementError):
            dependency(ctx, world.nodes)
        return
    assert names(dependency(ctx, world.nodes)) == kept


@pytest.mark.parametrize(
    ("svc", "message"),
    [
        (
            service("app.web", volumes_from=("data-%s",)),
            "Did not find any nodes with container data-3 (needed by volumes_from)",
        ),
        (
            service("app.web", net="container:vpn-%s"),
            "Did not find any nodes with container vpn-3 (needed by net)",
        ),
        (
            service("app.web", volumes_from=("data-%q",)),
            "Invalid volumes_from container name: data-%q (malformed %)",
        ),
    ],
)
def test_dependency_errors_name_the_container(svc: Any, message: str) -> None:
    world = _dependency_world()
    with pytest.raises(PlacementError) as caught:
        dependency(world.context(svc, 3), world.nodes)
    assert caught.value.message == message
    assert caught.value.source == "dependency"


def test_dependency_follows_placements_of_the_same_deploy() -> None:
    # A data service placed in this plan is where its sidecar must go next.
    world = World().add(node("n1"), node("n2"))
    svc = service("app.data", instances=2, strategy="random")
    mapping = world.where(svc, seed=5)
    world.run("app.data", 1, on=mapping[1]).run("app.data", 2, on=mapping[2])
    sidecar = service("app.backup", instances=2, volumes_from=("data-%s",))
    assert world.where(sidecar) == mapping


# --- the chain -----------------------------------------------------------------------------


def _chain_world() -> World:
    return (
        World()
        .add(
            node("n1", availability="drain"),
            node("n2", "az=a", cpus=1),
            node("n3", "az=b", cpus=4),
            node("n4", "az=b", cpus=4),
        )
        .run("lb", 1, on="n4", ports=(80,))
    )


def test_run_filters_counts_every_dropped_node_by_filter() -> None:
    world = _chain_world()
    ctx = world.context(service("web", affinity=("label==az=b",), node_ports=(80,), cpus=2.0))
    rejected: dict[str, int] = {}
    assert names(run_filters(ctx, world.nodes, rejected)) == ["n3"]
    assert rejected == {"availability": 1, "affinity": 1, "port": 1}


def test_run_filters_counts_the_nodes_of_the_filter_that_emptied_the_list() -> None:
    world = _chain_world()
    ctx = world.context(service("web", node_ports=(80,), cpus=8.0))
    rejected: dict[str, int] = {}
    with pytest.raises(PlacementError) as caught:
        run_filters(ctx, world.nodes, rejected)
    assert caught.value.source == "cpu"
    assert rejected == {"availability": 1, "port": 1, "cpu": 2}


def test_the_first_filter_that_empties_the_list_is_the_one_named() -> None:
    # Both the affinity and the port filter would reject n2; affinity comes first.
    world = World().add(node("n2")).run("lb", 1, on="n2", ports=(80,))
    ctx = world.context(service("web", affinity=("label==x",), node_ports=(80,)))
    with pytest.raises(PlacementError) as caught:
        run_filters(ctx, world.nodes, {})
    assert caught.value.source == "affinity"


def test_no_nodes_at_all() -> None:
    ctx = World().context(service())
    with pytest.raises(PlacementError) as caught:
        run_filters(ctx, [], {})
    assert caught.value.message == "There are no nodes available"


def test_a_filter_that_returns_nothing_without_a_message_gets_the_generic_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import scheduler.placement.filters as filters

    def nothing(ctx: InstanceContext, nodes: list[NodeView]) -> list[NodeView]:
        return []

    monkeypatch.setattr(filters, "FILTERS", (Filter("custom", nothing),))
    world = World().add(node("n1"))
    rejected: dict[str, int] = {}
    with pytest.raises(PlacementError) as caught:
        filters.run_filters(world.context(service()), world.nodes, rejected)
    assert caught.value.message == "Filter custom did not return any nodes"
    assert rejected == {"custom": 1}
