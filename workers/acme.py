"""ACME actors: registration, authorization, issuance, and the renewal tick."""

from __future__ import annotations

from typing import Any

import dramatiq

from core.acme import AUTHORIZE, ISSUE, ISSUE_TIME_LIMIT_SECONDS, QUEUE, REGISTER
from core.acme_work import AcmeEnv, renew_due, run_authorize, run_issue, run_register
from core.errors import PermanentJobError
from core.ticks import claim_tick
from workers import context

RENEW = "certs.renew"
# Registration and authorization: a few ACME calls, each with its own 30 s timeout.
TIME_LIMIT_MS = 5 * 60 * 1000
# Issuance also waits for the http-01 challenge deploys (once, all together) and validates
# each domain: the bound is worked out at core.acme.ISSUE_TIME_LIMIT_SECONDS.
ISSUE_TIME_LIMIT_MS = ISSUE_TIME_LIMIT_SECONDS * 1000


def acme_env() -> AcmeEnv:
    """The ACME environment of this worker process."""
    return AcmeEnv(
        db=context.database(),
        vault=context.vault(),
        settings=context.settings(),
        sender=context.sender(),
    )


_OPTIONS: dict[str, Any] = {
    "queue_name": QUEUE,
    "max_retries": 2,
    "min_backoff": 1_000,
    "max_backoff": 10_000,
    "time_limit": TIME_LIMIT_MS,
    "throws": (PermanentJobError,),
}


@dramatiq.actor(actor_name=REGISTER.actor, work_kind=REGISTER.name, **_OPTIONS)
async def register(account_id: str) -> None:
    """Register a grid's ACME account."""
    await run_register(acme_env(), account_id)


@dramatiq.actor(actor_name=AUTHORIZE.actor, work_kind=AUTHORIZE.name, **_OPTIONS)
async def authorize(authz_id: str) -> None:
    """Ask the CA for a domain authorization's challenge."""
    await run_authorize(acme_env(), authz_id)


@dramatiq.actor(
    actor_name=ISSUE.actor,
    work_kind=ISSUE.name,
    **{**_OPTIONS, "time_limit": ISSUE_TIME_LIMIT_MS},
)
async def issue(request_id: str) -> None:
    """Verify the domains of a certificate request and issue the certificate."""
    await run_issue(acme_env(), request_id)


@dramatiq.actor(actor_name=RENEW, queue_name=QUEUE, max_retries=0, time_limit=30 * 60 * 1000)
async def renew(slot: int, epoch: int) -> None:
    """The renewal tick: renew what is due, once per slot."""
    env = acme_env()
    async with env.db.session() as session:
        if not await claim_tick(session, RENEW, slot, epoch):
            return
        await session.commit()
    await renew_due(env)
