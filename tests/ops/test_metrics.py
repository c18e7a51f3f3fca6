"""``/metrics`` parses as Prometheus text and moves when a deploy finishes."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from litestar import Litestar

from core.config import Settings
from core.runtime import Runtime
from core.vault import Vault
from models.acme import Certificate
from models.base import utcnow
from models.db import Database
from models.services import Service, ServiceDeploy
from tests.fixtures.grid_rows import create_grid_row

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(
    rf"^({_NAME})(\{{(?:{_LABEL}(?:,{_LABEL})*)?\}})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$"
)
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_exposition(text: str) -> Samples:
    """A strict parser of the text format: every line is HELP, TYPE or a typed sample."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert re.match(rf"^# HELP {_NAME} .*$", line), line
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in _TYPES and name not in types, line
            types[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count|total)$", "", name)
        assert name in types or family in types, f"sample before its TYPE: {line!r}"
        key = (name, tuple(sorted(_PAIR.findall(labels or ""))))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(value)
    return samples


async def _deploy(db: Database, vault: Vault, state: str, seconds: float) -> None:
    grid = await create_grid_row(db, vault, "metrics")
    async with db.session() as session:
        service = Service(grid_id=grid.id, name="web", image="nginx")
        session.add(service)
        await session.flush()
        ended = utcnow()
        session.add(
            ServiceDeploy(
                service_id=service.id,
                grid_id=grid.id,
                state=state,
                started_at=ended - timedelta(seconds=seconds),
                finished_at=ended,
            )
        )
        await session.commit()


async def test_metrics_parse_and_move_with_deploys(
    client: httpx.AsyncClient, db: Database, vault: Vault
) -> None:
    """Deploy counts and duration buckets change after a finished deploy row is written."""
    await client.get("/v1/ping", headers={"X-Request-Id": "abc-123"})
    before = await client.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    old = parse_exposition(before.text)
    ping = (
        "kontena_http_requests_total",
        (("method", "GET"), ("route", "/v1/ping"), ("status", "200")),
    )
    assert old[ping] >= 1
    assert ("kontena_deploys", (("state", "success"),)) not in old

    await _deploy(db, vault, "success", 42.0)
    new = parse_exposition((await client.get("/metrics")).text)

    assert new[("kontena_deploys", (("state", "success"),))] == 1
    bucket = ("kontena_deploy_duration_seconds_bucket", (("le", "60"), ("state", "success")))
    assert new[bucket] == 1
    assert (
        new[("kontena_deploy_duration_seconds_bucket", (("le", "30"), ("state", "success")))] == 0
    )
    assert new[("kontena_deploy_duration_seconds_sum", (("state", "success"),))] == 42.0
    assert new[("kontena_connected_nodes", (("grid", "metrics"),))] == 0
    assert ("kontena_queue_messages", (("queue", "deploys"), ("status", "ready"))) in new


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    """A caller's X-Request-Id comes back; without one the master makes one up."""
    given = await client.get("/v1/ping", headers={"X-Request-Id": "req-42"})
    assert given.headers["x-request-id"] == "req-42"
    made = await client.get("/v1/ping")
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])


@pytest.fixture
def metrics_app(runtime: Runtime, settings: Settings) -> Runtime:
    """The runtime with a metrics token set."""
    import msgspec

    runtime.settings = msgspec.structs.replace(settings, metrics_token="s3cret")
    return runtime


async def test_metrics_token_is_required_when_set(
    metrics_app: Runtime, app: Litestar, client: httpx.AsyncClient
) -> None:
    """With KONTENA_METRICS_TOKEN set, scrapes need the bearer token."""
    assert (await client.get("/metrics")).status_code == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


async def test_certificate_days_to_expiry_are_exported(
    client: httpx.AsyncClient, db: Database, vault: Vault
) -> None:
    grid = await create_grid_row(db, vault, "certs")
    async with db.session() as session:
        session.add(
            Certificate(
                grid_id=grid.id,
                subject="www.example.test",
                valid_until=utcnow() + timedelta(days=20, minutes=1),
                cert_pem="-",
                chain_pem="-",
                key_encrypted="-",
            )
        )
        await session.commit()
    metrics = parse_exposition((await client.get("/metrics")).text)
    days = metrics[
        ("kontena_certificate_expiry_days", (("grid", "certs"), ("subject", "www.example.test")))
    ]
    assert 20 <= days < 20.01
