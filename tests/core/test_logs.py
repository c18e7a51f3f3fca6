"""Kontena's log parameter rules, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.errors import Invalid
from core.logs import parse_from, parse_limit, parse_log_query, parse_since, split_list


@pytest.mark.parametrize(
    ("raw", "limit"),
    [
        (None, 100),
        ("", 100),
        ("abc", 100),
        ("0", 100),
        ("-1", 100),
        ("1", 1),
        (" 42", 42),
        ("12abc", 12),
        ("10000", 10000),
        ("10001", 10000),
        ("99999999999", 10000),
    ],
)
def test_limit(raw: str | None, limit: int) -> None:
    assert parse_limit(raw) == limit


def test_since() -> None:
    assert parse_since(None) is None
    assert parse_since("not a time") is None
    assert parse_since("2024-01-02T03:04:05Z") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_since("2024-01-02T03:04:05") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    # A `+` offset that arrived unescaped in a query string reads as a space.
    plus_two = timezone(timedelta(hours=2))
    assert parse_since("2024-01-02T03:04:05 02:00") == datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=plus_two
    )


def test_from() -> None:
    assert parse_from(None) is None
    assert parse_from(" ") is None
    assert parse_from("17") == 17
    with pytest.raises(Invalid) as caught:
        parse_from("5f0c")
    assert caught.value.body == {"error": {"from": "From isn't an integer"}}


def test_query_and_lists() -> None:
    query = parse_log_query({"limit": "5", "from": "3", "follow": "true"})
    assert (query.limit, query.from_id, query.since, query.follow) == (5, 3, None, True)
    assert parse_log_query({"follow": ""}).follow is False
    assert split_list(" a, ,b,") == ["a", "b"]
    assert split_list(None) == []
