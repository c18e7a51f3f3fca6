"""Rows and a simulated agent for deploy tests.

:class:`SimulatedAgents` stands in for core.node_rpc: there is no socket and no Docker. When
the deployer nudges a node, the "agent" is simulated in-process: it lists the node's pods
through the real ``/node_service_pods/list`` handler and reports each pod's state through the
real ``/node_service_pods/set_state`` handler, as the real agent does after converging (and,
for instances named in ``health``, a probe result through ``/node_service_pods/set_health``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.deployer import DeployEnv
from core.node_rpc import NodeOffline, NodeRef, node_pk
from core.pod_rpc import list_pods, set_health, set_state
from core.service_spec import default_spec
from core.vault import Vault
from models import Grid, Node, Service, ServiceDeploy, ServiceInstance
from models.base import utcnow
from models.db import Database


@dataclass
class SimulatedAgents:
    """Fake node RPC whose agents run in-process against the real pod handlers.

    ``behaviour[instance_number]``: ``"ok"`` (report running), ``"hang"`` (never report),
    ``"stopped"``, or any other text (report that error with state ``missing``).
    """

    database: Callable[[], Database]
    vault: Vault
    offline: set[str] = field(default_factory=set)
    behaviour: dict[int, str] = field(default_factory=dict)
    # instance number → "healthy", or the error of an unhealthy probe, reported after the state.
    health: dict[int, str] = field(default_factory=dict)
    delay: float = 0.0
    calls: list[tuple[str, str, list[Any]]] = field(default_factory=list)
    # Per sync: how many instances were assigned this rev but not yet reported (rolling width).
    pending_seen: list[int] = field(default_factory=list)
    containers: dict[str, set[str]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def request(
        self,
        node: NodeRef,
        method: str,
        params: list[Any],
        timeout: float = 30.0,
    ) -> Any:
        """A request to the node's (simulated) agent."""
        await self.notify(node, method, params)
        return {}

    async def notify(self, node: NodeRef, method: str, params: list[Any]) -> None:
        """A notification to the node's (simulated) agent."""
        pk = node_pk(node)
        if pk in self.offline:
            raise NodeOffline(f"node {pk} is not connected")
        self.calls.append((pk, method, list(params)))
        if method == "/service_pods/notify_update":
            task = asyncio.get_running_loop().create_task(self.sync(pk))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def nudges(self, method: str = "/service_pods/notify_update") -> list[str]:
        """Node ids that got ``method``, in order."""
        return [pk for pk, m, _ in self.calls if m == method]

    async def sync(self, node_pk_: str) -> None:
        """What the agent does on a nudge: list its pods, converge, report."""
        if self.delay:
            await asyncio.sleep(self.delay)
        db = self.database()
        async with db.session() as session:
            node = await session.get(Node, node_pk_)
            assert node is not None
            session.info["vault"] = self.vault
            pods = (await list_pods(session, node, [node.node_id]))["service_pods"]
            pending = await session.execute(
                select(ServiceInstance).where(
                    ServiceInstance.rev.is_(None), ServiceInstance.desired_state == "running"
                )
            )
            self.pending_seen.append(len(pending.scalars().all()))
            await session.commit()
        self.containers[node_pk_] = {
            p["id"] for p in pods if p.get("desired_state") in ("running", "stopped")
        }
        for pod in pods:
            report = self._report(pod)
            if report is None:
                continue
            async with db.session() as session:
                node = await session.get(Node, node_pk_)
                assert node is not None
                await set_state(session, node, [node.node_id, report])
                probe = self.health.get(pod["instance_number"])
                if probe is not None and report["state"] == "running":
                    health = {**report, "status": "healthy"}
                    if probe != "healthy":
                        health.update(status="unhealthy", error=probe)
                    del health["state"]
                    await set_health(session, node, [node.node_id, health])
                await session.commit()

    def _report(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        base = {
            "service_id": pod["service_id"],
            "instance_number": pod["instance_number"],
            "rev": pod["deploy_rev"],
        }
        if pod["desired_state"] == "terminated":
            return {**base, "state": "terminated"}
        how = self.behaviour.get(pod["instance_number"], "ok")
        if how == "hang":
            return None
        if how == "ok":
            return {**base, "state": pod["desired_state"]}
        if how == "stopped":
            return {**base, "state": "stopped"}
        return {**base, "state": "missing", "error": how}

    async def settle(self) -> None:
        """Wait for every simulated sync still running."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


def make_env(db: Database, vault: Vault, agents: SimulatedAgents, **limits: float) -> DeployEnv:
    """A deploy environment on the test database with the simulated agents and short polls."""
    return DeployEnv(db=db, vault=vault, rpc=agents, poll_interval=0.02, **limits)


async def add_nodes(db: Database, grid: Grid, *names: str, **attrs: Any) -> list[Node]:
    """Connected nodes ``names`` (numbered 1..n); ``labels`` maps a name to its labels."""
    labels: dict[str, list[str]] = attrs.pop("labels", {})
    nodes = [
        Node(
            grid_id=grid.id,
            name=name,
            node_id=f"SIM:{grid.name}:{name}",
            node_number=index,
            labels=labels.get(name, []),
            connected=True,
            updated=True,
            cpus=2,
            mem_total=2 * 1024**3,
            volume_drivers=[{"name": "local", "version": None}],
            **attrs,
        )
        for index, name in enumerate(names, start=1)
    ]
    async with db.session() as session:
        session.add_all(nodes)
        await session.commit()
    return nodes


async def add_service(
    db: Database, grid: Grid, name: str = "web", *, instances: int = 1, **spec: Any
) -> Service:
    """A running stack-less service; ``spec`` overrides keys of the default spec."""
    service = Service(
        grid_id=grid.id,
        stack="null",
        name=name,
        image=spec.pop("image", "local/busybox:latest"),
        state=spec.pop("state", "running"),
        instances=instances,
        stateful=False,
        strategy=spec.pop("strategy", "ha"),
        spec={**default_spec(), **spec},
    )
    async with db.session() as session:
        session.add(service)
        await session.commit()
    return service


async def add_deploy(
    db: Database, service: Service, *, created_at: datetime | None = None
) -> ServiceDeploy:
    """A deploy in ``created``, as the services API writes it."""
    deploy = ServiceDeploy(
        service_id=service.id,
        grid_id=service.grid_id,
        state="created",
        created_at=created_at or utcnow(),
        instance_deploys=[],
    )
    async with db.session() as session:
        session.add(deploy)
        await session.commit()
    return deploy


async def deploy_row(db: Database, deploy_id: str) -> ServiceDeploy:
    """The deploy as committed now."""
    async with db.session() as session:
        row = await session.get(ServiceDeploy, deploy_id)
        assert row is not None
        return row


async def instances(db: Database, service: Service) -> list[ServiceInstance]:
    """The service's instance rows, by number."""
    async with db.session() as session:
        rows = await session.execute(
            select(ServiceInstance)
            .where(ServiceInstance.service_id == service.id)
            .order_by(ServiceInstance.instance_number)
        )
        return list(rows.scalars().all())
