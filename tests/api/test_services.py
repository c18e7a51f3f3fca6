"""Services API (§2.4): shapes, every attribute, Kontena's rules, PUT semantics, deletes."""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from models import EventLog, Service, ServiceInstance
from models.db import Database
from tests.fixtures.audit import assert_audited
from tests.fixtures.service_rows import FULL_BODY, create_service, queued_jobs

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
SERVICE_KEYS = {
    "id", "created_at", "updated_at", "image", "affinity", "name", "stateful", "user",
    "instances", "cmd", "entrypoint", "net", "dns", "ports", "env", "secrets", "memory",
    "memory_swap", "shm_size", "cpus", "cpu_shares", "volumes", "volumes_from", "cap_add",
    "cap_drop", "state", "grid", "stack", "links", "log_driver", "log_opts", "strategy",
    "deploy_opts", "pid", "read_only", "instance_counts", "hooks", "revision", "stack_revision",
    "stop_signal", "stop_grace_period", "certificates",
}  # fmt: skip
HEALTH_KEYS = {"health_check", "health_status"}


@pytest.fixture
async def grid(client: httpx.AsyncClient, admin: Any) -> str:
    """Grid ``main`` made through the API; the admin is a member."""
    response = await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)
    assert response.status_code == 201
    return "main"


async def _count(db: Database) -> int:
    async with db.session() as session:
        return int((await session.execute(select(func.count(Service.id)))).scalar_one())


async def _row(db: Database, name: str) -> Service:
    async with db.session() as session:
        return (await session.execute(select(Service).where(Service.name == name))).scalar_one()


