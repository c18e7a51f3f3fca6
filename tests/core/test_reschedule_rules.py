"""The rescheduling decision (reference §3.6) as table tests, with an injected clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core.reschedule_rules import (
    NodeFacts,
    ServiceFacts,
    decide,
    grace_seconds,
    nodes_in_play,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    """``seconds`` before NOW."""
    return NOW - timedelta(seconds=seconds)


A = NodeFacts("a", "node-a", connected=True)
B = NodeFacts("b", "node-b", connected=True)
NODES = {"a": A, "b": B}

# Deployed a minute ago at its current revision, one instance on each node, placement agrees.
SETTLED = ServiceFacts(
    path="g/null/web",
    revision=3,
    deployed_revision=3,
    deployed_at=ago(60),
    current={1: "a", 2: "b"},
    planned={1: "a", 2: "b"},
)


def offline(node: NodeFacts, seconds: float) -> NodeFacts:
    """``node`` disconnected ``seconds`` ago."""
    return replace(node, connected=False, disconnected_at=ago(seconds))


def test_grace_periods_are_kontenas() -> None:
    assert (grace_seconds("ha"), grace_seconds("daemon"), grace_seconds("random")) == (120, 600, 30)


@pytest.mark.parametrize(
    ("strategy", "offline_for", "in_play"),
    [
        ("ha", 119, True),
        ("ha", 121, False),
        ("random", 29, True),
        ("random", 31, False),
        ("daemon", 599, True),
        ("daemon", 601, False),
    ],
)
def test_an_offline_node_counts_until_its_strategys_grace_ends(
    strategy: str, offline_for: float, in_play: bool
) -> None:
    lost = offline(B, offline_for)
    assert (lost in nodes_in_play([A, lost], strategy, NOW, {"b"})) is in_play


def test_an_offline_node_only_counts_for_the_instances_it_holds() -> None:
    """Offered for new instances, it would make every tick want what no deploy can do."""
    assert nodes_in_play([A, offline(B, 10)], "ha", NOW, {"a"}) == [A]


def test_a_node_that_never_connected_is_not_in_play() -> None:
    never = NodeFacts("c", "node-c", connected=False)
    assert nodes_in_play([A, never], "ha", NOW, {"c"}) == [A]


CASES = [
    # (id, facts changes, nodes changes, expected reasons or None, force)
    ("settled", {}, {}, None, False),
    (
        "node lost past grace",
        {"planned": {1: "a", 2: "a"}},
        {"b": offline(B, 121)},
        ["node node-b has been offline longer than the 120 s grace of strategy ha"],
        False,
    ),
    (
        "random strategy, 31 s offline",
        {"strategy": "random", "planned": {1: "a", 2: "a"}},
        {"b": offline(B, 31)},
        ["node node-b has been offline longer than the 30 s grace of strategy random"],
        False,
    ),
    ("node offline within grace: placement kept", {}, {"b": offline(B, 60)}, None, False),
    (
        "node drained",
        {"planned": {1: "a", 2: "a"}},
        {"b": replace(B, availability="drain")},
        ["node node-b was drained"],
        False,
    ),
    (
        "daemon: a new node joined",
        {"strategy": "daemon", "current": {1: "a"}, "planned": {1: "a", 2: "b"}},
        {},
        ["node node-b is available"],
        False,
    ),
    (
        "daemon: a node went away past grace",
        {"strategy": "daemon", "planned": {1: "a"}},
        {"b": offline(B, 601)},
        ["node node-b has been offline longer than the 600 s grace of strategy daemon"],
        False,
    ),
    (
        "an instance without node (its node was removed)",
        {"current": {1: "a", 2: None}},
        {},
        ["instance 2 has no node"],
        False,
    ),
    (
        "rebalance onto a node that is back",
        {"current": {1: "a", 2: "a"}},
        {},
        ["instance 2 belongs on node node-b"],
        False,
    ),
    (
        "changed after its deploy (PUT)",
        {"revision": 4},
        {},
        ["revision 4 changed after the deploy of revision 3"],
        False,
    ),
    ("never deployed: no revision to lag behind", {"deployed_revision": None}, {}, None, False),
    ("interval not yet elapsed", {"interval": 61}, {}, None, False),
    ("interval elapsed", {"interval": 60}, {}, ["deploy interval of 60 s elapsed"], True),
    (
        "several at once",
        {"revision": 4, "interval": 30, "planned": {1: "a", 2: "a"}},
        {"b": replace(B, availability="drain")},
        [
            "node node-b was drained",
            "revision 4 changed after the deploy of revision 3",
            "deploy interval of 30 s elapsed",
        ],
        True,
    ),
    # Never while a deploy is pending or running (Kontena #2919), never stateful, never stopped.
    ("a deploy is pending or running", {"deploying": True, "interval": 1}, {}, None, False),
    (
        "stateful",
        {"stateful": True, "planned": {1: "a", 2: "a"}},
        {"b": offline(B, 9999)},
        None,
        False,
    ),
    ("stopped", {"state": "stopped", "revision": 9}, {}, None, False),
    ("placement finds no layout", {"planned": None}, {"b": offline(B, 9999)}, None, False),
]


@pytest.mark.parametrize(
    ("changes", "node_changes", "reasons", "force"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(
    changes: dict[str, object],
    node_changes: dict[str, NodeFacts],
    reasons: list[str] | None,
    force: bool,
) -> None:
    facts = replace(SETTLED, **changes)  # type: ignore[arg-type]
    decision = decide(facts, {**NODES, **node_changes}, NOW)
    if reasons is None:
        assert decision is None
    else:
        assert decision is not None
        assert list(decision.reasons) == reasons
        assert decision.force is force
        assert decision.why == "; ".join(reasons)
