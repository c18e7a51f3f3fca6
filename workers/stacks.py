"""Stack actors: deploy a stack (its services one by one in link order) and remove a stack."""

from __future__ import annotations

import logging

import dramatiq

from core.errors import PermanentJobError
from core.stack_deploy import must_wait, run_stack_deploy
from core.stack_jobs import STACK_DEPLOY, STACK_REMOVE, StackEnv
from core.stack_removal import run_stack_removal
from workers import context
from workers.deploys import DEPLOY_TIME_LIMIT_MS, deploy_env

log = logging.getLogger(__name__)

# A stack deploy waiting behind an older deploy of its stack checks again this often.
QUEUED_RECHECK_MS = 1_000


def stack_env() -> StackEnv:
    """The stack job environment of this worker process."""
    return StackEnv(
        deploy=deploy_env(),
        sender=context.sender(),
        remove_timeout=context.settings().service_remove_timeout,
    )


@dramatiq.actor(
    actor_name=STACK_DEPLOY.actor,
    queue_name=STACK_DEPLOY.queue,
    work_kind=STACK_DEPLOY.name,
    max_retries=3,
    min_backoff=1_000,
    max_backoff=10_000,
    # Service deploys run inside this job, each under the deploy deadline.
    time_limit=DEPLOY_TIME_LIMIT_MS,
    throws=(PermanentJobError,),
)
async def deploy(deploy_id: str) -> None:
    """Run (or resume) stack deploy ``deploy_id``; if its stack has an older one, wait for it."""
    env = stack_env()
    if await must_wait(env, deploy_id):
        # A new message rather than a Retry: waiting is not a failure and burns no retries.
        deploy.send_with_options(args=(deploy_id,), delay=QUEUED_RECHECK_MS)
        return
    if not await run_stack_deploy(env, deploy_id, context.settings().max_deliveries):
        log.info("stack deploy %s: finished or held by another worker", deploy_id)


@dramatiq.actor(
    actor_name=STACK_REMOVE.actor,
    queue_name=STACK_REMOVE.queue,
    work_kind=STACK_REMOVE.name,
    max_retries=3,
    min_backoff=1_000,
    max_backoff=10_000,
    time_limit=DEPLOY_TIME_LIMIT_MS,
    throws=(PermanentJobError,),
)
async def remove(removal_id: str) -> None:
    """Stop and remove the stack's services in reverse link order, then the stack."""
    if not await run_stack_removal(stack_env(), removal_id, context.settings().max_deliveries):
        log.info("stack removal %s: finished or held by another worker", removal_id)
