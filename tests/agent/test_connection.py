"""Backoff, close-code wording and handshake headers."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from agent.config import AgentConfig
from agent.connection import BACKOFF_CAP, Identity, backoff_delay, describe_close, handshake_headers
from core.protocol import FATAL_CLOSE_CODES


def test_backoff_ceiling_doubles_up_to_90_seconds() -> None:
    ceilings = [backoff_delay(n, rand=lambda: 1.0) for n in range(10)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 64, 90, 90, 90]
    assert backoff_delay(10_000, rand=lambda: 1.0) == BACKOFF_CAP == 90


def test_backoff_is_full_jitter_within_bounds() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(90.0, 2.0**attempt)
        delays = [backoff_delay(attempt, rand=rng.random) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(delays) < ceiling * 0.1
        assert max(delays) > ceiling * 0.9
    assert backoff_delay(3, rand=lambda: 0.0) == 0.0


def test_backoff_base_scales_the_ceiling() -> None:
    assert backoff_delay(2, base=0.5, rand=lambda: 1.0) == 2.0


def test_fatal_codes_are_the_documented_ones() -> None:
    assert set(FATAL_CLOSE_CODES) == {4001, 4010, 4040, 4041}


@pytest.mark.parametrize(
    ("code", "reason", "text"),
    [
        (4001, "Invalid grid token", "4001 (invalid grid token): Invalid grid token"),
        (4041, "", "4041 (connection conflict)"),
        (1011, "boom", "1011 (internal error): boom"),
        (4999, "", "4999 (unknown code)"),
        (None, "connection lost", "no close frame (connection lost)"),
    ],
)
def test_close_descriptions(code: int | None, reason: str, text: str) -> None:
    assert describe_close(code, reason) == text


def test_handshake_headers_with_grid_token() -> None:
    config = AgentConfig(uri="ws://m/", grid_token="g", labels=["a=1", "b"])
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert handshake_headers(config, Identity("ID:1", "n1"), moment) == {
        "Kontena-Node-Id": "ID:1",
        "Kontena-Node-Name": "n1",
        "Kontena-Version": "1.5.2",
        "Kontena-Node-Labels": "a=1,b",
        "Kontena-Connected-At": "2024-05-06 07:08:09.123456Z",
        "Kontena-Grid-Token": "g",
    }


def test_handshake_prefers_the_node_token() -> None:
    config = AgentConfig(uri="ws://m/", grid_token="g", node_token="n")
    headers = handshake_headers(config, Identity("ID:1", "n1"), datetime.now(UTC))
    assert headers["Kontena-Node-Token"] == "n"
    assert "Kontena-Grid-Token" not in headers
