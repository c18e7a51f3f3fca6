"""Agent → master service pod methods (reference §7.3): list a node's pods, report their state.

The agent socket passes the API's vault in ``session.info["vault"]`` so pods carry resolved
secrets and pull credentials; they are never stored in plain text.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.node_updates import AgentError, agent_method
from core.pods import PodError, PodInputs, build_pod, load_pod_inputs, pod_dict
from core.protocol import PodState
from core.secrets import MissingSecretError
from core.service_volumes import record_pod_volumes
from core.vault import Vault
from models import Grid, Node, Service, ServiceInstance

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
    instance = (
        await session.execute(
            select(ServiceInstance)
            .where(
                ServiceInstance.service_id == state.service_id,
                ServiceInstance.instance_number == state.instance_number,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if instance is None or instance.node_id != node.id:
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
