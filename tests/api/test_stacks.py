"""Stacks API (§2.5): shapes, validation 422s naming the field or service, revisions, deploys."""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from core.work import fail_row
from models import Service, StackRemoval, StackRevision
from models.db import Database
from tests.fixtures.audit import assert_audited
from tests.fixtures.service_rows import queued_jobs

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
STACK_KEYS = {
    "id", "name", "state", "created_at", "updated_at", "stack", "registry", "version",
    "revision", "expose", "source", "variables", "labels", "services", "volumes", "metadata",
    "parent", "children",
}  # fmt: skip
BODY: dict[str, Any] = {
    "name": "app",
    "stack": "user/app",
    "version": "0.1.0",
    "registry": "file://",
    "source": "services:\n  web: ...\n",
    "expose": "web",
    "variables": {"greeting": "hello"},
    "labels": ["team=web"],
    "metadata": {"origin": "test"},
    "volumes": [{"name": "data", "external": "shared-data"}],
    "services": [
        {
            "name": "web",
            "image": "busybox",
            "stateful": False,
            "links": [{"name": "db", "alias": "database"}],
        },
        {"name": "db", "image": "busybox", "stateful": True},
    ],
}


@pytest.fixture
async def grid(client: httpx.AsyncClient, admin: Any) -> str:
    """Grid ``main`` made through the API; the admin is a member."""
    response = await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)
    assert response.status_code == 201
    return "main"


