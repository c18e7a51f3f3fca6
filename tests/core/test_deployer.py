"""The deployer against the real database, with agents simulated in-process.

The node RPC is tests.core.deploy_support.SimulatedAgents: no socket, no Docker. A nudged
"agent" lists its pods through the real ``/node_service_pods/list`` handler and reports through
the real ``/node_service_pods/set_state`` handler. Real agents and Docker are covered by
tests/e2e/test_deploy.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core import secrets
from core.deploy_queue import Gate
from core.deployer import batch_size, deploy_rev, run_deploy
from core.secrets import SecretCreate
from core.vault import Vault
from core.work import recover, registered
from models import EventLog, Grid, ServiceDeploy, ServiceInstance
from models.base import utcnow
from models.db import Database
from tests.core.deploy_support import (
    SimulatedAgents,
    add_deploy,
    add_nodes,
    add_service,
    deploy_row,
    instances,
    make_env,
)
from tests.fixtures.grid_rows import create_grid_row


@pytest.fixture
async def grid(db: Database, vault: Vault) -> Grid:
    """Grid ``main`` with connected nodes node-1 (az=a) and node-2 (az=b)."""
    grid = await create_grid_row(db, vault, "main")
    await add_nodes(db, grid, "node-1", "node-2", labels={"node-1": ["az=a"], "node-2": ["az=b"]})
    return grid


@pytest.fixture
async def agents(db: Database, vault: Vault) -> SimulatedAgents:
    """Simulated agents for the grid's nodes."""
    return SimulatedAgents(lambda: db, vault)


async def events(db: Database) -> list[str]:
    """Event log messages, oldest first."""
    async with db.session() as session:
        rows = await session.execute(select(EventLog.message).order_by(EventLog.id))
        return list(rows.scalars().all())


def test_batch_size_follows_min_health() -> None:
    assert batch_size(4, None) == 1  # default 0.8: one at a time below 5 instances
    assert batch_size(10, 0.8) == 2
    assert batch_size(10, 0.5) == 5
    assert batch_size(7, 0.0) == 7
    assert batch_size(100, 0.0) == 20  # Kontena's cap
    assert batch_size(3, 1.0) == 1


async def test_a_deploy_places_instances_and_ends_success_when_agents_run_them(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    async with db.session() as session:
        await secrets.create_secret(
            session, vault, grid, SecretCreate(name="DB_PASS", value="s3cret")
        )
        await session.commit()
    service = await add_service(
        db,
        grid,
        instances=2,
        env=["GREETING=hi"],
        ports=[{"node_port": 8080, "container_port": 80, "ip": "127.0.0.1", "protocol": "tcp"}],
        secrets=[{"secret": "DB_PASS", "name": "PASSWORD", "type": "env"}],
    )
    deploy = await add_deploy(db, service)

    assert await run_deploy(make_env(db, vault, agents), deploy.id) is Gate.DONE

    row = await deploy_row(db, deploy.id)
    assert row.state == "success" and row.reason is None
    assert row.started_at is not None and row.finished_at is not None
    assert row.attempts == 1 and row.lease_until is None
    entries = row.instance_deploys
    assert [(e["instance_number"], e["state"], e["error"]) for e in entries] == [
        (1, "success", None),
        (2, "success", None),
    ]
    assert {e["node"] for e in entries} == {"node-1", "node-2"}  # ha spreads over az
    rev = deploy_rev(row.started_at)
    placed = await instances(db, service)
    assert [(i.deploy_rev, i.rev, i.state, i.desired_state) for i in placed] == [
        (rev, rev, "running", "running")
    ] * 2
    assert len({i.node_id for i in placed}) == 2
    assert await events(db) == [
        "service main/null/web deploy started",
        "service main/null/web deployed",
    ]
    # What the agents were handed: the service's env, Kontena's, the resolved secret, ports.
    await agents.settle()
    node = placed[0].node_id
    assert node is not None
    async with db.session() as session:
        from core.pod_rpc import node_pods
        from models import Node

        node_row = await session.get(Node, node)
        assert node_row is not None
        pods = await node_pods(session, node_row, vault)
    assert len(pods) == 1
    pod = pods[0]
    number = pod["instance_number"]
    assert pod["id"] == f"{service.id}/{number}"
    assert pod["service_name"] == "web" and pod["deploy_rev"] == rev
    assert pod["env"] == [
        "GREETING=hi",
        f"KONTENA_SERVICE_ID={service.id}",
        "KONTENA_SERVICE_NAME=web",
        "KONTENA_GRID_NAME=main",
        "KONTENA_PLATFORM_NAME=main",
        "KONTENA_STACK_NAME=null",
        f"KONTENA_NODE_NAME={node_row.name}",
        f"KONTENA_SERVICE_INSTANCE_NUMBER={number}",
        "PASSWORD=s3cret",
    ]
    assert pod["ports"] == [
        {"container_port": 80, "node_port": 8080, "protocol": "tcp", "ip": "127.0.0.1"}
    ]
    assert pod["labels"]["io.kontena.service.id"] == service.id
    assert pod["labels"]["io.kontena.service.instance_number"] == str(number)
    assert pod["hostname"] == f"web-{number}"


async def test_a_placement_failure_ends_error_naming_the_rule_without_touching_instances(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid, instances=2, affinity=["label==db"])
    deploy = await add_deploy(db, service)
    started = asyncio.get_running_loop().time()
    await run_deploy(make_env(db, vault, agents), deploy.id)
    assert asyncio.get_running_loop().time() - started < 5
    row = await deploy_row(db, deploy.id)
    assert row.state == "error" and row.finished_at is not None
    assert row.reason is not None
    assert row.reason.startswith("Cannot find applicable node for service instance web-1")
    assert "label==db" in row.reason
    assert await instances(db, service) == []
    assert agents.calls == []
    assert (await events(db))[-1] == f"deploy of main/null/web errored: {row.reason}"


async def test_a_missing_secret_fails_the_deploy_naming_the_secret(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(
        db, grid, secrets=[{"secret": "NOPE", "name": "PASSWORD", "type": "env"}]
    )
    deploy = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, agents), deploy.id)
    row = await deploy_row(db, deploy.id)
    assert row.state == "error"
    assert row.reason == "halting deploy of main/null/web: secret NOPE not found in grid main"
    assert await instances(db, service) == []


