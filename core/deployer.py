"""A service deploy, run by the ``deploys.run`` worker (reference §3.1-3.2, ARCHITECTURE.md §6).

Claim the deploy row, place the instances, terminate the surplus, then roll the instances out
in batches of ``floor(total * (1 - min_health))``: write each instance's node and ``deploy_rev``,
nudge its node, and wait until its agent reports that revision running (or an error, or the
per-instance timeout). Every step commits; no transaction stays open while waiting. The deploy's
revision is its ``started_at``, which survives a crash, so a new worker resumes the same deploy.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select

from core.deploy_plan import plan_service
from core.deploy_progress import LEASE_SECONDS, DeployLost, InstanceProgress, fenced_update
from core.deploy_queue import NOT_RUNNING, Gate, gate
from core.deploy_wait import wait_for_instances
from core.events import Severity, record_event
from core.node_rpc import NodeOffline, NodeRpcError
from core.pods import PodError, build_pod, health_check_of, load_pod_inputs, pod_service_name
from core.secrets import MissingSecretError
from core.services import service_path
from core.vault import Vault
from core.work import DEFAULT_MAX_DELIVERIES, claim
from models import Grid, Node, Service, ServiceDeploy, ServiceInstance
from models.base import utcnow
from models.db import Database
from scheduler.placement.model import Placement

log = logging.getLogger(__name__)

NOTIFY_UPDATE = "/service_pods/notify_update"
BATCH_CAP = 20  # Kontena's hard cap on concurrent instance deploys
DEFAULT_MIN_HEALTH = 0.8
HALTED = "the deploy halted before this instance reported its state"


class NodeCaller(Protocol):
    """The part of core.node_rpc.NodeRpc a deploy uses (tests pass a simulated agent)."""

    async def request(
        self,
        node: Node | str,
        method: str,
        params: list[Any],
        timeout: float = ...,  # noqa: ASYNC109
    ) -> Any:
        """Call the node's agent and wait for its answer."""

    async def notify(self, node: Node | str, method: str, params: list[Any]) -> None:
        """Send the node's agent a notification."""


@dataclass
class DeployEnv:
    """What a deploy needs: database, vault (secrets for the pre-flight check), node RPC, limits."""

    db: Database
    vault: Vault
    rpc: NodeCaller
    instance_timeout: float = 300.0
    deadline: float = 1800.0
    poll_interval: float = 0.1  # one indexed query per poll; 0.25 cost ~0.15 s per batch
    nudge_timeout: float = 5.0
    max_deliveries: int = DEFAULT_MAX_DELIVERIES


class DeployFailed(Exception):
    """The deploy ends ``error`` with this reason."""


def batch_size(total: int, min_health: float | None) -> int:
    """How many instances deploy at once: ``max(1, floor(total * (1 - min_health)))``, up to 20."""
    health = DEFAULT_MIN_HEALTH if min_health is None else min(max(float(min_health), 0.0), 1.0)
    return max(1, min(BATCH_CAP, math.floor(total * (1 - health) + 1e-9)))


def deploy_rev(started_at: datetime) -> str:
    """The revision instances of a deploy carry: its start time, ISO UTC with microseconds."""
    return started_at.astimezone(UTC).isoformat(timespec="microseconds")


async def run_deploy(env: DeployEnv, deploy_id: str) -> Gate:
    """One delivery of ``deploys.run``: wait, do nothing, or run (resume) the deploy."""
    async with env.db.session() as session:
        decision = await gate(session, deploy_id)
        await session.commit()
    if decision is not Gate.RUN:
        return decision
    async with env.db.session() as session:
        row = await claim(
            session, ServiceDeploy, deploy_id, LEASE_SECONDS, max_deliveries=env.max_deliveries
        )
        await session.commit()
    if row is None:
        log.info("deploy %s: finished or held by another worker", deploy_id)
        return Gate.DONE
    try:
        await DeployRun(env, row).execute()
    except DeployLost:
        log.warning("deploy %s was finished or taken over by another worker", deploy_id)
    return Gate.DONE