async def create(client: httpx.AsyncClient, admin: Any, body: dict[str, Any]) -> dict[str, Any]:
    """POST the stack; asserts 201."""
    response = await client.post("/v1/grids/main/stacks", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def invalid(
    client: httpx.AsyncClient, admin: Any, body: dict[str, Any], path: str = "/v1/grids/main/stacks"
) -> Any:
    """POST (or PUT when ``path`` is a stack) and return the 422 error tree."""
    method = "POST" if path.endswith("/stacks") else "PUT"
    response = await client.request(method, path, json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    return response.json()["error"]


async def test_create_renders_every_attribute_and_creates_the_services(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    body = await create(client, admin, BODY)
    assert set(body) == STACK_KEYS
    assert re.fullmatch(TIME, body.pop("created_at"))
    assert re.fullmatch(TIME, body.pop("updated_at"))
    services = body.pop("services")
    assert body == {
        "id": "main/app",
        "name": "app",
        "state": "initialized",
        "stack": "user/app",
        "registry": "file://",
        "version": "0.1.0",
        "revision": 1,
        "expose": "web",
        "source": "services:\n  web: ...\n",
        "variables": {"greeting": "hello"},
        "labels": ["team=web"],
        "volumes": [{"name": "data", "external": "shared-data"}],
        "metadata": {"origin": "test"},
        "parent": None,
        "children": [],
    }
    by_name = {s["name"]: s for s in services}
    assert set(by_name) == {"web", "db"}
    web = by_name["web"]
    assert web["id"] == "main/app/web"
    assert web["stack"] == {"id": "main/app", "name": "app"}
    assert web["dns"] == "web.app.main.kontena.local"
    assert web["links"] == [{"id": "main/app/db", "alias": "database", "name": "app/db"}]
    assert web["state"] == "initialized" and web["stack_revision"] == 1
    # The services API reaches stack services at /v1/services/:grid/:stack/:service.
    got = await client.get("/v1/services/main/app/db", headers=admin.headers)
    assert got.status_code == 200 and got.json()["stateful"] is True
    listed = await client.get("/v1/grids/main/services?stack=app", headers=admin.headers)
    assert {s["name"] for s in listed.json()["services"]} == {"web", "db"}
    await assert_audited(db, "stack", "create", resource_id="main/app")
    assert (await client.get("/v1/stacks/main/app", headers=admin.headers)).json()["name"] == "app"


async def test_list_stacks_and_parent_children(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    await create(client, admin, BODY)
    child = {**copy.deepcopy(BODY), "name": "app-db", "parent": {"name": "app"}, "expose": None}
    await create(client, admin, child)
    orphan = {**copy.deepcopy(BODY), "name": "orphan", "parent_name": "gone", "expose": None}
    await create(client, admin, orphan)
    listed = (await client.get("/v1/grids/main/stacks", headers=admin.headers)).json()["stacks"]
    by_name = {s["name"]: s for s in listed}
    assert list(by_name) == ["app", "app-db", "orphan"]
    assert by_name["app"]["children"] == [{"id": "main/app-db", "name": "app-db"}]
    assert by_name["app-db"]["parent"] == {"id": "main/app", "name": "app"}
    assert by_name["orphan"]["parent"] == {"id": None, "name": "gone"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": None}, {"name": "Name is required"}),
        ({"name": "-bad"}, {"name": "Name isn't in the right format"}),
        ({"stack": None}, {"stack": "Stack is required"}),
        ({"version": None}, {"version": "Version is required"}),
        ({"source": None}, {"source": "Source is required"}),
        ({"services": [], "expose": None}, {"services": "stack does not specify any services"}),
        ({"expose": "nope"}, {"expose": "nope is not defined in the services array"}),
        ({"labels": ["Bad Label"]}, {"labels": ["Label Bad Label isn't in the right format"]}),
        (
            {"volumes": [{"name": "data", "external": False}]},
            {"volumes": {"data": "Only external volumes supported"}},
        ),
        ({"parent": {"name": "app"}}, {"parent": "Stack cannot be its own parent"}),
        ({"variables": "x"}, {"variables": "Variables isn't a hash"}),
    ],
)
async def test_stack_fields_are_validated(
    client: httpx.AsyncClient,
    admin: Any,
    grid: str,
    db: Database,
    change: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    body = copy.deepcopy(BODY)
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    assert await invalid(client, admin, body) == expected
    async with db.session() as session:
        assert (await session.execute(select(Service))).first() is None  # nothing half-made


async def test_service_errors_name_the_service(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    body = copy.deepcopy(BODY)
    del body["services"][1]["stateful"]
    body["services"][0]["strategy"] = "nope"
    error = await invalid(client, admin, body)
    # web links to db, which failed: only db's own error is reported.
    assert error == {"services": {"db": {"stateful": "Stateful is required"}}}
    body = copy.deepcopy(BODY)
    body["services"][0]["strategy"] = "nope"
    assert await invalid(client, admin, body) == {
        "services": {"web": {"strategy": "Strategy not supported"}}
    }
    body = copy.deepcopy(BODY)
    body["services"].append({"name": "web", "image": "busybox", "stateful": False})
    assert await invalid(client, admin, body) == {
        "services": {"web": {"name": "Service web is defined more than once"}}
    }


async def test_junk_service_hashes_are_422(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    body = {**copy.deepcopy(BODY), "expose": None}
    body["services"] = [
        5,
        {"name": 7},
        {"name": "x", "image": "busybox", "stateful": False, "links": 3},
    ]
    error = await invalid(client, admin, body)
    assert error == {
        "services": {
            "0": "isn't a hash",
            "1": {"name": "Name isn't a string"},
            "x": {"links": "Links isn't an array"},
        }
    }


async def test_missing_and_cyclic_links_are_422_naming_the_service(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    body = copy.deepcopy(BODY)
    body["services"][0]["links"] = [{"name": "cache", "alias": "cache"}]
    assert await invalid(client, admin, body) == {
        "services": {"web": {"links": "service web has missing links: cache"}}
    }
    body = copy.deepcopy(BODY)
    body["services"][1]["links"] = [{"name": "web", "alias": "web"}]
    error = await invalid(client, admin, body)
    assert error == {
        "services": {"web": {"links": "service web has recursive links: web -> db -> web"}}
    }
    body = copy.deepcopy(BODY)
    body["services"][1]["links"] = [{"name": "other/svc", "alias": "x"}]
    assert await invalid(client, admin, body) == {
        "services": {"db": {"links": ["Link other/svc points to non-existing stack"]}}
    }


async def test_cross_stack_links_resolve_and_block_deletes(
    client: httpx.AsyncClient, admin: Any, grid: str, redis_client: redis.Redis
) -> None:
    await create(client, admin, BODY)
    other = {
        **copy.deepcopy(BODY),
        "name": "front",
        "expose": None,
        "services": [
            {
                "name": "lb",
                "image": "busybox",
                "stateful": False,
                "links": [{"name": "app/web", "alias": "web"}],
            }
        ],
    }
    body = await create(client, admin, other)
    assert body["services"][0]["links"] == [
        {"id": "main/app/web", "alias": "web", "name": "app/web"}
    ]
    missing = copy.deepcopy(other)
    missing["name"] = "front2"
    missing["services"][0]["links"] = [{"name": "app/nope", "alias": "x"}]
    assert await invalid(client, admin, missing) == {
        "services": {"lb": {"links": ["Service app/nope does not exist"]}}
    }
    # app/web is linked from front/lb: app cannot be deleted, nor can a PUT drop web.
    response = await client.delete("/v1/stacks/main/app", headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {
        "services": {
            "web": {"service": "Cannot delete service that is linked to another service (front/lb)"}
        }
    }
    dropped = copy.deepcopy(BODY)
    dropped["services"] = [dropped["services"][1]]
    dropped["expose"] = None
    assert await invalid(client, admin, dropped, "/v1/stacks/main/app") == {
        "services": {
            "web": {"service": "Cannot delete service that is linked to another service (front/lb)"}
        }
    }


async def test_name_taken_and_null(client: httpx.AsyncClient, admin: Any, grid: str) -> None:
    await create(client, admin, BODY)
    assert await invalid(client, admin, BODY) == {"name": "app already exists"}
    assert await invalid(client, admin, {**BODY, "name": "null"}) == {"name": "null already exists"}


async def test_put_writes_a_revision_only_when_something_changed(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    await create(client, admin, BODY)
    same = await client.put("/v1/stacks/main/app", json=BODY, headers=admin.headers)
    assert same.status_code == 200, same.text
    assert same.json()["revision"] == 1
    changed = copy.deepcopy(BODY)
    changed["version"] = "0.2.0"
    changed["services"][1]["env"] = ["MODE=new"]
    changed["services"].append({"name": "cache", "image": "busybox", "stateful": False})
    response = await client.put("/v1/stacks/main/app", json=changed, headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["revision"] == 2 and body["version"] == "0.2.0"
    by_name = {s["name"]: s for s in body["services"]}
    # The new service exists at once; the existing one changes only when the stack deploys.
    assert set(by_name) == {"web", "db", "cache"}
    assert by_name["db"]["env"] == [] and by_name["db"]["stack_revision"] == 1
    assert by_name["cache"]["stack_revision"] is None
    revisions = (await client.get("/v1/stacks/main/app/revisions", headers=admin.headers)).json()
    assert [r["revision"] for r in revisions["revisions"]] == [2, 1]
    assert revisions["revisions"][1]["version"] == "0.1.0"  # history kept
    async with db.session() as session:
        rows = (await session.execute(select(StackRevision.revision))).scalars().all()
    assert sorted(rows) == [1, 2]
    # A PUT validates existing services with the update rules.
    bad = copy.deepcopy(changed)
    bad["services"][1]["strategy"] = "nope"
    assert await invalid(client, admin, bad, "/v1/stacks/main/app") == {
        "services": {"db": {"strategy": "Strategy not supported"}}
    }


async def test_patch_replaces_labels(client: httpx.AsyncClient, admin: Any, grid: str) -> None:
    await create(client, admin, BODY)
    response = await client.patch(
        "/v1/stacks/main/app", json={"labels": ["a=1", "b.c=2"]}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["labels"] == ["a=1", "b.c=2"]
    response = await client.patch("/v1/stacks/main/app", json={"labels": []}, headers=admin.headers)
    assert response.json()["labels"] == []


async def test_deploy_answers_a_created_stack_deploy_and_queues_it(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database, redis_client: redis.Redis
) -> None:
    redis_client.flushdb()
    await create(client, admin, BODY)
    changed = copy.deepcopy(BODY)
    changed["services"][1]["env"] = ["MODE=new"]
    await client.put("/v1/stacks/main/app", json=changed, headers=admin.headers)
    response = await client.post("/v1/stacks/main/app/deploy", headers=admin.headers)
    assert response.status_code == 200, response.text
    deploy = response.json()
    assert deploy["state"] == "created" and deploy["stack_id"] == "main/app"
    assert deploy["service_deploys"] == [] and deploy["revision"] == 2
    assert deploy["finished_at"] is None and deploy["reason"] is None
    assert ("stacks.deploy", [deploy["id"]]) in queued_jobs(redis_client)
    # The latest revision was applied to the services, which nothing deployed yet.
    db_service = (await client.get("/v1/services/main/app/db", headers=admin.headers)).json()
    assert db_service["env"] == ["MODE=new"] and db_service["stack_revision"] == 2
    stack = (await client.get("/v1/stacks/main/app", headers=admin.headers)).json()
    assert stack["state"] == "initialized"
    got = await client.get(f"/v1/stacks/main/app/deploys/{deploy['id']}", headers=admin.headers)
    assert got.status_code == 200 and got.json() == deploy
    listed = await client.get("/v1/stacks/main/app/deploys", headers=admin.headers)
    assert [d["id"] for d in listed.json()["deploys"]] == [deploy["id"]]
    missing = await client.get("/v1/stacks/main/app/deploys/nope", headers=admin.headers)
    assert missing.status_code == 404 and missing.json() == {"error": "Not found"}
    await assert_audited(db, "stack", "deploy", resource_id="main/app")


async def test_null_stack_is_readable_but_not_changeable(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    await client.post(
        "/v1/grids/main/services",
        json={"name": "solo", "image": "busybox", "stateful": False},
        headers=admin.headers,
    )
    body = (await client.get("/v1/stacks/main/null", headers=admin.headers)).json()
    assert body["name"] == "null" and [s["name"] for s in body["services"]] == ["solo"]
    for method, path, message in [
        ("PUT", "/v1/stacks/main/null", "Cannot update null stack"),
        ("POST", "/v1/stacks/main/null/deploy", "Cannot deploy null stack"),
        ("DELETE", "/v1/stacks/main/null", "Cannot delete default stack"),
    ]:
        response = await client.request(method, path, json=BODY, headers=admin.headers)
        assert response.status_code == 422, (path, response.text)
        assert response.json() == {"error": {"stack": message}}


async def test_unknown_stack_is_404_with_an_empty_body(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    for method, path in [
        ("GET", "/v1/stacks/main/nope"),
        ("PUT", "/v1/stacks/main/nope"),
        ("DELETE", "/v1/stacks/main/nope"),
        ("POST", "/v1/stacks/main/nope/deploy"),
    ]:
        response = await client.request(method, path, json=BODY, headers=admin.headers)
        assert (response.status_code, response.json()) == (404, {}), path


async def test_delete_hides_the_stack_and_queues_its_removal(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database, redis_client: redis.Redis
) -> None:
    redis_client.flushdb()
    await create(client, admin, BODY)
    response = await client.delete("/v1/stacks/main/app", headers=admin.headers)
    assert (response.status_code, response.json()) == (200, {})
    assert (await client.get("/v1/stacks/main/app", headers=admin.headers)).status_code == 404
    assert [a for a, _ in queued_jobs(redis_client)] == ["stacks.remove"]
    # The name stays taken until the removal job is done with the services.
    assert await invalid(client, admin, BODY) == {"name": "app already exists"}
    await assert_audited(db, "stack", "delete", resource_id="main/app")


async def test_stop_and_restart_act_on_every_service(
    client: httpx.AsyncClient, admin: Any, grid: str, redis_client: redis.Redis
) -> None:
    redis_client.flushdb()
    await create(client, admin, BODY)
    response = await client.post("/v1/stacks/main/app/stop", headers=admin.headers)
    assert (response.status_code, response.json()) == (200, {})
    body = (await client.get("/v1/stacks/main/app", headers=admin.headers)).json()
    assert body["state"] == "stopped"
    assert {s["state"] for s in body["services"]} == {"stopped"}
    response = await client.post("/v1/stacks/main/app/restart", headers=admin.headers)
    assert (response.status_code, response.json()) == (200, {})
    actors = sorted(a for a, _ in queued_jobs(redis_client))
    assert actors == ["services.notify"] * 2 + ["services.restart"] * 2


async def test_event_logs_of_a_stack(client: httpx.AsyncClient, admin: Any, grid: str) -> None:
    await create(client, admin, BODY)
    await create(client, admin, {**copy.deepcopy(BODY), "name": "other"})
    response = await client.get("/v1/stacks/main/app/event_logs", headers=admin.headers)
    assert response.status_code == 200, response.text
    logs = response.json()["logs"]
    assert {entry["type"] for entry in logs} == {"stack:create", "service:create"}
    for entry in logs:
        assert {"id": "main/app", "type": "stack"} in entry["relationships"]
    limited = await client.get("/v1/stacks/main/app/event_logs?limit=1", headers=admin.headers)
    assert [e["id"] for e in limited.json()["logs"]] == [logs[-1]["id"]]
    after = await client.get(
        f"/v1/stacks/main/app/event_logs?from={logs[0]['id']}", headers=admin.headers
    )
    assert [e["id"] for e in after.json()["logs"]] == [e["id"] for e in logs[1:]]


async def test_a_removal_that_ended_error_shows_the_stack_again(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    await create(client, admin, BODY)
    assert (await client.delete("/v1/stacks/main/app", headers=admin.headers)).status_code == 200
    assert (await client.get("/v1/stacks/main/app", headers=admin.headers)).status_code == 404
    # The worker's retries ran out (the WorkRows middleware marks the row error).
    async with db.session() as session:
        removal = (await session.execute(select(StackRemoval))).scalar_one()
        assert await fail_row(session, StackRemoval, removal.id, "failed after 4 attempts")
        await session.commit()
    shown = await client.get("/v1/stacks/main/app", headers=admin.headers)
    assert shown.status_code == 200
    listed = await client.get("/v1/grids/main/stacks", headers=admin.headers)
    assert [s["name"] for s in listed.json()["stacks"]] == ["app"]
    again = await client.delete("/v1/stacks/main/app", headers=admin.headers)
    assert again.status_code == 200
