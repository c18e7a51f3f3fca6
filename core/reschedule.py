"""Continuous rescheduling, the database part: gather facts, decide, queue redeploys.

Run by the ``services.reschedule`` tick (every ``KONTENA_RESCHEDULE_INTERVAL`` seconds, 20 by
default). Each redeploy is an ordinary deploy object (the outbox rule) plus an event line of type
``scheduler`` saying why. Kontena #2919: a service never gets a second deploy from the tick while
one is pending or running; the check and the insert run in one transaction that holds the
service row locked, so two ticks, or a tick and a user's deploy, cannot both see "no deploy".
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.deploy_plan import grid_instances, placement_views
from core.events import record_event
from core.jobs import JobSender
from core.reschedule_rules import Decision, NodeFacts, ServiceFacts, decide, nodes_in_play
from core.service_actions import redeploy_service
from core.services import service_path
from core.unit_of_work import UnitOfWork
from core.work import ACTIVE
from models import Grid, Node, Service, ServiceDeploy, ServiceInstance
from models.base import utcnow
from models.db import Database
from scheduler.placement import InstanceView, plan_deploy

log = logging.getLogger(__name__)

EVENT_TYPE = "scheduler"  # reference §3.6: every trigger writes an event of this type


@dataclass(frozen=True)
class Candidate:
    """A service the tick decided to redeploy, with what it saw of it."""

    service_id: str
    path: str
    decision: Decision
    deployed_at: datetime | None


@dataclass(frozen=True)
class Rescheduled:
    """A redeploy the tick queued."""

    service_id: str
    path: str
    deploy_id: str
    why: str


async def reschedule(
    db: Database, sender: JobSender, now: datetime | None = None
) -> list[Rescheduled]:
    """One tick: redeploy every running stateless service that needs it; returns what it queued."""
    now = now or utcnow()
    async with db.session() as session:
        candidates = await find_candidates(session, now)
    done = []
    for candidate in candidates:
        try:
            queued = await queue_redeploy(db, sender, candidate)
        except Exception:
            # One service's failure must not starve the others; the next tick tries again.
            log.exception("rescheduling %s failed", candidate.path)
            continue
        if queued is not None:
            done.append(queued)
    return done


async def find_candidates(session: AsyncSession, now: datetime) -> list[Candidate]:
    """The services to redeploy, oldest change first (reads only)."""
    services = (
        (
            await session.execute(
                select(Service)
                .where(Service.state == "running", Service.stateful.is_(False))
                .order_by(Service.updated_at, Service.id)
            )
        )
        .scalars()
        .all()
    )
    if not services:
        return []
    deploying = set(
        (
            await session.execute(
                select(ServiceDeploy.service_id).where(ServiceDeploy.state.in_(ACTIVE)).distinct()
            )
        ).scalars()
    )
    by_grid: dict[str, list[Service]] = defaultdict(list)
    for service in services:
        if service.id not in deploying:
            by_grid[service.grid_id].append(service)
    found: list[Candidate] = []
    for grid_id, grid_services in by_grid.items():
        grid = await session.get(Grid, grid_id)
        if grid is None:
            continue
        found.extend(await _grid_candidates(session, grid, grid_services, now))
    return found


async def _grid_candidates(
    session: AsyncSession, grid: Grid, services: Sequence[Service], now: datetime
) -> list[Candidate]:
    nodes = (
        (
            await session.execute(
                select(Node).where(Node.grid_id == grid.id).order_by(Node.node_number)
            )
        )
        .scalars()
        .all()
    )
    facts_of = {node.id: node_facts(node) for node in nodes}
    existing = await grid_instances(session, grid.id)
    current = await _current_layouts(session, [s.id for s in services])
    found = []
    for service in services:
        layout = current.get(service.id, {})
        facts = ServiceFacts(
            path=service_path(grid.name, service),
            strategy=service.strategy,
            stateful=service.stateful,
            state=service.state,
            revision=service.revision,
            deployed_revision=service.deployed_revision,
            deployed_at=service.deployed_at,
            interval=_interval(service),
            current=layout,
            planned=await _planned(session, grid, service, nodes, facts_of, existing, layout, now),
        )
        decision = decide(facts, facts_of, now)
        if decision is not None:
            found.append(Candidate(service.id, facts.path, decision, service.deployed_at))
    return found


def node_facts(node: Node) -> NodeFacts:
    """A node row as rescheduling sees it."""
    return NodeFacts(
        id=node.id,
        name=node.name,
        connected=node.connected,
        availability=node.availability,
        disconnected_at=node.disconnected_at,
    )


async def _planned(
    session: AsyncSession,
    grid: Grid,
    service: Service,
    nodes: Sequence[Node],
    facts_of: dict[str, NodeFacts],
    existing: list[InstanceView],
    layout: dict[int, str | None],
    now: datetime,
) -> dict[int, str] | None:
    """Where placement would put the instances now; None when it finds no layout."""
    holding = {node_id for node_id in layout.values() if node_id}
    in_play = {f.id for f in nodes_in_play(facts_of.values(), service.strategy, now, holding)}
    # The views a deploy plans with (volume drivers and instances included), or the check
    # would want layouts a deploy cannot produce and redeploy every tick.
    view, node_views = await placement_views(
        session, service, [node for node in nodes if node.id in in_play]
    )
    plan = plan_deploy(
        view,
        node_views,
        existing,
        list(grid.default_affinity or ()),
        # A fixed seed: the check must not see a "different" layout from a coin toss alone.
        rng=random.Random(0),
    )
    if not plan.ok:
        # A deploy would fail the same way; deploys that fail every tick help no one.
        return None
    return {p.instance_number: p.node_id for p in plan.placements}


async def _current_layouts(
    session: AsyncSession, service_ids: list[str]
) -> dict[str, dict[int, str | None]]:
    """Instance number → node id (None: unplaced) of each service's live instances."""
    rows = await session.execute(
        select(
            ServiceInstance.service_id, ServiceInstance.instance_number, ServiceInstance.node_id
        ).where(
            ServiceInstance.service_id.in_(service_ids),
            ServiceInstance.desired_state != "terminated",
        )
    )
    layouts: dict[str, dict[int, str | None]] = defaultdict(dict)
    for row in rows:
        layouts[row.service_id][row.instance_number] = row.node_id
    return layouts


