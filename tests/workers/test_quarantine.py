"""The delivery counter: a row whose deliveries keep dying is quarantined, not run again."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.work import claim
from models.base import utcnow
from models.db import Database
from tests.workers.support import Chore, chore_state

pytestmark = pytest.mark.usefixtures("chores")


async def test_claim_quarantines_a_row_after_too_many_deliveries(db: Database) -> None:
    """Each expired-lease claim counts; the claim after the limit ends the row in error."""
    async with db.session() as session:
        session.add(Chore(id="a" * 24))
        await session.commit()
    now = utcnow()
    for attempt in range(1, 4):
        # Every delivery's worker "dies": the next one comes after the lease ran out.
        now += timedelta(seconds=61)
        async with db.session() as session:
            row = await claim(session, Chore, "a" * 24, 60, now=now, max_deliveries=3)
            await session.commit()
        assert row is not None and row.attempts == attempt
    async with db.session() as session:
        refused = await claim(
            session, Chore, "a" * 24, 60, now=now + timedelta(seconds=61), max_deliveries=3
        )
        await session.commit()
    assert refused is None
    row = await chore_state(db, "a" * 24)
    assert row.state == "error"
    assert row.reason == "quarantined after 3 deliveries that did not finish"
    assert row.finished_at is not None and row.lease_until is None
