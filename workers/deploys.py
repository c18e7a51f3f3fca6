"""Deploy actors: run a service deploy; nudge, restart or remove a service's instances."""

from __future__ import annotations

import logging

import dramatiq

from core.deploy_actions import notify_service, remove_service, restart_service
from core.deploy_queue import Gate, mark_queued
from core.deployer import DeployEnv, run_deploy
from core.errors import PermanentJobError
from core.service_actions import SERVICE_DEPLOY
from workers import context

log = logging.getLogger(__name__)

RUN = "deploys.run"
NOTIFY = "services.notify"
RESTART = "services.restart"
REMOVE = "services.remove"
QUEUE = "deploys"
# A deploy waiting behind another deploy of its service checks again this often.
QUEUED_RECHECK_MS = 1_000
# Generous: the deploy enforces its own deadline (KONTENA_DEPLOY_DEADLINE) and an interrupted
# deploy is resumed by the retry anyway.
DEPLOY_TIME_LIMIT_MS = 4 * 3600 * 1000


def deploy_env() -> DeployEnv:
    """The deploy environment of this worker process."""
    settings = context.settings()
    return DeployEnv(
        db=context.database(),
        vault=context.vault(),
        rpc=context.node_rpc(),
        instance_timeout=settings.deploy_instance_timeout,
        deadline=settings.deploy_deadline,
        max_deliveries=settings.max_deliveries,
    )


@dramatiq.actor(
    actor_name=RUN,
    queue_name=QUEUE,
    work_kind=SERVICE_DEPLOY.name,
    max_retries=3,
    min_backoff=1_000,
    max_backoff=10_000,
    time_limit=DEPLOY_TIME_LIMIT_MS,
    throws=(PermanentJobError,),
)
async def run(deploy_id: str) -> None:
    """Run (or resume) deploy ``deploy_id``; if its service has an older deploy, wait for it."""
    outcome = await run_deploy(deploy_env(), deploy_id)
    if outcome is Gate.WAIT:
        async with context.database().session() as session:
            await mark_queued(session, deploy_id)
            await session.commit()
        # A new message rather than a Retry: waiting is not a failure and burns no retries.
        run.send_with_options(args=(deploy_id,), delay=QUEUED_RECHECK_MS)


@dramatiq.actor(actor_name=NOTIFY, queue_name=QUEUE, max_retries=3, max_backoff=10_000)
async def notify(service_id: str) -> None:
    """Start/stop: every node holding an instance re-fetches its pods."""
    await notify_service(deploy_env(), service_id)


@dramatiq.actor(actor_name=RESTART, queue_name=QUEUE, max_retries=3, max_backoff=10_000)
async def restart(service_id: str) -> None:
    """Restart every running instance of the service."""
    await restart_service(deploy_env(), service_id)


@dramatiq.actor(
    actor_name=REMOVE,
    queue_name=QUEUE,
    max_retries=3,
    max_backoff=10_000,
    time_limit=DEPLOY_TIME_LIMIT_MS,
)
async def remove(service_id: str) -> None:
    """Remove the service's containers, then the service."""
    removed = await remove_service(
        deploy_env(), service_id, context.settings().service_remove_timeout
    )
    if not removed:
        log.info("service %s was already removed", service_id)
