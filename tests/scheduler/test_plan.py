"""plan_deploy end to end: counts, placements, and the errors a deploy's reason shows."""

from __future__ import annotations

import pytest

from scheduler.placement import Placement, Plan, ServiceView, plan_deploy
from tests.fixtures.placement import World, node, per_node, placed, service

PREFIX = "Cannot find applicable node for service instance"


def _three() -> World:
    return World().add(node("n1", "az=a"), node("n2", "az=b"), node("n3", "az=c"))


def test_a_plan_places_every_instance_in_order() -> None:
    result = _three().plan(service("web", instances=3))
    assert result.ok
    assert result.error is None
    assert [p.instance_number for p in result.placements] == [1, 2, 3]
    assert len({p.node_id for p in result.placements}) == 3
    assert all(isinstance(p, Placement) for p in result.placements)
    assert result.rejected == {}


def test_the_default_random_source_works() -> None:
    world = _three()
    result = plan_deploy(service("web", instances=3), world.nodes, world.existing, ())
    assert result.ok
    assert len(result.placements) == 3


def test_zero_instances_is_an_empty_success() -> None:
    assert _three().plan(service("web", instances=0)) == Plan()


def test_no_nodes_at_all() -> None:
    result = World().plan(service("web", instances=2))
    assert result.error == f"{PREFIX} web-1: There are no nodes available"
    assert result.placements == []


def test_an_unknown_strategy() -> None:
    result = _three().plan(service("web", strategy="binpack"))
    assert result.error == "Unknown deploy strategy 'binpack' for web"


# The reference's failure examples, each through a whole plan.
@pytest.mark.parametrize(
    ("svc", "why"),
    [
        (
            service("web", affinity=("label==db",)),
            "Did not find any nodes for affinity filter: label==db",
        ),
        (
            service("app.web", affinity=("node==n%s",), instances=4),
            "Did not find any nodes for affinity filter: node==n4",
        ),
        (
            service("web", node_ports=(80,), instances=4),
            "Did not find any nodes with unused ports: [80]",
        ),
        (service("web", cpus=16.0), "Did not find any nodes with 16.0 CPUs available"),
        (
            service("web", memory=1 << 40),
            f"Did not find any nodes with sufficient free memory: {1 << 40}",
        ),
        (
            service("web", volume_drivers=("rexray",)),
            'Did not find any nodes with required volume drivers: ["rexray"]',
        ),
        (
            service("web", affinity=("nodes==n1",)),
            "Invalid affinity filter: nodes==n1 (unknown key",
        ),
        (
            service("web", volumes_from=("data-%s",)),
            "Did not find any nodes with container data-1 (needed by volumes_from)",
        ),
    ],
)
def test_failures_name_the_instance_the_filter_and_the_rule(svc: ServiceView, why: str) -> None:
    world = World().add(
        node("n1", "az=a", cpus=2, mem_total=1 << 30),
        node("n2", "az=b", cpus=2, mem_total=1 << 30),
        node("n3", "az=c", cpus=2, mem_total=1 << 30),
    )
    result = world.plan(svc)
    assert result.error is not None
    number = 4 if svc.instances == 4 else 1
    assert result.error.startswith(f"{PREFIX} {svc.name}-{number}: {why}")
    assert len(result.placements) == number - 1


def test_port_clashes_between_instances_of_the_same_plan() -> None:
    world = _three()
    result = world.plan(service("web", node_ports=(80,), instances=4))
    assert result.error == f"{PREFIX} web-4: Did not find any nodes with unused ports: [80]"
    assert sorted(placed(world, result).values()) == ["n1", "n2", "n3"]
    assert result.rejected == {"port": 3}


def test_port_clash_with_another_service_moves_instances_elsewhere() -> None:
    world = _three().run("lb", 1, on="n1", ports=(80,))
    mapping = world.where(service("web", node_ports=(80,), instances=2))
    assert sorted(mapping.values()) == ["n2", "n3"]


def test_a_redeploy_of_a_port_service_keeps_its_nodes() -> None:
    world = _three()
    for number, name in {1: "n2", 2: "n3"}.items():
        world.run("web", number, on=name, ports=(80,))
    for seed in range(5):
        assert world.where(service("web", node_ports=(80,), instances=2), seed) == {
            1: "n2",
            2: "n3",
        }


def test_scaled_down_instances_free_their_ports() -> None:
    world = World().add(node("n1"), node("n2"))
    world.run("web", 1, on="n1", ports=(80,)).run("web", 2, on="n2", ports=(80,))
    world.run("web", 3, on="n1", ports=(80,))  # a leftover the deploy is about to delete
    assert world.where(service("web", node_ports=(80,), instances=2)) == {1: "n1", 2: "n2"}