async def test_an_instance_error_halts_the_deploy_with_the_agents_error(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    agents.behaviour[2] = "image local/nope:latest not found"
    service = await add_service(db, grid, instances=3)
    deploy = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, agents), deploy.id)
    row = await deploy_row(db, deploy.id)
    assert row.state == "error"
    node = row.instance_deploys[1]["node"]
    assert row.reason == (
        "halting deploy of main/null/web, one or more instances failed: "
        f"web-2 on node {node}: image local/nope:latest not found"
    )
    # Instance 3 was never started: the first failure halts a rolling deploy.
    assert [(e["instance_number"], e["state"]) for e in row.instance_deploys] == [
        (1, "success"),
        (2, "error"),
    ]
    assert row.instance_deploys[1]["error"] == "image local/nope:latest not found"
    assert [i.instance_number for i in await instances(db, service)] == [1, 2]


async def test_an_instance_that_never_reports_times_out_with_a_reason(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    agents.behaviour[1] = "hang"
    service = await add_service(db, grid, instances=1)
    deploy = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, agents, instance_timeout=0.3), deploy.id)
    row = await deploy_row(db, deploy.id)
    node = row.instance_deploys[0]["node"]
    error = (
        f"Timeout after waiting 0.3s until: service main/null/web-1 is running on node main/{node}"
    )
    assert row.state == "error"
    assert row.instance_deploys[0]["error"] == error
    assert row.reason == (
        f"halting deploy of main/null/web, one or more instances failed: web-1 on node {node}: "
        + error
    )


async def test_an_offline_node_fails_its_instance_naming_the_node(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid, instances=1, affinity=["node==node-2"])
    async with db.session() as session:
        from models import Node

        node2 = (await session.execute(select(Node).where(Node.name == "node-2"))).scalar_one()
    agents.offline.add(node2.id)
    deploy = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, agents), deploy.id)
    row = await deploy_row(db, deploy.id)
    assert row.state == "error"
    assert row.instance_deploys[0]["error"] == "Node main/node-2 is not connected"
    assert "web-1 on node node-2: Node main/node-2 is not connected" in (row.reason or "")


