"""Waiting for a batch of instances: poll what the agents reported, with short sessions.

An instance is deployed when its agent reports ``rev == deploy_rev`` with state ``running`` and,
when the service has a health check, a healthy probe at that revision; an error report, an
unhealthy probe, a state other than running, or the per-instance timeout fails it. Each poll is its
own short transaction; progress is written to the deploy as instances finish, and the lease is
renewed on the way (ARCHITECTURE.md §5: never hold a transaction while waiting).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from core.deploy_progress import fenced_update
from models import ServiceInstance

if TYPE_CHECKING:
    from core.deployer import DeployRun

# Renew the lease and re-check the service at least this often while nothing changes.
HEARTBEAT_SECONDS = 5.0
# Reported states that may still turn into running (a crash-looping container restarts).
TRANSIENT_STATES = frozenset({"restarting", "initialized", "created", "starting"})


def outcome(row: Any, rev: str, health_checked: bool = False) -> tuple[str, str | None] | None:
    """``("success", None)``, ``("error", why)``, or None while the instance is pending.

    With ``health_checked`` a running instance also waits for its first probe at this
    revision: healthy succeeds, unhealthy fails (the agent restarts it; the deploy halts).
    """
    if row is None:
        return ("error", "Service instance was removed")
    if row.deploy_rev != rev:
        return ("error", "Service instance was re-deployed")
    if row.rev != rev:
        return None
    if row.error:
        return ("error", str(row.error))
    if row.state == "running":
        if not health_checked or row.health_status == "healthy":
            return ("success", None)
        if row.health_status == "unhealthy":
            return ("error", f"Service instance is unhealthy: {row.health_error or 'probe failed'}")
        return None
    if row.state in TRANSIENT_STATES:
        return None
    return ("error", f"Service instance is not running, but {row.state}")


async def wait_for_instances(
    run: DeployRun, targets: dict[int, tuple[str, str]], errors: dict[int, str]
) -> list[tuple[int, str]]:
    """Wait for the batch; returns the failures ``(instance_number, error)`` in instance order.

    Stops at the first failure: the deploy halts, and instances still pending stay as the
    agents leave them (Kontena has no rollback either).
    """
    env = run.env
    failures: list[tuple[int, str]] = []
    for number, error in sorted(errors.items()):
        run.progress.set(number, targets[number][1], "error", error)
        failures.append((number, error))
    pending = {n: t for n, t in targets.items() if n not in errors}
    started = time.monotonic()
    last_beat = 0.0
    dirty = bool(failures)
    while pending and not failures:
        async with env.db.session() as session:
            rows = {
                row.instance_number: row
                for row in await session.execute(
                    select(
                        ServiceInstance.instance_number,
                        ServiceInstance.deploy_rev,
                        ServiceInstance.rev,
                        ServiceInstance.state,
                        ServiceInstance.error,
                        ServiceInstance.health_status,
                        ServiceInstance.health_error,
                    ).where(
                        ServiceInstance.service_id == run.service_id,
                        ServiceInstance.instance_number.in_(list(pending)),
                    )
                )
            }
            for number in sorted(pending):
                result = outcome(rows.get(number), run.rev, run.health_checked)
                if result is None:
                    continue
                state, why = result
                run.progress.set(number, pending.pop(number)[1], state, why)
                if why is not None:
                    failures.append((number, why))
                dirty = True
            if pending and not failures and time.monotonic() - started > env.instance_timeout:
                goal = "running and healthy" if run.health_checked else "running"
                for number in sorted(pending):
                    node_name = pending[number][1]
                    error = (
                        f"Timeout after waiting {env.instance_timeout:.1f}s until: service "
                        f"{run.path}-{number} is {goal} on node {run.grid_name}/{node_name}"
                    )
                    run.progress.set(number, node_name, "error", error)
                    failures.append((number, error))
                pending.clear()
                dirty = True
            if pending and not failures:
                # Every poll: a stop or a delete must halt the deploy at once.
                await run.check_service(session, renew=False)
            if dirty or time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                await fenced_update(
                    session, run.id, run.attempt, instance_deploys=run.progress.as_list()
                )
                await session.commit()
                last_beat, dirty = time.monotonic(), False
            else:
                await session.rollback()
        if pending and not failures:
            await asyncio.sleep(env.poll_interval)
    if dirty:
        async with env.db.session() as session:
            await fenced_update(
                session, run.id, run.attempt, instance_deploys=run.progress.as_list()
            )
            await session.commit()
    return failures