class DeployRun:
    """One attempt at a deploy this worker claimed."""

    def __init__(self, env: DeployEnv, row: ServiceDeploy) -> None:
        self.env = env
        self.id = row.id
        self.attempt = row.attempts
        self.service_id = row.service_id
        assert row.started_at is not None  # set by the claim
        self.started_at = row.started_at
        self.rev = deploy_rev(row.started_at)
        self.progress = InstanceProgress(row.instance_deploys)
        self.path = ""
        self.svc_name = ""
        self.grid_name = ""
        self.grid_id = row.grid_id
        self.stack = ""
        self.name = ""
        self.min_health: float | None = None
        # With a health check an instance counts as deployed only once healthy (Kontena #2770).
        self.health_checked = False

    async def execute(self) -> None:
        """Run to a terminal state (or DeployLost)."""
        try:
            await self._start()
            placements = await self._plan()
            await self._scale_down(len(placements))
            for batch in self._batches(placements):
                await self._deploy_batch(batch)
        except DeployFailed as exc:
            await self._finish(False, str(exc))
            return
        await self._finish(True, None)

    # Steps ---------------------------------------------------------------------------------
    async def _start(self) -> None:
        async with self.env.db.session() as session:
            service = await session.get(Service, self.service_id)
            grid = await session.get(Grid, self.grid_id)
            if service is None or grid is None:
                raise DeployLost(self.id)  # deleted: the deploy row goes with it
            self.path = service_path(grid.name, service)
            self.svc_name = pod_service_name(service)
            self.grid_name, self.stack, self.name = grid.name, service.stack, service.name
            if service.state != "running":
                raise DeployFailed(NOT_RUNNING)
            self.min_health = (service.spec.get("deploy_opts") or {}).get("min_health")
            self.health_checked = health_check_of(service.spec) is not None
            self._check_deadline()
            await fenced_update(session, self.id, self.attempt)
            if self.attempt == 1:
                service.deployed_at = self.started_at
                service.deployed_revision = service.revision
                self._event(session, "service:deploy", f"service {self.path} deploy started")
            await session.commit()

    async def _plan(self) -> list[Placement]:
        async with self.env.db.session() as session:
            service = await session.get(Service, self.service_id)
            grid = await session.get(Grid, self.grid_id)
            if service is None or grid is None:
                raise DeployLost(self.id)
            try:
                # A missing secret or an unusable spec fails now, before any container changes.
                inputs = await load_pod_inputs(session, self.env.vault, grid, service)
                probe = ServiceInstance(service_id=service.id, instance_number=1)
                probe.desired_state, probe.deploy_rev = "running", self.rev
                build_pod(grid, service, probe, None, inputs)
            except (MissingSecretError, PodError) as exc:
                raise DeployFailed(f"halting deploy of {self.path}: {exc}") from exc
            plan = await plan_service(session, grid, service)
            await session.rollback()
        if not plan.ok:
            raise DeployFailed(plan.error or f"cannot place the instances of {self.path}")
        return sorted(plan.placements, key=lambda p: p.instance_number)

    async def _scale_down(self, total: int) -> None:
        """Instances above ``total`` terminate: their agents remove the containers."""
        nodes: set[str] = set()
        async with self.env.db.session() as session:
            await fenced_update(session, self.id, self.attempt)
            surplus = (
                await session.execute(
                    select(ServiceInstance).where(
                        ServiceInstance.service_id == self.service_id,
                        ServiceInstance.instance_number > total,
                    )
                )
            ).scalars()
            for instance in surplus:
                if instance.node_id is None:
                    await session.delete(instance)  # nowhere to remove it from
                elif instance.desired_state != "terminated":
                    instance.desired_state, instance.deploy_rev = "terminated", self.rev
                    nodes.add(instance.node_id)
            await session.commit()
        for node_id in nodes:
            await self._notify(node_id)

    def _batches(self, placements: Sequence[Placement]) -> list[list[Placement]]:
        size = batch_size(len(placements), self.min_health)
        return [list(placements[i : i + size]) for i in range(0, len(placements), size)]

    async def _deploy_batch(self, batch: list[Placement]) -> None:
        todo = [p for p in batch if self.progress.state(p.instance_number) != "success"]
        if not todo:
            return  # done by the attempt before a crash
        self._check_deadline()
        targets, moved = await self._assign(todo)
        errors: dict[int, str] = {}
        for node_id in {node_id for node_id, _ in targets.values()}:
            try:
                await self.env.rpc.request(node_id, NOTIFY_UPDATE, [], self.env.nudge_timeout)
            except NodeOffline:
                for number, (target, node_name) in targets.items():
                    if target == node_id:
                        errors[number] = f"Node {self.grid_name}/{node_name} is not connected"
            except NodeRpcError as exc:
                # The agent also re-lists every 30 s; the instance timeout covers a lost nudge.
                log.warning("deploy %s: nudging node %s failed: %s", self.id, node_id, exc)
        for node_id in moved:
            await self._notify(node_id)
        await self._wait(targets, errors)

    async def _assign(self, todo: list[Placement]) -> tuple[dict[int, tuple[str, str]], set[str]]:
        """Write node, deploy_rev and desired state of each instance; returns targets, old nodes."""
        targets: dict[int, tuple[str, str]] = {}
        moved: set[str] = set()
        async with self.env.db.session() as session:
            await self.check_service(session)
            numbers = [p.instance_number for p in todo]
            existing = {
                i.instance_number: i
                for i in (
                    await session.execute(
                        select(ServiceInstance).where(
                            ServiceInstance.service_id == self.service_id,
                            ServiceInstance.instance_number.in_(numbers),
                        )
                    )
                ).scalars()
            }
            for placement in todo:
                number = placement.instance_number
                instance = existing.get(number)
                if instance is None:
                    instance = ServiceInstance(service_id=self.service_id, instance_number=number)
                    session.add(instance)
                if (
                    instance.deploy_rev == self.rev
                    and instance.desired_state == "running"
                    and instance.node_id is not None
                ):
                    targets[number] = (instance.node_id, "")  # resumed: keep what was written
                    continue
                if instance.node_id and instance.node_id != placement.node_id:
                    moved.add(instance.node_id)
                instance.node_id = placement.node_id
                instance.deploy_rev, instance.desired_state = self.rev, "running"
                instance.rev, instance.error = None, None
                # Health probed before this deploy says nothing about its container.
                instance.health_status = instance.health_error = None
                targets[number] = (placement.node_id, "")
            names = await self._node_names(session, {n for n, _ in targets.values()})
            targets = {k: (n, names.get(n, n)) for k, (n, _) in targets.items()}
            for number, (_, node_name) in targets.items():
                self.progress.set(number, node_name, "ongoing")
            await fenced_update(
                session, self.id, self.attempt, instance_deploys=self.progress.as_list()
            )
            await session.commit()
        return targets, moved - {n for n, _ in targets.values()}

    async def _wait(self, targets: dict[int, tuple[str, str]], errors: dict[int, str]) -> None:
        """Poll until every instance of the batch reports this revision, fails, or times out."""
        failures = await wait_for_instances(self, targets, errors)
        if failures:
            number, error = failures[0]
            node_name = targets[number][1]
            raise DeployFailed(
                f"halting deploy of {self.path}, one or more instances failed: "
                f"{self.svc_name}-{number} on node {node_name}: {error}"
            )

    async def _finish(self, success: bool, reason: str | None) -> None:
        if not success:
            self.progress.halt_ongoing(HALTED)
        async with self.env.db.session() as session:
            now = utcnow()
            await fenced_update(
                session,
                self.id,
                self.attempt,
                state="success" if success else "error",
                finished_at=now,
                reason=reason,
                lease_until=None,
                instance_deploys=self.progress.as_list(),
            )
            service = await session.get(Service, self.service_id)
            if success:
                if service is not None:
                    service.deployed_at = now
                self._event(session, "service:deploy", f"service {self.path} deployed")
            else:
                self._event(
                    session,
                    "service:deploy",
                    f"deploy of {self.path} errored: {reason}",
                    Severity.ERROR,
                )
            await session.commit()
        log.info("deploy %s of %s: %s %s", self.id, self.path, success, reason or "")

    # Helpers -------------------------------------------------------------------------------
    def _check_deadline(self) -> None:
        if (utcnow() - self.started_at).total_seconds() > self.env.deadline:
            raise DeployFailed(
                f"halting deploy of {self.path}: it did not finish within the deploy deadline "
                f"of {self.env.deadline:g} s"
            )

    async def check_service(self, session: Any, *, renew: bool = True) -> None:
        """Renew the lease; halt when the service was stopped or removed meanwhile."""
        if renew:
            await fenced_update(session, self.id, self.attempt)
        state = (
            await session.execute(select(Service.state).where(Service.id == self.service_id))
        ).scalar_one_or_none()
        if state is None:
            raise DeployLost(self.id)
        if state != "running":
            raise DeployFailed(f"halting deploy of {self.path}, desired state has changed")
        self._check_deadline()

    async def _node_names(self, session: Any, ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = await session.execute(select(Node.id, Node.name).where(Node.id.in_(ids)))
        return {row.id: row.name for row in rows}

    async def _notify(self, node_id: str) -> None:
        try:
            await self.env.rpc.notify(node_id, NOTIFY_UPDATE, [])
        except NodeRpcError as exc:
            # An offline node removes what it no longer lists when it reconnects.
            log.info("deploy %s: node %s not nudged: %s", self.id, node_id, exc)

    def _event(
        self, session: Any, type_: str, message: str, severity: Severity = Severity.INFO
    ) -> None:
        record_event(
            session,
            self.grid_id,
            type_,
            message,
            severity=severity,
            stack=self.stack,
            service=self.name,
        )


def monotonic() -> float:
    """The clock waits are measured with (a function so tests could replace it)."""
    return time.monotonic()
