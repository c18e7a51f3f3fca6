"""The affinity grammar and the affinity filter, through the in-memory harness."""

from __future__ import annotations

import pytest

from scheduler.placement.affinity import AffinityError, expand, parse_rule, rules_for, validate
from scheduler.placement.filters import affinity
from scheduler.placement.state import PlacementError
from tests.fixtures.placement import World, names, node, service

# --- grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "negate", "soft", "value"),
    [
        ("node==node-1", "node", False, False, "node-1"),
        ("node!=node-1", "node", True, False, "node-1"),
        ("node==~node-1", "node", False, True, "node-1"),
        ("node!=~node-1", "node", True, True, "node-1"),
        ("label==az=eu-1", "label", False, False, "az=eu-1"),
        ("label==ssd", "label", False, False, "ssd"),
        ("label!=reserved", "label", True, False, "reserved"),
        ("service==db", "service", False, False, "db"),
        ("service!=other/db", "service", True, False, "other/db"),
        ("container==web-1", "container", False, False, "web-1"),
        ("container!=~stack.web-2", "container", True, True, "stack.web-2"),
        # The key is greedy: the rule splits at its LAST operator, as in Kontena.
        ("label==a=b", "label", False, False, "a=b"),
        ("label==x~y", "label", False, False, "x~y"),
        ("label==~~y", "label", False, True, "~y"),
    ],
)
def test_rules_parse(text: str, key: str, negate: bool, soft: bool, value: str) -> None:
    rule = parse_rule(text)
    assert (rule.key, rule.negate, rule.soft, rule.value) == (key, negate, soft, value)
    assert rule.text == text
    assert rule.pattern is None


def test_the_last_operator_splits_so_the_key_can_be_unknown() -> None:
    with pytest.raises(AffinityError, match=r"unknown key 'label==a'"):
        parse_rule("label==a==b")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("node", "expected key==value or key!=value"),
        ("node=x", "expected key==value or key!=value"),
        ("node=~x", "expected key==value or key!=value"),
        ("==x", "expected key==value or key!=value"),
        ("node==", "expected key==value or key!=value"),
        ("", "expected key==value or key!=value"),
        ("host==x", "unknown key 'host', use one of node, label, service, container"),
        ("Label==x", "unknown key 'Label'"),
        ("node==/[/", "bad regular expression"),
    ],
)
def test_bad_rules_name_the_rule(text: str, why: str) -> None:
    with pytest.raises(AffinityError) as caught:
        parse_rule(text)
    assert str(caught.value).startswith(f"Invalid affinity filter: {text} (")
    assert why in str(caught.value)
    assert caught.value.rule == text


@pytest.mark.parametrize(
    ("value", "candidates", "matches"),
    [
        ("/^web-\\d+$/", ["web-12"], True),
        ("/^web-\\d+$/", ["web-x"], False),
        ("/eu/", ["az=eu-1"], True),  # unanchored
        ("/^eu/", ["az=eu-1"], False),
        ("//", ["anything"], True),
        ("/", ["/"], True),  # a lone slash is a plain value
        ("/x", ["/x"], True),
        ("web", ["web-1"], False),  # plain values compare whole strings
        ("web", ["web", "db"], True),
        ("web", [], False),
    ],
)
def test_values(value: str, candidates: list[str], matches: bool) -> None:
    rule = parse_rule(f"node=={value}")
    assert rule.matches(candidates) is matches
    assert rule.keeps(candidates) is matches
    assert parse_rule(f"node!={value}").keeps(candidates) is not matches


@pytest.mark.parametrize(
    ("template", "number", "expanded"),
    [
        ("node==node-%s", 3, "node==node-3"),
        ("node==node-%i", 3, "node==node-3"),
        ("node==node-%d", 12, "node==node-12"),
        ("label==pct=100%%", 1, "label==pct=100%"),
        ("node==/^n-%s$/", 2, "node==/^n-2$/"),
        ("container!=db-%s", 7, "container!=db-7"),
        ("node==plain", 5, "node==plain"),
        ("node==%s-%s", 4, "node==4-4"),
    ],
)
def test_instance_number_is_substituted_before_parsing(
    template: str, number: int, expanded: str
) -> None:
    assert expand(template, number) == expanded
    assert rules_for(number, [template])[0].text == expanded


