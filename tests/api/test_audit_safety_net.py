"""The API audits every successful mutating request, even one whose handler forgot to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Request, delete, get, post

from api.app import create_app
from api.audit import UNAUDITED_RESOURCE, audit
from core.auth import Principal
from core.errors import Invalid
from core.runtime import Runtime
from core.unit_of_work import UnitOfWork
from models import ConfigEntry
from models.db import Database
from tests.fixtures.audit import assert_audited, assert_no_unaudited_requests, audit_entries
from tests.fixtures.server import serve


@post("/test/forgetful", status_code=201)
async def forgetful(uow: UnitOfWork, principal: Principal) -> dict[str, str]:
    """Writes state and forgets its audit call."""
    uow.session.add(ConfigEntry(key="net.touched", value='"1"'))
    return {}


@post("/test/careful", status_code=201)
async def careful(
    request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
) -> dict[str, str]:
    """Audits explicitly."""
    audit(
        request,
        uow,
        principal,
        resource_type="thing",
        event_name="create",
        resource_id="t1",
        body=await request.body(),
    )
    return {}


@post("/test/failing")
async def failing(uow: UnitOfWork, principal: Principal) -> dict[str, str]:
    """Writes, then rejects the request."""
    uow.session.add(ConfigEntry(key="net.touched", value='"1"'))
    raise Invalid({"thing": "Thing is bad"})


@post("/test/opted-out", status_code=201, opt={"audit": False})
async def opted_out(uow: UnitOfWork) -> dict[str, str]:
    """A route that is deliberately never audited."""
    return {}


@delete("/test/anonymous", status_code=201)
async def anonymous(uow: UnitOfWork) -> dict[str, str]:
    """A mutating route that authenticates no user."""
    return {}


@get("/test/reading")
async def reading(uow: UnitOfWork, principal: Principal) -> dict[str, str]:
    """Reads are not audited."""
    return {}


@pytest.fixture
async def net_client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The real app plus the test routes above."""
    app = create_app(runtime)
    for handler in (forgetful, careful, failing, opted_out, anonymous, reading):
        app.register(handler)
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


async def test_forgotten_audit_is_recorded_once_without_body(
    net_client: httpx.AsyncClient, db: Database, make_user: Any
) -> None:
    caller = await make_user("dev@example.com")
    response = await net_client.post(
        "/test/forgetful?token=hide-me",
        json={"password": "hunter2"},
        headers={**caller.headers, "User-Agent": "probe/1"},
    )
    assert response.status_code == 201

    entries = await audit_entries(db)
    assert len(entries) == 1
    entry = entries[0]
    assert entry.resource_type == UNAUDITED_RESOURCE
    assert entry.event_name == "create"
    assert entry.resource_id == "/test/forgetful"
    assert entry.resource_name == "forgetful"
    assert entry.user_id == caller.user.id
    assert entry.user_email == "dev@example.com"
    assert entry.source_ip == "127.0.0.1"
    assert entry.user_agent == "probe/1"
    assert entry.request_body is None
    assert entry.request_parameters == {}
    with pytest.raises(AssertionError, match="unaudited mutating requests"):
        await assert_no_unaudited_requests(db)


async def test_explicit_audit_is_not_duplicated(
    net_client: httpx.AsyncClient, db: Database, make_user: Any
) -> None:
    caller = await make_user("dev@example.com")
    response = await net_client.post("/test/careful", json={"a": 1}, headers=caller.headers)
    assert response.status_code == 201
    entry = await assert_audited(db, "thing", "create")
    assert entry.request_body == '{"a":1}'
    assert len(await audit_entries(db)) == 1


async def test_failed_requests_are_not_audited(
    net_client: httpx.AsyncClient, db: Database, make_user: Any
) -> None:
    caller = await make_user("dev@example.com")
    response = await net_client.post("/test/failing", headers=caller.headers)
    assert response.status_code == 422
    assert await audit_entries(db) == []


async def test_reads_and_opted_out_routes_are_not_audited(
    net_client: httpx.AsyncClient, db: Database, make_user: Any
) -> None:
    caller = await make_user("dev@example.com")
    assert (await net_client.get("/test/reading", headers=caller.headers)).status_code == 200
    assert (await net_client.post("/test/opted-out")).status_code == 201
    assert await audit_entries(db) == []


async def test_unauthenticated_mutation_is_audited_without_identity(
    net_client: httpx.AsyncClient, db: Database
) -> None:
    assert (await net_client.delete("/test/anonymous")).status_code == 201
    entries = await audit_entries(db)
    assert [(e.event_name, e.user_id, e.resource_id) for e in entries] == [
        ("delete", None, "/test/anonymous")
    ]
