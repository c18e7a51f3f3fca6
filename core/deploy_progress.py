"""The deploy row while a worker holds it: fenced writes, lease renewal, per-instance progress.

Every write carries the holder's attempt number (``attempts`` after its claim): a worker whose
lease ran out and whose deploy another worker took over writes nothing, and learns it lost.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from models import ServiceDeploy
from models.base import utcnow
from models.work import WorkState

# Short, and renewed while the deploy runs: a killed worker's deploy is picked up by the
# recovery tick about a minute after its lease ran out, not after the whole deadline.
LEASE_SECONDS = 60


class DeployLost(Exception):
    """The deploy was finished, deleted or taken over by another worker meanwhile."""


async def fenced_update(session: AsyncSession, deploy_id: str, attempt: int, **values: Any) -> None:
    """Update the deploy if this attempt still holds it (and renew the lease); else DeployLost."""
    values.setdefault("lease_until", utcnow() + timedelta(seconds=LEASE_SECONDS))
    result = await session.execute(
        update(ServiceDeploy)
        .where(
            ServiceDeploy.id == deploy_id,
            ServiceDeploy.state == WorkState.ONGOING.value,
            ServiceDeploy.attempts == attempt,
        )
        .values(**values)
        .returning(ServiceDeploy.id)
        .execution_options(synchronize_session=False)
    )
    if result.first() is None:
        raise DeployLost(deploy_id)


class InstanceProgress:
    """``instance_deploys``: one ``{instance_number, node, state, error}`` per instance."""

    def __init__(self, entries: list[dict[str, Any]] | None = None) -> None:
        self._entries: dict[int, dict[str, Any]] = {
            int(e["instance_number"]): dict(e) for e in entries or []
        }

    def set(self, number: int, node: str | None, state: str, error: str | None = None) -> None:
        """Record the state of instance ``number``."""
        self._entries[number] = {
            "instance_number": number,
            "node": node,
            "state": state,
            "error": error,
        }

    def state(self, number: int) -> str | None:
        """The recorded state of instance ``number``, if any."""
        entry = self._entries.get(number)
        return None if entry is None else str(entry["state"])

    def node(self, number: int) -> str | None:
        """The node name recorded for instance ``number``."""
        entry = self._entries.get(number)
        return None if entry is None else entry.get("node")

    def halt_ongoing(self, error: str) -> None:
        """Mark every instance still ``ongoing`` as ``error`` (the deploy ended without it)."""
        for entry in self._entries.values():
            if entry["state"] == "ongoing":
                entry["state"], entry["error"] = "error", error

    def as_list(self) -> list[dict[str, Any]]:
        """The entries in instance order, as stored."""
        return [dict(self._entries[n]) for n in sorted(self._entries)]