@pytest.mark.parametrize("template", ["node==100%", "node==%x", "label==a%-b"])
def test_a_malformed_percent_is_an_error_naming_the_rule(template: str) -> None:
    with pytest.raises(AffinityError, match="malformed") as caught:
        expand(template, 1)
    assert template in str(caught.value)


def test_validate_lists_every_bad_rule() -> None:
    assert validate(["node==a", "nope", "label==x", "foo!=b", "node==%q"]) == [
        "Invalid affinity filter: nope (expected key==value or key!=value)",
        "Invalid affinity filter: foo!=b (unknown key 'foo', use one of node, label, service, "
        "container)",
        "Invalid affinity filter: node==%q (malformed '%q': use %s for the instance number)",
    ]
    assert validate([]) == []


# --- the filter ----------------------------------------------------------------------------


def _world() -> World:
    return (
        World()
        .add(
            node("node-1", "az=a", "ssd"),
            node("node-2", "az=a", "reserved"),
            node("node-3", "az=b", "ssd", "db"),
        )
        .run("db", 1, on="node-3")
        .run("app.db", 1, on="node-1")
        .run("app.cache", 1, on="node-2")
        .run("other.db", 1, on="node-2")
    )


@pytest.mark.parametrize(
    ("rules", "kept"),
    [
        ((), ["node-1", "node-2", "node-3"]),
        (("node==node-2",), ["node-2"]),
        (("node!=node-2",), ["node-1", "node-3"]),
        (("node==/^node-[13]$/",), ["node-1", "node-3"]),
        (("node!=/-1$/",), ["node-2", "node-3"]),
        (("label==ssd",), ["node-1", "node-3"]),
        (("label==az=a",), ["node-1", "node-2"]),
        (("label!=reserved",), ["node-1", "node-3"]),
        (("label==/^az=/",), ["node-1", "node-2", "node-3"]),
        (("label==az",), None),  # labels compare whole: `az` is not `az=a`
        # rules narrow one after another
        (("label==ssd", "label==az=a"), ["node-1"]),
        (("label==az=a", "node!=node-1"), ["node-2"]),
        # soft rules: applied when something matches, ignored otherwise
        (("label==~gpu",), ["node-1", "node-2", "node-3"]),
        (("label==~ssd",), ["node-1", "node-3"]),
        (("label==ssd", "node==~node-2"), ["node-1", "node-3"]),
        (("label!=~az=a", "label!=~az=b"), ["node-3"]),
        # container names: <service_name>-<n> of the instances assigned to the node
        (("container==app.db-1",), ["node-1"]),
        (("container!=app.cache-1",), ["node-1", "node-3"]),
        (("container==/^other\\./",), ["node-2"]),
        (("container==db-1",), ["node-3"]),
    ],
)
def test_affinity_filter_for_a_stackless_service(
    rules: tuple[str, ...], kept: list[str] | None
) -> None:
    world = _world()
    ctx = world.context(service("web", affinity=rules))
    if kept is None:
        with pytest.raises(PlacementError):
            affinity(ctx, world.nodes)
        return
    assert names(affinity(ctx, world.nodes)) == kept


@pytest.mark.parametrize(
    ("rules", "kept"),
    [
        # a bare service name means the service of the same stack
        (("service==db",), ["node-1"]),
        (("service!=db",), ["node-2", "node-3"]),
        (("service==app/db",), ["node-1"]),
        (("service==other/db",), ["node-2"]),
        (("service==null/db",), ["node-3"]),
        (("service!=cache",), ["node-1", "node-3"]),
        (("service==/db$/",), ["node-1", "node-2", "node-3"]),
        (("service==/^other\\//",), ["node-2"]),
        # a service that does not exist: `!=` keeps every node
        (("service!=ghost",), ["node-1", "node-2", "node-3"]),
        (("service==~ghost",), ["node-1", "node-2", "node-3"]),
    ],
)
def test_affinity_filter_service_key_within_a_stack(
    rules: tuple[str, ...], kept: list[str]
) -> None:
    world = _world()
    ctx = world.context(service("app.web", affinity=rules))
    assert names(affinity(ctx, world.nodes)) == kept