def test_a_changed_port_is_checked_against_the_old_ports_of_later_instances() -> None:
    # web-2 still publishes 8080 on n2 until it is redeployed; web-1 moving to 8080 avoids n2.
    world = World().add(node("n1"), node("n2"))
    world.run("web", 1, on="n2", ports=(80,)).run("web", 2, on="n2", ports=(8080,))
    mapping = world.where(service("web", node_ports=(8080,), instances=2))
    assert mapping == {1: "n1", 2: "n2"}


def test_drained_nodes_get_nothing_and_are_counted() -> None:
    world = World().add(node("n1", availability="drain"), node("n2"), node("n3"))
    world.run("web", 1, on="n1")
    result = world.plan(service("web", instances=4))
    assert result.ok
    assert set(placed(world, result).values()) == {"n2", "n3"}
    assert result.rejected == {"availability": 4}


def test_every_node_drained() -> None:
    world = World().add(node("n1", availability="drain"))
    result = world.plan(service("web"))
    assert result.error == f"{PREFIX} web-1: Did not find any active nodes (drained: n1)"
    assert result.rejected == {"availability": 1}


def test_rejected_on_failure_is_the_failing_instance_only() -> None:
    world = World().add(node("n1", "db"), node("n2"), node("n3", availability="drain"))
    svc = service("web", instances=2, affinity=("label==db",), node_ports=(80,))
    result = world.plan(svc)
    assert result.error == f"{PREFIX} web-2: Did not find any nodes with unused ports: [80]"
    assert result.rejected == {"availability": 1, "affinity": 1, "port": 1}
    assert placed(world, result) == {1: "n1"}


def test_rejected_on_success_sums_over_instances() -> None:
    world = World().add(node("n1", "db"), node("n2"), node("n3", availability="drain"))
    result = world.plan(service("web", instances=3, affinity=("label==db",)))
    assert result.ok
    assert result.rejected == {"availability": 3, "affinity": 3}


def test_soft_rules_do_not_fail_a_plan() -> None:
    world = _three()
    mapping = world.where(service("web", instances=2, affinity=("label==~gpu", "node!=~n9")))
    assert len(mapping) == 2


# --- daemon with nowhere to go (Kontena #3094) -----------------------------------------------


@pytest.mark.parametrize(
    ("svc", "why"),
    [
        (
            service("lb", strategy="daemon", node_ports=(80,)),
            "Did not find any nodes with unused ports: [80]",
        ),
        (
            service("agent", strategy="daemon", affinity=("label==gpu",)),
            "Did not find any nodes for affinity filter: label==gpu",
        ),
    ],
)
def test_a_daemon_that_fits_nowhere_is_an_error_not_an_empty_success(
    svc: ServiceView, why: str
) -> None:
    world = World().add(node("n1"), node("n2"))
    world.run("other", 1, on="n1", ports=(80,)).run("other", 2, on="n2", ports=(80,))
    result = world.plan(svc)
    assert result.error == f"{PREFIX} {svc.name}-1: {why}"
    assert result.placements == []


def test_a_daemon_with_no_nodes_is_an_error() -> None:
    result = World().plan(service("agent", strategy="daemon"))
    assert result.error == f"{PREFIX} agent-1: There are no nodes available"


def test_a_daemon_with_zero_containers_is_an_empty_success() -> None:
    assert World().add(node("n1")).plan(service("agent", strategy="daemon", instances=0)).ok


def test_a_daemon_skips_nodes_whose_port_is_taken() -> None:
    world = World().add(node("n1"), node("n2"), node("n3")).run("other", 1, "n2", (80,))
    mapping = world.where(service("lb", strategy="daemon", node_ports=(80,)))
    assert mapping == {1: "n1", 2: "n3"}


# --- larger layouts ------------------------------------------------------------------------


def test_a_grid_wide_layout() -> None:
    world = World()
    for i in range(1, 13):
        labels = [f"az=z{i % 3}"] + (["ssd"] if i % 2 else []) + (["ephemeral"] if i > 10 else [])
        world.add(node(f"n{i}", *labels, cpus=4, mem_total=8 << 30, mem_free=6 << 30))
    world.run("lb", 1, on="n1", ports=(80, 443))
    world.default_affinity = ("label!=reserved",)
    svc = service(
        "shop.db",
        instances=4,
        stateful=True,
        affinity=("label==ssd", "service!=~db"),
        node_ports=(80,),
        cpus=2.0,
        memory=1 << 30,
    )
    mapping = world.where(svc)
    nodes = set(mapping.values())
    assert len(nodes) == 4  # `service!=~db` spreads them one per node
    assert "n1" not in nodes  # port 80 taken there
    assert "n11" not in nodes  # ephemeral
    assert all(int(name[1:]) % 2 for name in nodes)  # ssd only
    assert max(per_node(mapping).values()) == 1
    # one more does not fit: the soft anti-affinity gives way, then the port rule fails it
    result = world.plan(ServiceView(**{**svc.__dict__, "instances": 5}))
    assert result.error == f"{PREFIX} shop.db-5: Did not find any nodes with unused ports: [80]"