async def test_a_deploy_of_a_stopped_service_is_aborted_without_starting(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid, state="stopped")
    deploy = await add_deploy(db, service)
    await run_deploy(make_env(db, vault, agents), deploy.id)
    row = await deploy_row(db, deploy.id)
    assert (row.state, row.reason, row.started_at) == ("error", "service is not running", None)
    assert row.finished_at is not None


async def test_a_later_deploy_waits_until_the_earlier_one_finished(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    agents.delay = 0.2
    service = await add_service(db, grid, instances=1)
    first = await add_deploy(db, service, created_at=utcnow() - timedelta(seconds=1))
    second = await add_deploy(db, service)
    env = make_env(db, vault, agents)
    # The second is delivered first: it must wait, staying `created` (not half-started).
    assert await run_deploy(env, second.id) is Gate.WAIT
    running = asyncio.create_task(run_deploy(env, first.id))
    while (await deploy_row(db, first.id)).state != "ongoing":
        await asyncio.sleep(0.01)
    assert await run_deploy(env, second.id) is Gate.WAIT
    waiting = await deploy_row(db, second.id)
    assert (waiting.state, waiting.started_at) == ("created", None)
    await running
    assert await run_deploy(env, second.id) is Gate.DONE
    one, two = await deploy_row(db, first.id), await deploy_row(db, second.id)
    assert one.state == two.state == "success"
    assert one.finished_at is not None and two.started_at is not None
    assert two.started_at >= one.finished_at


async def test_scaling_down_terminates_the_surplus_and_agents_remove_them(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid, instances=3)
    env = make_env(db, vault, agents)
    await run_deploy(env, (await add_deploy(db, service)).id)
    assert [i.instance_number for i in await instances(db, service)] == [1, 2, 3]
    async with db.session() as session:
        await session.execute(
            update(type(service)).where(type(service).id == service.id).values(instances=1)
        )
        await session.commit()
    deploy = await add_deploy(db, service)
    await run_deploy(env, deploy.id)
    await agents.settle()
    assert (await deploy_row(db, deploy.id)).state == "success"
    left = await instances(db, service)
    assert [(i.instance_number, i.desired_state) for i in left] == [(1, "running")]
    # No agent still runs a container of the removed instances.
    running = set().union(*agents.containers.values())
    assert running == {f"{service.id}/1"}


async def test_min_health_sets_how_many_instances_roll_at_once(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    agents.delay = 0.05
    service = await add_service(
        db,
        grid,
        instances=6,
        deploy_opts={"min_health": 0.5, "wait_for_port": None, "interval": None},
    )
    await run_deploy(make_env(db, vault, agents), (await add_deploy(db, service)).id)
    assert max(agents.pending_seen) == 3  # floor(6 x 0.5) at once, never more
    assert len(agents.nudges()) <= 4  # two batches, each nudging at most both nodes

    agents.pending_seen.clear()
    service2 = await add_service(db, grid, "one-by-one", instances=4)
    await run_deploy(make_env(db, vault, agents), (await add_deploy(db, service2)).id)
    assert max(agents.pending_seen) == 1  # default 0.8 with 4 instances: one at a time


async def test_a_duplicate_delivery_does_the_work_once(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    agents.delay = 0.1
    service = await add_service(db, grid, instances=2)
    deploy = await add_deploy(db, service)
    env = make_env(db, vault, agents)
    await asyncio.gather(run_deploy(env, deploy.id), run_deploy(env, deploy.id))
    await run_deploy(env, deploy.id)  # and a late redelivery after it finished
    row = await deploy_row(db, deploy.id)
    assert row.state == "success" and row.attempts == 1
    assert len(agents.nudges()) == 2  # one nudge per instance, not per delivery
    assert len(await instances(db, service)) == 2
    assert (await events(db)).count("service main/null/web deploy started") == 1


async def test_recovery_resumes_a_deploy_left_ongoing_by_a_killed_worker(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    import core.service_actions  # noqa: F401  (registers the deploy work kind)

    service = await add_service(db, grid, instances=2)
    deploy = await add_deploy(db, service)
    env = make_env(db, vault, agents)
    # A worker claimed the deploy, finished instance 1, wrote instance 2, then was SIGKILLed.
    agents.behaviour[2] = "hang"
    task = asyncio.create_task(run_deploy(env, deploy.id))
    while len(await instances(db, service)) < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await agents.settle()
    killed = await deploy_row(db, deploy.id)
    assert killed.state == "ongoing" and killed.attempts == 1
    assert [e["state"] for e in killed.instance_deploys] == ["success", "ongoing"]
    before = {i.instance_number: (i.node_id, i.deploy_rev) for i in await instances(db, service)}
    async with db.session() as session:  # its lease ran out two minutes ago
        await session.execute(
            update(ServiceDeploy)
            .where(ServiceDeploy.id == deploy.id)
            .values(lease_until=utcnow() - timedelta(minutes=2))
        )
        await session.commit()

    async with db.session() as session:
        resends = await recover(session, utcnow(), registered(), recovery_after=60, deadline=3600)
        await session.commit()
    jobs = [r.job for r in resends if r.row_id == deploy.id]
    assert len(jobs) == 1 and jobs[0].actor == "deploys.run" and jobs[0].args == (deploy.id,)

    agents.behaviour[2] = "ok"  # the agent did start it meanwhile; only its report was due
    calls_before = len(agents.nudges())
    await run_deploy(env, deploy.id)  # the re-sent job, on a new worker
    row = await deploy_row(db, deploy.id)
    assert row.state == "success" and row.attempts == 2
    after = await instances(db, service)
    # Same deploy revision, same nodes, no duplicate instance; instance 1 was not redone.
    assert {i.instance_number: (i.node_id, i.deploy_rev) for i in after} == before
    assert len(agents.nudges()) - calls_before == 1
    assert (await events(db)).count("service main/null/web deploy started") == 1


async def test_a_resumed_deploy_past_its_deadline_ends_error(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    service = await add_service(db, grid)
    deploy = await add_deploy(db, service)
    async with db.session() as session:
        await session.execute(
            update(ServiceDeploy)
            .where(ServiceDeploy.id == deploy.id)
            .values(
                state="ongoing",
                attempts=1,
                started_at=utcnow() - timedelta(hours=1),
                lease_until=utcnow() - timedelta(minutes=5),
            )
        )
        await session.commit()
    await run_deploy(make_env(db, vault, agents, deadline=1800), deploy.id)
    row = await deploy_row(db, deploy.id)
    assert row.state == "error" and row.finished_at is not None
    assert row.reason == (
        "halting deploy of main/null/web: it did not finish within the deploy deadline of 1800 s"
    )


async def test_stopping_the_service_halts_a_running_deploy(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    agents.behaviour[1] = "hang"
    service = await add_service(db, grid)
    deploy = await add_deploy(db, service)
    task = asyncio.create_task(run_deploy(make_env(db, vault, agents), deploy.id))
    while not await instances(db, service):
        await asyncio.sleep(0.01)
    async with db.session() as session:
        await session.execute(
            update(type(service)).where(type(service).id == service.id).values(state="stopped")
        )
        await session.commit()
    await asyncio.wait_for(task, 10)
    row = await deploy_row(db, deploy.id)
    assert row.state == "error"
    assert row.reason == "halting deploy of main/null/web, desired state has changed"
    assert row.instance_deploys[0]["state"] == "error"


async def test_stale_or_foreign_reports_do_not_change_an_instance(
    db: Database, vault: Vault, grid: Grid, agents: SimulatedAgents
) -> None:
    from core.pod_rpc import set_state
    from models import Node

    service = await add_service(db, grid)
    await run_deploy(make_env(db, vault, agents), (await add_deploy(db, service)).id)
    await agents.settle()
    (instance,) = await instances(db, service)
    async with db.session() as session:
        nodes = (await session.execute(select(Node).order_by(Node.node_number))).scalars().all()
        own = next(n for n in nodes if n.id == instance.node_id)
        other = next(n for n in nodes if n.id != instance.node_id)
        base = {"service_id": service.id, "instance_number": 1}
        await set_state(session, own, [own.node_id, {**base, "rev": "old", "state": "stopped"}])
        await set_state(
            session, other, [other.node_id, {**base, "rev": instance.deploy_rev, "state": "x"}]
        )
        await session.commit()
    (unchanged,) = await instances(db, service)
    assert (unchanged.rev, unchanged.state) == (instance.deploy_rev, "running")
    async with db.session() as session:
        rows = await session.execute(select(ServiceInstance.id))
        assert len(rows.all()) == 1
