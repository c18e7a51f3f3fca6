"""core.work on PostgreSQL: which rows recovery re-sends, which end at the deadline, claims."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.work import claim, recover
from models.base import utcnow
from models.db import Database
from tests.workers.support import CHORE, Chore, chore_state, utc_ago

pytestmark = pytest.mark.usefixtures("chores")


async def test_recover_picks_lost_rows_and_fails_rows_past_the_deadline(db: Database) -> None:
    """Lost rows are re-sent; fresh, held and finished ones are not; too-old ones end error."""
    now = utcnow()
    rows = {
        "never_sent": Chore(id="a" * 24, created_at=utc_ago(seconds=120)),
        "sent_long_ago": Chore(
            id="b" * 24, created_at=utc_ago(seconds=300), sent_at=utc_ago(seconds=90)
        ),
        "just_created": Chore(id="c" * 24, created_at=utc_ago(seconds=5)),
        "just_sent": Chore(
            id="d" * 24, created_at=utc_ago(seconds=300), sent_at=utc_ago(seconds=5)
        ),
        "held": Chore(
            id="e" * 24,
            state="ongoing",
            created_at=utc_ago(seconds=300),
            lease_until=now + timedelta(seconds=100),
        ),
        "holder_died": Chore(
            id="f" * 24,
            state="ongoing",
            created_at=utc_ago(seconds=300),
            lease_until=utc_ago(seconds=61),
        ),
        "finished": Chore(id="0" * 24, state="success", created_at=utc_ago(seconds=300)),
        "too_old": Chore(id="1" * 24, created_at=utc_ago(seconds=4000)),
    }
    async with db.session() as session:
        session.add_all(rows.values())
        await session.commit()

    async with db.session() as session:
        resends = await recover(session, now, [CHORE], recovery_after=60, deadline=3600)
        await session.commit()

    resent = {item.row_id for item in resends}
    assert resent == {rows[k].id for k in ("never_sent", "sent_long_ago", "holder_died")}
    assert all(item.job == CHORE.job(item.row_id) for item in resends)
    too_old = await chore_state(db, rows["too_old"].id)
    assert too_old.state == "error"
    assert too_old.finished_at is not None
    assert too_old.reason == (
        "deadline exceeded: the work did not finish within 3600 s of being requested"
    )
    held = await chore_state(db, rows["held"].id)
    assert held.state == "ongoing"


async def test_claim_is_exclusive_until_the_lease_runs_out(db: Database) -> None:
    """Only one claim wins; after the holder's lease expires another claim takes the row."""
    async with db.session() as session:
        session.add(Chore(id="a" * 24))
        await session.commit()
    now = utcnow()
    async with db.session() as first, db.session() as second:
        won = await claim(first, Chore, "a" * 24, 30, now=now)
        await first.commit()
        lost = await claim(second, Chore, "a" * 24, 30, now=now)
        await second.commit()
    assert won is not None and won.state == "ongoing" and won.attempts == 1
    assert lost is None

    later = now + timedelta(seconds=31)
    async with db.session() as session:
        again = await claim(session, Chore, "a" * 24, 30, now=later)
        await session.commit()
    assert again is not None and again.attempts == 2
    assert again.started_at == won.started_at  # the first start is kept

    async with db.session() as session:
        row = await session.get(Chore, "a" * 24)
        assert row is not None
        row.state = "success"
        await session.commit()
    async with db.session() as session:
        assert await claim(session, Chore, "a" * 24, 30, now=later + timedelta(hours=1)) is None