def test_a_stackless_service_bare_name_means_the_null_stack() -> None:
    world = _world()
    ctx = world.context(service("web", affinity=("service==db",)))
    assert names(affinity(ctx, world.nodes)) == ["node-3"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (("label==db", "label==gpu"), "Did not find any nodes for affinity filter: label==gpu"),
        (("node==node-9",), "Did not find any nodes for affinity filter: node==node-9"),
        (("node==node-%s",), "Did not find any nodes for affinity filter: node==node-7"),
        (("service==ghost",), "Did not find any nodes for affinity filter: service==ghost"),
        (("label==ssd", "label==reserved"), "for affinity filter: label==reserved"),
        (("host==x",), "Invalid affinity filter: host==x (unknown key 'host'"),
        (("nonsense",), "Invalid affinity filter: nonsense ("),
    ],
)
def test_hard_rules_that_empty_the_candidates_fail_naming_the_rule(
    rules: tuple[str, ...], message: str
) -> None:
    world = _world()
    ctx = world.context(service("web", affinity=rules), number=7)
    with pytest.raises(PlacementError) as caught:
        affinity(ctx, world.nodes)
    assert caught.value.source == "affinity"
    assert message in caught.value.message


def test_the_instance_number_picks_the_node() -> None:
    world = _world()
    svc = service("web", instances=3, affinity=("node==node-%s",))
    assert world.where(svc) == {1: "node-1", 2: "node-2", 3: "node-3"}


def test_the_instance_number_in_a_regex() -> None:
    world = _world()
    svc = service("web", instances=2, affinity=("node==/-%s$/",))
    assert world.where(svc) == {1: "node-1", 2: "node-2"}


def test_the_grid_default_affinity_applies_when_the_service_has_none() -> None:
    world = _world()
    world.default_affinity = ("label==az=b",)
    assert world.where(service("web", instances=2)) == {1: "node-3", 2: "node-3"}


def test_the_service_affinity_replaces_the_grid_default() -> None:
    world = _world()
    world.default_affinity = ("label==az=b",)
    svc = service("web", instances=2, affinity=("label==reserved",))
    assert world.where(svc) == {1: "node-2", 2: "node-2"}


def test_a_default_affinity_no_node_matches_fails_the_plan() -> None:
    world = _world()
    world.default_affinity = ("label==gpu",)
    result = world.plan(service("web"))
    assert result.error == (
        "Cannot find applicable node for service instance web-1: "
        "Did not find any nodes for affinity filter: label==gpu"
    )


def test_service_anti_affinity_on_itself_spreads_one_per_node() -> None:
    world = World().add(node("n1"), node("n2"), node("n3"))
    svc = service("app.web", instances=3, strategy="random", affinity=("service!=web",))
    mapping = world.where(svc)
    assert sorted(mapping.values()) == ["n1", "n2", "n3"]
    result = world.plan(service("app.web", instances=4, affinity=("service!=web",)))
    assert result.error == (
        "Cannot find applicable node for service instance app.web-4: "
        "Did not find any nodes for affinity filter: service!=web"
    )
    assert len(result.placements) == 3


def test_service_anti_affinity_ignores_the_instance_being_moved() -> None:
    # web-1 already runs on n1; redeploying it must not be blocked by itself.
    world = World().add(node("n1")).run("app.web", 1, on="n1")
    assert world.where(service("app.web", affinity=("service!=web",))) == {1: "n1"}


def test_container_affinity_follows_placements_of_the_same_plan() -> None:
    world = World().add(node("n1"), node("n2"))
    svc = service("web", instances=2, strategy="random", affinity=("container!=web-1",))
    mapping = world.where(svc, seed=3)
    assert mapping[1] != mapping[2]


def test_container_names_reported_by_the_node_count() -> None:
    world = World().add(node("n1"), node("n2", containers=("weave",)))
    assert world.where(service("web", affinity=("container==weave",))) == {1: "n2"}