# --- scenarios: (world, service) -> {instance: node} or the error's reason ------------------


def _scenario_world() -> World:
    return (
        World()
        .add(
            node("n1", "az=eu-1", "ssd", cpus=2, mem_total=4 << 30, mem_free=3 << 30),
            node("n2", "az=eu-1", cpus=4, mem_total=8 << 30, mem_free=7 << 30),
            node("n3", "az=eu-2", "ssd", "ephemeral", cpus=4, mem_total=8 << 30, mem_free=1 << 30),
            node("n4", "az=eu-2", availability="drain", cpus=8, mem_total=16 << 30),
        )
        .run("shop.db", 1, on="n2", ports=(5432,))
        .run("shop.cache", 1, on="n3")
        .run("lb", 1, on="n1", ports=(80, 443))
    )


SCENARIOS: list[tuple[str, ServiceView, dict[int, str] | str]] = [
    ("kontena label with a value", service("web", affinity=("label==az=eu-2",)), {1: "n3"}),
    ("next to the db", service("shop.web", affinity=("service==db",)), {1: "n2"}),
    (
        "away from the cache",
        service("shop.web", affinity=("service!=cache", "label==ssd")),
        {1: "n1"},
    ),
    ("next to a container", service("web", affinity=("container==shop.cache-1",)), {1: "n3"}),
    (
        "a drained node is never chosen",
        service("web", affinity=("node==n4",)),
        "Did not find any nodes for affinity filter: node==n4",
    ),
    (
        "stateful avoids ephemeral",
        service("db2", stateful=True, affinity=("label==ssd",)),
        {1: "n1"},
    ),
    (
        "stateful has only ephemeral left",
        service("db2", stateful=True, affinity=("node==n3",)),
        "Did not find any nodes for affinity filter: node==n3",
    ),
    ("port 80 is the lb's", service("web", node_ports=(80,), affinity=("label==ssd",)), {1: "n3"}),
    ("port and memory together", service("web", node_ports=(80,), memory=2 << 30), {1: "n2"}),
    ("cpu then memory", service("web", cpus=4.0, memory=4 << 30), {1: "n2"}),
    (
        "memory fails after cpu",
        service("web", cpus=4.0, memory=8 << 30),
        f"Did not find any nodes with sufficient free memory: {8 << 30}",
    ),
    ("net container of the same stack", service("shop.web", net="container:db-1"), {1: "n2"}),
    (
        "a soft rule that cannot hold",
        service("web", affinity=("node==~n9", "label==ssd", "node!=n3")),
        {1: "n1"},
    ),
    (
        "a regex rule",
        service("web", instances=2, affinity=("node==/^n[23]$/", "label!=ssd")),
        {1: "n2", 2: "n2"},
    ),
    (
        "daemon over the active nodes",
        service("agent", strategy="daemon"),
        {1: "n1", 2: "n2", 3: "n3"},
    ),
    (
        "daemon on ssd nodes only",
        service("agent", strategy="daemon", instances=2, affinity=("label==ssd",)),
        {1: "n1", 2: "n3", 3: "n1", 4: "n3"},
    ),
    (
        "daemon whose port is taken everywhere",
        service("pg", strategy="daemon", node_ports=(5432,), affinity=("node==n2",)),
        "Did not find any nodes with unused ports: [5432]",
    ),
]


@pytest.mark.parametrize(
    ("svc", "expected"), [(s, e) for _, s, e in SCENARIOS], ids=[d for d, _, _ in SCENARIOS]
)
def test_scenarios(svc: ServiceView, expected: dict[int, str] | str) -> None:
    world = _scenario_world()
    result = world.plan(svc)
    if isinstance(expected, str):
        assert result.error is not None
        assert result.error.split(": ", 1)[1] == expected
        assert result.error.startswith(f"{PREFIX} {svc.name}-")
    else:
        assert result.error is None
        assert placed(world, result) == expected


def test_an_instance_whose_node_was_removed_is_placed_again() -> None:
    world = World().add(node("n1"), node("n2")).run("web", 1, on=None).run("web", 2, on="n2")
    for strategy in ("ha", "random"):
        mapping = world.where(service("web", instances=2, strategy=strategy))
        assert sorted(mapping.values()) == ["n1", "n2"] or strategy == "random"
        assert mapping[1] in {"n1", "n2"}
    assert world.where(service("web", instances=2, strategy="random"))[2] == "n2"


def test_a_failure_part_way_keeps_the_placements_so_far() -> None:
    world = World().add(node("n1"), node("n2"))
    world.run("data", 1, on="n1").run("data", 2, on="n2")
    result = world.plan(service("backup", instances=3, volumes_from=("data-%s",)))
    assert placed(world, result) == {1: "n1", 2: "n2"}
    assert result.error == (
        f"{PREFIX} backup-3: Did not find any nodes with container data-3 (needed by volumes_from)"
    )
    assert result.rejected == {"dependency": 2}