async def test_create_a_minimal_service_renders_kontena_defaults(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    response = await client.post(
        "/v1/grids/main/services",
        json={"name": "redis", "image": "redis:3.0", "stateful": True},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == SERVICE_KEYS
    assert re.fullmatch(TIME, body.pop("created_at"))
    assert re.fullmatch(TIME, body.pop("updated_at"))
    assert body == {
        "id": "main/null/redis",
        "image": "redis:3.0",
        "affinity": [],
        "name": "redis",
        "stateful": True,
        "user": None,
        "instances": 1,
        "cmd": None,
        "entrypoint": None,
        "net": "bridge",
        "dns": "redis.main.kontena.local",
        "ports": [],
        "env": [],
        "secrets": [],
        "memory": None,
        "memory_swap": None,
        "shm_size": None,
        "cpus": None,
        "cpu_shares": None,
        "volumes": [],
        "volumes_from": [],
        "cap_add": [],
        "cap_drop": [],
        "state": "initialized",
        "grid": {"id": "main"},
        "stack": {"id": "main/null", "name": "null"},
        "links": [],
        "log_driver": None,
        "log_opts": {},
        "strategy": "ha",
        "deploy_opts": {"wait_for_port": None, "min_health": 0.8, "interval": None},
        "pid": None,
        "read_only": False,
        "instance_counts": {"total": 0, "running": 0},
        "hooks": [],
        "revision": 1,
        "stack_revision": None,
        "stop_signal": None,
        "stop_grace_period": 10,
        "certificates": [],
    }
    entry = await assert_audited(db, "grid_service", "create", resource_id="main/null/redis")
    assert entry.resource_name == "redis" and entry.grid_name == "main"
    async with db.session() as session:
        types = (await session.execute(select(EventLog.type, EventLog.service))).all()
    assert ("service:create", "redis") in [tuple(t) for t in types]


async def test_every_attribute_round_trips(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    await create_service(client, admin.headers, name="other")
    await client.post(
        "/v1/grids/main/secrets", json={"name": "DB_PASS", "value": "pw"}, headers=admin.headers
    )
    body = copy.deepcopy(FULL_BODY)
    body["links"] = [{"name": "other", "alias": "backend"}]
    body["secrets"] = [{"secret": "DB_PASS", "name": "PASSWORD"}]
    response = await client.post("/v1/grids/main/services", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == SERVICE_KEYS | HEALTH_KEYS
    expected = {
        "id": "main/null/web",
        "name": "web",
        "image": "nginx:1.25",
        "stateful": False,
        "instances": 3,
        "strategy": "daemon",
        "user": "www-data",
        "cmd": ["nginx", "-g", "daemon off;"],
        "entrypoint": "/docker-entrypoint.sh",
        "env": ["FOO=bar", "EMPTY="],
        "affinity": ["label==az-1", "node!=bad"],
        "ports": [
            {"node_port": 8080, "container_port": 80, "ip": "0.0.0.0", "protocol": "tcp"},  # noqa: S104
            {"node_port": 53, "container_port": 5353, "ip": "127.0.0.1", "protocol": "udp"},
        ],
        "deploy_opts": {"wait_for_port": 80, "min_health": 0.5, "interval": 3600},
        "volumes": ["/host/data:/data:ro", "logs:/var/log", "/cache"],
        "volumes_from": ["other-%s"],
        "cpus": 1.5,
        "cpu_shares": 512,
        "memory": 268435456,
        "memory_swap": 536870912,
        "shm_size": 67108864,
        "cap_add": ["NET_ADMIN"],
        "cap_drop": ["MKNOD"],
        "net": "host",
        "dns": "web.main.kontena.local",
        "pid": "host",
        "read_only": True,
        "log_driver": "syslog",
        "log_opts": {"syslog-address": "udp://127.0.0.1:514"},
        "hooks": [
            {"name": "migrate", "type": "pre_start", "cmd": "rake db:migrate", "oneshot": False},
            {"name": "warm", "type": "post_start", "cmd": "curl localhost", "oneshot": True},
            {"name": "drain", "type": "pre_stop", "cmd": "sleep 5", "oneshot": False},
        ],
        "health_check": {
            "protocol": "http",
            "uri": "/health",
            "port": 80,
            "timeout": 5,
            "initial_delay": 15,
            "interval": 30,
        },
        "health_status": {"healthy": 0, "unhealthy": 0, "total": 0},
        "stop_signal": "SIGQUIT",
        "stop_grace_period": 90,
        "certificates": [{"subject": "www.example.com", "name": "SSL_CERTS", "type": "env"}],
        "links": [{"id": "main/null/other", "alias": "backend", "name": "other"}],
        "secrets": [{"secret": "DB_PASS", "name": "PASSWORD", "type": "env"}],
        "state": "initialized",
        "grid": {"id": "main"},
        "stack": {"id": "main/null", "name": "null"},
        "instance_counts": {"total": 0, "running": 0},
        "revision": 1,
        "stack_revision": None,
    }
    assert {k: v for k, v in created.items() if k not in ("created_at", "updated_at")} == expected
    got = await client.get("/v1/services/main/null/web", headers=admin.headers)
    assert got.status_code == 200 and got.json() == created
    listed = await client.get("/v1/grids/main/services", headers=admin.headers)
    assert listed.json()["services"][0] == created
    # Attributes Kontena stores but does not render: kept for the pods.
    row = await _row(db, "web")
    assert (row.spec["privileged"], row.spec["devices"], row.spec["labels"]) == (
        True,
        ["/dev/fuse"],
        {"team": "web"},
    )
    assert [hook["instances"] for hook in row.spec["hooks"]] == [["1"], ["*"], ["1", "2"]]


@pytest.mark.parametrize(
    ("duration", "seconds"), [("30s", 30), ("1m30s", 90), ("1.5h", 5400), ("500ms", 0)]
)
async def test_stop_grace_period_is_stored_in_seconds(
    client: httpx.AsyncClient, admin: Any, grid: str, duration: str, seconds: int
) -> None:
    body = await create_service(client, admin.headers, name="svc", stop_grace_period=duration)
    assert body["stop_grace_period"] == seconds


LONG = "x" * 44  # "<44 x>-1.main.kontena.local" is 65 characters
INVALID: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("stateful missing", {"stateful": None}, {"stateful": "Stateful is required"}),
    ("image missing", {"image": None}, {"image": "Image is required"}),
    ("name missing", {"name": None}, {"name": "Name is required"}),
    ("name leading dash", {"name": "-web"}, {"name": "Name isn't in the right format"}),
    ("name with dot", {"name": "a.b"}, {"name": "Name isn't in the right format"}),
    (
        "fqdn over 64",
        {"name": LONG},
        {
            "name": f"Total grid service name length 65 is over limit (64): "
            f"{LONG}-1.main.kontena.local"
        },
    ),
    ("strategy", {"strategy": "spread"}, {"strategy": "Strategy not supported"}),
    ("instances negative", {"instances": -1}, {"instances": "Instances is too small"}),
    ("instances string", {"instances": "3"}, {"instances": "Instances isn't an integer"}),
    (
        "env format",
        {"env": ["OK=1", "NOVALUE"]},
        {"env": [None, "Env[1] isn't in the right format"]},
    ),
    ("env too long", {"env": ["A=" + "x" * 131072]}, {"env": ["Env[0] is too long"]}),
    (
        "port type",
        {"ports": [{"node_port": "x", "container_port": 80}]},
        {"ports": [{"node_port": "Node port isn't an integer"}]},
    ),
    (
        "port missing",
        {"ports": [{"node_port": 80}]},
        {"ports": [{"container_port": "Container port is required"}]},
    ),
    (
        "port protocol",
        {"ports": [{"node_port": 80, "container_port": 80, "protocol": "icmp"}]},
        {"ports": [{"protocol": "Protocol isn't an option"}]},
    ),
    (
        "link service",
        {"links": [{"name": "nope", "alias": "a"}]},
        {"links": ["Service null/nope does not exist"]},
    ),
    (
        "link stack",
        {"links": [{"name": "other/db", "alias": "a"}]},
        {"links": ["Link other/db points to non-existing stack"]},
    ),
    ("link alias", {"links": [{"name": "db"}]}, {"links": [{"alias": "Alias is required"}]}),
    (
        "secret",
        {"secrets": [{"secret": "NOPE", "name": "X"}]},
        {"secrets": ["Secret NOPE does not exist"]},
    ),
    (
        "volume",
        {"volumes": ["/data", "data"]},
        {"volumes": ["Volume definition 'data' not in right format"]},
    ),
    ("cpu shares", {"cpu_shares": 1025}, {"cpu_shares": "Cpu shares is too big"}),
    ("cpus", {"cpus": "many"}, {"cpus": "Cpus isn't a number"}),
    ("memory", {"memory": 1.5}, {"memory": "Memory isn't an integer"}),
    ("net", {"net": "overlay"}, {"net": "Net isn't in the right format"}),
    ("pid", {"pid": "container"}, {"pid": "Pid isn't an option"}),
    ("privileged", {"privileged": "yes"}, {"privileged": "Privileged isn't a boolean"}),
    ("log opts", {"log_opts": {"max-size": 10}}, {"log_opts": "Log opts isn't a string"}),
    (
        "min health",
        {"deploy_opts": {"min_health": 1.5}},
        {"deploy_opts": {"min_health": "Min health is too big"}},
    ),
    (
        "hook instances",
        {"hooks": {"post_start": [{"name": "h", "cmd": "c", "instances": "all"}]}},
        {"hooks": {"post_start": [{"instances": "Instances isn't in the right format"}]}},
    ),
    (
        "hook cmd",
        {"hooks": {"pre_stop": [{"name": "h", "instances": "*"}]}},
        {"hooks": {"pre_stop": [{"cmd": "Cmd is required"}]}},
    ),
    (
        "health interval",
        {"health_check": {"port": 80, "protocol": "http", "interval": 5, "timeout": 10}},
        {"health_check": "Interval has to be bigger than timeout"},
    ),
    (
        "health port key",
        {"health_check": {"protocol": "tcp"}},
        {"health_check": {"port": "Port is required"}},
    ),
    (
        "health protocol",
        {"health_check": {"port": 80, "protocol": "udp"}},
        {"health_check": {"protocol": "Protocol isn't an option"}},
    ),
    (
        "stop signal",
        {"stop_signal": "KILL"},
        {"stop_signal": "Stop signal isn't in the right format"},
    ),
    (
        "stop grace period",
        {"stop_grace_period": "soon"},
        {"stop_grace_period": "Stop grace period isn't in the right format"},
    ),
    (
        "stateful volumes_from",
        {"stateful": True, "volumes_from": ["db-%s"]},
        {"volumes_from": "Cannot combine stateful & volumes_from"},
    ),
]


@pytest.mark.parametrize(("case", "change", "error"), INVALID, ids=[c[0] for c in INVALID])
async def test_each_rule_is_a_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    admin: Any,
    grid: str,
    db: Database,
    case: str,
    change: dict[str, Any],
    error: dict[str, Any],
) -> None:
    body: dict[str, Any] = {"name": "web", "image": "busybox", "stateful": False}
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    response = await client.post("/v1/grids/main/services", json=body, headers=admin.headers)
    assert (response.status_code, response.json()) == (422, {"error": error}), case
    assert await _count(db) == 0


async def test_several_broken_rules_are_reported_together(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    response = await client.post(
        "/v1/grids/main/services",
        json={
            "name": "web",
            "image": "busybox",
            "stateful": True,
            "strategy": "x",
            "volumes_from": ["a"],
            "secrets": [{"secret": "A", "name": "A"}, {"secret": "B", "name": "B"}],
        },
        headers=admin.headers,
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "strategy": "Strategy not supported",
            "volumes_from": "Cannot combine stateful & volumes_from",
            "secrets": ["Secret A does not exist", "Secret B does not exist"],
        }
    }


async def test_a_taken_name_and_bad_bodies(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    await create_service(client, admin.headers, name="web")
    again = await client.post(
        "/v1/grids/main/services",
        json={"name": "web", "image": "x", "stateful": False},
        headers=admin.headers,
    )
    assert (again.status_code, again.json()) == (422, {"error": {"name": "is already taken"}})
    broken = await client.post("/v1/grids/main/services", content=b"{nope", headers=admin.headers)
    assert (broken.status_code, broken.json()) == (400, {"error": "Invalid json"})
    assert await _count(db) == 1


async def test_links_within_a_stack_and_across(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    from core import services as core_services
    from core.auth import Principal
    from core.service_spec import ServiceCreate
    from models import AccessToken, Grid, User

    # Stacks arrive with [F4]; make a stack service through the core function they will use.
    async with db.session() as session:
        grid_row = (await session.execute(select(Grid))).scalar_one()
        user = (await session.execute(select(User).where(User.email == "admin"))).scalar_one()
        principal = Principal(user=user, token=AccessToken(), grid_ids=frozenset())
        data = ServiceCreate(name="db", image="postgres", stateful=True)
        await core_services.create_service(session, principal, grid_row, data, stack="app")
        await session.commit()
    body = await create_service(
        client, admin.headers, name="api", links=[{"name": "app/db", "alias": "database"}]
    )
    assert body["links"] == [{"id": "main/app/db", "alias": "database", "name": "app/db"}]
    in_stack = await client.get("/v1/services/main/app/db", headers=admin.headers)
    assert in_stack.json()["dns"] == "db.app.main.kontena.local"
    assert in_stack.json()["stack"] == {"id": "main/app", "name": "app"}
    only_app = await client.get("/v1/grids/main/services?stack=app", headers=admin.headers)
    assert [s["id"] for s in only_app.json()["services"]] == ["main/app/db"]
    stackless = await client.get("/v1/grids/main/services?stack=null", headers=admin.headers)
    assert [s["id"] for s in stackless.json()["services"]] == ["main/null/api"]


async def test_list_is_newest_first_and_an_unknown_stack_is_404(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    for name in ("first", "second", "third"):
        await create_service(client, admin.headers, name=name)
    listed = await client.get("/v1/grids/main/services", headers=admin.headers)
    assert listed.status_code == 200
    assert [s["name"] for s in listed.json()["services"]] == ["third", "second", "first"]
    unknown = await client.get("/v1/grids/main/services?stack=nope", headers=admin.headers)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Stack not found"})
    missing = await client.get("/v1/services/main/null/nope", headers=admin.headers)
    assert (missing.status_code, missing.json()) == (404, {"error": "Not found"})
    wrong_stack = await client.get("/v1/services/main/other/first", headers=admin.headers)
    assert wrong_stack.status_code == 404


async def test_affinity_falls_back_to_the_grid_default(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    await client.put(
        "/v1/grids/main", json={"default_affinity": ["label==ssd"]}, headers=admin.headers
    )
    plain = await create_service(client, admin.headers, name="plain")
    own = await create_service(client, admin.headers, name="own", affinity=["node==n1"])
    assert (plain["affinity"], own["affinity"]) == (["label==ssd"], ["node==n1"])


async def _put(client: httpx.AsyncClient, admin: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.put("/v1/services/main/null/web", json=body, headers=admin.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_put_changes_only_given_keys_and_bumps_the_revision(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    body = copy.deepcopy(FULL_BODY)
    created = (
        await client.post("/v1/grids/main/services", json=body, headers=admin.headers)
    ).json()
    updated = await _put(client, admin, {"image": "nginx:1.26", "cpus": 2.0})
    assert (updated["image"], updated["cpus"], updated["revision"]) == ("nginx:1.26", 2.0, 2)
    untouched = {k: v for k, v in created.items() if k not in ("image", "cpus", "revision")}
    assert {k: updated[k] for k in untouched if k != "updated_at"} == {
        k: v for k, v in untouched.items() if k != "updated_at"
    }
    # The same values again change nothing, so the revision stays.
    same = await _put(client, admin, {"image": "nginx:1.26", "cpus": 2.0})
    assert same["revision"] == 2
    forced = await _put(client, admin, {"force": True})
    assert forced["revision"] == 3
    # Lists are replaced whole; an empty list clears; null resets a scalar.
    cleared = await _put(
        client,
        admin,
        {"ports": [], "hooks": {}, "volumes": ["/only"], "user": None, "instances": 5},
    )
    assert (cleared["ports"], cleared["hooks"], cleared["volumes"]) == ([], [], ["/only"])
    assert (cleared["user"], cleared["instances"], cleared["revision"]) == (None, 5, 4)
    # Both port and protocol null: the health check is gone from the JSON.
    no_check = await _put(client, admin, {"health_check": {"port": None, "protocol": None}})
    assert not HEALTH_KEYS & set(no_check)


async def test_put_env_key_with_empty_value_keeps_the_current_value(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    await create_service(client, admin.headers, name="web", env=["A=1", "B=2", "C=3"])
    updated = await _put(client, admin, {"env": ["B=", "A=10", "D="]})
    assert updated["env"] == ["B=2", "A=10", "D="]
    assert updated["revision"] == 2


async def test_put_validation_writes_nothing(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    await create_service(client, admin.headers, name="web", stateful=True, volumes=["/data"])
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"strategy": "x", "image": "new"}, {"strategy": "Strategy not supported"}),
        ({"volumes_from": ["x-%s"]}, {"volumes_from": "Cannot combine stateful & volumes_from"}),
        (
            {"volumes": ["/data", "/new"]},
            {
                "volumes": [
                    "Adding a new anonymous volume (/new) to a stateful service is not supported"
                ]
            },
        ),
    ]
    for change, error in cases:
        response = await client.put(
            "/v1/services/main/null/web", json=change, headers=admin.headers
        )
        assert (response.status_code, response.json()) == (422, {"error": error}), change
    long_name = "y" * 40
    await create_service(client, admin.headers, name=long_name)
    too_many = await client.put(
        f"/v1/services/main/null/{long_name}", json={"instances": 10000}, headers=admin.headers
    )
    assert too_many.status_code == 422
    assert "is over limit (64)" in too_many.json()["error"]["name"]
    row = await _row(db, "web")
    assert (row.image, row.revision, row.spec["volumes"]) == ("busybox", 1, ["/data"])
    # Named volumes and already-known anonymous ones are fine on a stateful service.
    fine = await _put(client, admin, {"volumes": ["/data", "named:/more"]})
    assert fine["volumes"] == ["/data", "named:/more"]


async def test_update_and_delete_are_audited(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database, redis_client: redis.Redis
) -> None:
    await create_service(client, admin.headers, name="web")
    await _put(client, admin, {"image": "busybox:2"})
    await assert_audited(db, "grid_service", "update", resource_id="main/null/web")
    response = await client.delete("/v1/services/main/null/web", headers=admin.headers)
    assert (response.status_code, response.json()) == (200, {})
    await assert_audited(db, "grid_service", "delete", resource_id="main/null/web")


async def test_delete_hides_the_service_and_queues_its_removal(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database, redis_client: redis.Redis
) -> None:
    await create_service(client, admin.headers, name="web")
    row = await _row(db, "web")
    async with db.session() as session:
        session.add(ServiceInstance(service_id=row.id, instance_number=1, desired_state="running"))
        await session.commit()
    response = await client.delete("/v1/services/main/null/web", headers=admin.headers)
    assert (response.status_code, response.json()) == (200, {})
    assert queued_jobs(redis_client) == [("services.remove", [row.id])]
    gone = await client.get("/v1/services/main/null/web", headers=admin.headers)
    assert (gone.status_code, gone.json()) == (404, {"error": "Not found"})
    listed = await client.get("/v1/grids/main/services", headers=admin.headers)
    assert listed.json() == {"services": []}
    async with db.session() as session:
        states = (await session.execute(select(ServiceInstance.desired_state))).scalars().all()
    assert states == ["terminated"]
    again = await client.delete("/v1/services/main/null/web", headers=admin.headers)
    assert again.status_code == 404


async def test_a_linked_service_cannot_be_deleted(
    client: httpx.AsyncClient, admin: Any, grid: str, redis_client: redis.Redis
) -> None:
    await create_service(client, admin.headers, name="db")
    await create_service(client, admin.headers, name="api", links=[{"name": "db", "alias": "d"}])
    await create_service(client, admin.headers, name="web", links=[{"name": "db", "alias": "d"}])
    refused = await client.delete("/v1/services/main/null/db", headers=admin.headers)
    assert refused.status_code == 422
    assert refused.json() == {
        "error": {"service": "Cannot delete service that is linked to another service (api, web)"}
    }
    assert queued_jobs(redis_client) == []
    still = await client.get("/v1/services/main/null/db", headers=admin.headers)
    assert still.status_code == 200


async def test_grid_counts_services_and_refuses_deletion_while_it_has_some(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    await create_service(client, admin.headers, name="a")
    await create_service(client, admin.headers, name="b")
    one = await client.get("/v1/grids/main", headers=admin.headers)
    assert one.json()["service_count"] == 2
    listed = await client.get("/v1/grids", headers=admin.headers)
    assert listed.json()["grids"][0]["service_count"] == 2
    refused = await client.delete("/v1/grids/main", headers=admin.headers)
    assert (refused.status_code, refused.json()) == (
        422,
        {"error": {"grid": "Grid has services"}},
    )


async def test_secrets_in_use(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    for name in ("PASS", "UNUSED"):
        await client.post(
            "/v1/grids/main/secrets", json={"name": name, "value": "v1"}, headers=admin.headers
        )
    await create_service(
        client, admin.headers, name="web", secrets=[{"secret": "PASS", "name": "DB_PASSWORD"}]
    )
    listed = await client.get("/v1/grids/main/secrets", headers=admin.headers)
    services_of = {s["name"]: s["services"] for s in listed.json()["secrets"]}
    assert services_of == {"PASS": [{"id": "main/null/web", "name": "web"}], "UNUSED": []}
    refused = await client.delete("/v1/secrets/main/PASS", headers=admin.headers)
    assert (refused.status_code, refused.json()) == (
        422,
        {"error": {"secret": "Secret PASS still in use in services: main/null/web"}},
    )
    assert (
        await client.delete("/v1/secrets/main/UNUSED", headers=admin.headers)
    ).status_code == 200
    # A new value means a new revision of the services using it; the same value does not.
    await client.put("/v1/secrets/main/PASS", json={"value": "v2"}, headers=admin.headers)
    assert (await _row(db, "web")).revision == 2
    await client.put("/v1/secrets/main/PASS", json={"value": "v2"}, headers=admin.headers)
    assert (await _row(db, "web")).revision == 2
    # The secret JSON never reaches the service JSON.
    service = await client.get("/v1/services/main/null/web", headers=admin.headers)
    assert "v2" not in service.text
