"""Agent → master service pod methods (reference §7.3): list a node's pods, report their state.

The agent socket passes the API's vault in ``session.info["vault"]`` so pods carry resolved
secrets and pull credentials; they are never stored in plain text.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.node_updates import AgentError, agent_method
from core.pods import PodError, PodInputs, build_pod, load_pod_inputs, pod_dict
from core.protocol import PodHealth, PodHookRef, PodState
from core.secrets import MissingSecretError
from core.service_volumes import record_pod_volumes
from core.vault import Vault
from models import Grid, Node, Service, ServiceInstance
from models.base import utcnow

log = logging.getLogger(__name__)

LISTED_STATES = ("running", "stopped", "terminated")
# What an agent reports once the container of a terminated pod is gone.
REMOVED_STATES = frozenset({"terminated", "removed"})


async def _inputs(
    session: AsyncSession, vault: Vault | None, grid: Grid, service: Service
) -> PodInputs:
    if vault is None:
        log.error("no vault on the agent session: pods of %s go out without secrets", service.id)
        return PodInputs()
    try:
        return await load_pod_inputs(session, vault, grid, service)
    except MissingSecretError as exc:
        # Dropping the pod would make the agent remove a running container; the next deploy
        # fails with this reason instead.
        log.warning("service %s: %s; pods listed without them", service.id, exc)
        return PodInputs()


async def node_pods(session: AsyncSession, node: Node, vault: Vault | None) -> list[dict[str, Any]]:
    """Every pod assigned to ``node``: running, stopped, and terminated ones not yet removed."""
    rows = (
        await session.execute(
            select(ServiceInstance, Service, Grid)
            .join(Service, Service.id == ServiceInstance.service_id)
            .join(Grid, Grid.id == Service.grid_id)
            .where(
                ServiceInstance.node_id == node.id,
                ServiceInstance.desired_state.in_(LISTED_STATES),
                ServiceInstance.deploy_rev.is_not(None),
            )
            .order_by(Service.id, ServiceInstance.instance_number)
        )
    ).all()
    inputs: dict[str, PodInputs] = {}
    pods: list[dict[str, Any]] = []
    for instance, service, grid in rows:
        if instance.desired_state == "terminated":
            service_inputs = PodInputs()  # being removed: no secrets needed
        elif service.id not in inputs:
            service_inputs = inputs[service.id] = await _inputs(session, vault, grid, service)
        else:
            service_inputs = inputs[service.id]
        try:
            pods.append(pod_dict(build_pod(grid, service, instance, node, service_inputs)))
        except PodError:
            log.exception("cannot build the pod of %s/%d", service.id, instance.instance_number)
    return pods


@agent_method("/node_service_pods/list")
async def list_pods(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(node_id)`` → ``{"service_pods": [pod]}`` for the connection's node."""
    vault = session.info.get("vault")
    pods = await node_pods(session, node, vault)
    await record_pod_volumes(session, node, pods)
    return {"service_pods": pods}


@agent_method("/node_service_pods/set_state")
async def set_state(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(node_id, PodState)`` → the instance's reported rev/state/error; stale revs ignored."""
    if len(params) < 2:
        raise AgentError(400, "params must be [node_id, pod_state]")
    try:
        state = msgspec.convert(params[1], PodState, strict=False)
    except msgspec.ValidationError as exc:
        raise AgentError(400, f"invalid pod state: {exc}") from exc
    await apply_pod_state(session, node, state)
    return {}


async def apply_pod_state(session: AsyncSession, node: Node, state: PodState) -> None:
    """Record what the agent of ``node`` reports, if it is about the instance's current deploy."""
    instance = await _reported_instance(session, node, state.service_id, state.instance_number)
    if instance is None:
        return  # removed meanwhile, or moved to another node: that node reports it now
    if instance.desired_state == "terminated":
        if state.state in REMOVED_STATES:
            await session.execute(delete(ServiceInstance).where(ServiceInstance.id == instance.id))
        return
    if state.rev != instance.deploy_rev:
        return  # about an older (or unknown) deploy: the deployer waits for its own rev
    instance.rev = state.rev
    instance.state = state.state[:16]
    instance.error = state.error[:2048] if state.error else None
    if state.state != "running":
        # No container runs to be healthy or not; the next probe after a start says again.
        instance.health_status = instance.health_error = None


async def _reported_instance(
    session: AsyncSession, node: Node, service_id: str, number: int
) -> ServiceInstance | None:
    """The instance an agent reports on, locked; None when it is no longer that node's."""
    instance = (
        await session.execute(
            select(ServiceInstance)
            .where(
                ServiceInstance.service_id == service_id,
                ServiceInstance.instance_number == number,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    return instance if instance is not None and instance.node_id == node.id else None


@agent_method("/node_service_pods/set_health")
async def set_health(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(node_id, PodHealth)`` → the instance's health; reports about older revs are ignored."""
    if len(params) < 2:
        raise AgentError(400, "params must be [node_id, pod_health]")
    try:
        health = msgspec.convert(params[1], PodHealth, strict=False)
    except msgspec.ValidationError as exc:
        raise AgentError(400, f"invalid pod health: {exc}") from exc
    if health.status not in ("healthy", "unhealthy"):
        raise AgentError(400, f"invalid pod health: unknown status {health.status!r}")
    instance = await _reported_instance(session, node, health.service_id, health.instance_number)
    if instance is None or instance.desired_state != "running":
        return {}
    if health.rev != instance.deploy_rev:
        return {}  # about the container of an older deploy: the deployer waits for its own
    instance.health_status = health.status
    instance.health_status_at = utcnow()
    instance.health_error = health.error[:512] if health.error else None
    return {}


@agent_method("/node_service_pods/mark_oneshot_hook")
async def mark_oneshot_hook(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(node_id, {service_id, instance_number}, hook)``: the hook ran there, never again.

    The instance number joins the hook's ``done`` list, so later pods of that instance leave
    the hook out, across re-deploys and agent restarts (reference §3.10).
    """
    if len(params) < 3 or not isinstance(params[1], dict):
        raise AgentError(400, "params must be [node_id, {service_id, instance_number}, hook]")
    try:
        service_id = str(params[1]["service_id"])
        number = int(params[1]["instance_number"])
        ref = msgspec.convert(params[2], PodHookRef, strict=False)
    except (KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
        raise AgentError(400, f"invalid oneshot hook mark: {exc}") from exc
    if await _reported_instance(session, node, service_id, number) is None:
        raise AgentError(404, f"instance {service_id}/{number} is not on this node")
    service = (
        await session.execute(select(Service).where(Service.id == service_id).with_for_update())
    ).scalar_one_or_none()
    if service is None:
        raise AgentError(404, f"service {service_id} not found")
    hooks = [dict(hook) for hook in service.spec.get("hooks") or []]
    found = False
    for hook in hooks:
        if (hook.get("type"), hook.get("name"), hook.get("cmd")) == (ref.type, ref.name, ref.cmd):
            found = True
            done = list(hook.get("done") or [])
            if hook.get("oneshot") and number not in done:
                hook["done"] = [*done, number]
    if not found:
        raise AgentError(404, f"service {service_id} has no {ref.type} hook {ref.name}")
    # Bookkeeping, not a change of the service: updated_at stays as it was.
    await session.execute(
        update(Service)
        .where(Service.id == service.id)
        .values(spec={**service.spec, "hooks": hooks}, updated_at=Service.updated_at)
        .execution_options(synchronize_session="fetch")
    )
    return {}