def _interval(service: Service) -> int | None:
    value = ((service.spec or {}).get("deploy_opts") or {}).get("interval")
    return int(value) if isinstance(value, int | float) and value > 0 else None


async def lock_service(session: AsyncSession, service_id: str) -> Service | None:
    """The service row, locked until the transaction ends (a no-op write on SQLite)."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks; a first write takes the database's write lock instead, so a
        # concurrent transaction cannot read "no deploy" and then insert one too.
        await session.execute(
            update(Service)
            .where(Service.id == service_id)
            .values(updated_at=Service.updated_at)
            .execution_options(synchronize_session=False)
        )
    query = (
        select(Service)
        .where(Service.id == service_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def has_active_deploy(session: AsyncSession, service_id: str) -> bool:
    """True when the service has a deploy that is pending (created) or running (ongoing)."""
    query = (
        select(ServiceDeploy.id)
        .where(ServiceDeploy.service_id == service_id, ServiceDeploy.state.in_(ACTIVE))
        .limit(1)
    )
    return (await session.execute(query)).first() is not None


async def queue_redeploy(
    db: Database, sender: JobSender, candidate: Candidate
) -> Rescheduled | None:
    """Create the redeploy unless the service changed meanwhile or already has a deploy."""
    async with db.session() as session:
        uow = UnitOfWork(session, sender)
        service = await lock_service(session, candidate.service_id)
        if (
            service is None
            or service.state != "running"
            or service.stateful
            # Deployed since we looked: the next tick decides on fresh facts.
            or service.deployed_at != candidate.deployed_at
            or await has_active_deploy(session, service.id)
        ):
            await uow.rollback()
            return None
        grid = await session.get(Grid, service.grid_id)
        if grid is None:
            await uow.rollback()
            return None
        deploy = await redeploy_service(uow, grid, service, force=candidate.decision.force)
        why = candidate.decision.why
        record_event(
            session,
            grid.id,
            EVENT_TYPE,
            f"service {candidate.path} rescheduled: {why}",
            stack=service.stack,
            service=service.name,
        )
        deploy_id = deploy.id
        unsent = await uow.commit()
    if unsent:
        log.warning("rescheduled deploy %s not sent; the recovery tick re-sends it", deploy_id)
    log.info("rescheduled %s (deploy %s): %s", candidate.path, deploy_id, why)
    return Rescheduled(candidate.service_id, candidate.path, deploy_id, why)
