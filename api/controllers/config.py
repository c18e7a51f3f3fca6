"""``/v1/config``: the master's key/value configuration, for master admins only."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, put
from litestar.datastructures import State

from api.audit import client_ip
from api.deps import get_runtime
from core import config_store
from core.audit import RequestInfo, record_audit
from core.auth import Principal
from core.config_store import ConfigValue
from core.errors import Forbidden, NotFound
from core.unit_of_work import UnitOfWork
from core.validation import parse_json

RESOURCE = "config"


class EmptyObject(msgspec.Struct):
    """Kontena answers config changes with ``{}``."""


def _require_master_admin(principal: Principal) -> None:
    """The config API denies in OAuth2 style, unlike grid-scoped paths."""
    if not principal.master_admin:
        raise Forbidden({"error": "access_denied"})


def _audit(
    request: Request[Any, Any, Any],
    uow: UnitOfWork,
    principal: Principal,
    event_name: str,
    changes: dict[str, ConfigValue] | None = None,
) -> None:
    """One entry per changed key, as the original; secret values masked, never stored."""
    source_ip, user_agent = client_ip(request), request.headers.get("user-agent")
    if not changes:
        record_audit(
            uow.session,
            principal,
            RequestInfo(source_ip=source_ip, user_agent=user_agent),
            resource_type=RESOURCE,
            resource_name=RESOURCE,
            event_name=event_name,
        )
        return
    for key, value in config_store.redact(changes).items():
        record_audit(
            uow.session,
            principal,
            RequestInfo(
                source_ip=source_ip,
                user_agent=user_agent,
                parameters={"key": key, "value": value},
                body=msgspec.json.encode({key: value}).decode(),
            ),
            resource_type=RESOURCE,
            resource_name=RESOURCE,
            resource_id=key,
            event_name=event_name,
        )


class ConfigController(Controller):
    """Read, merge, replace and clear configuration keys."""

    path = "/v1/config"
    tags = ["config"]

    @get("/", summary="Show configuration")
    async def list_config(
        self, uow: UnitOfWork, principal: Principal, filter: str | None = None
    ) -> dict[str, ConfigValue]:
        """Every key, sorted; ``filter=prefix*`` narrows by prefix, other filters by substring."""
        _require_master_admin(principal)
        return await config_store.get_all(uow.session, filter)

    @get("/{key:str}", summary="Show one configuration key")
    async def get_config(
        self, key: str, uow: UnitOfWork, principal: Principal
    ) -> dict[str, ConfigValue]:
        """``{key: value}``, 404 when unset."""
        _require_master_admin(principal)
        value = await config_store.get_one(uow.session, key)
        if value is None:
            raise NotFound()
        return {key: value}

    @patch("/", summary="Update configuration", status_code=201)
    async def update_config(
        self, request: Request[Any, Any, Any], state: State, uow: UnitOfWork, principal: Principal
    ) -> EmptyObject:
        """Merge the body's keys into the configuration (null removes a key)."""
        _require_master_admin(principal)
        data = config_store.validate(parse_json(await request.body()))
        await config_store.patch(uow.session, get_runtime(state).vault, data)
        _audit(request, uow, principal, "modify", data)
        return EmptyObject()

    @put("/", summary="Replace configuration", status_code=201)
    async def replace_config(
        self, request: Request[Any, Any, Any], state: State, uow: UnitOfWork, principal: Principal
    ) -> EmptyObject:
        """Replace the whole configuration with the body's keys."""
        _require_master_admin(principal)
        data = config_store.validate(parse_json(await request.body()))
        await config_store.replace(uow.session, get_runtime(state).vault, data)
        _audit(request, uow, principal, "destroy_all")
        _audit(request, uow, principal, "modify", data)
        return EmptyObject()

    @delete("/", summary="Clear configuration", status_code=201)
    async def delete_config(
        self, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> EmptyObject:
        """Remove every key."""
        _require_master_admin(principal)
        await config_store.delete_all(uow.session)
        _audit(request, uow, principal, "destroy_all")
        return EmptyObject()

    @delete("/{key:str}", summary="Remove one configuration key", status_code=201)
    async def delete_config_key(
        self, key: str, request: Request[Any, Any, Any], uow: UnitOfWork, principal: Principal
    ) -> EmptyObject:
        """Remove ``key``; an unset key is not an error."""
        _require_master_admin(principal)
        await config_store.delete_one(uow.session, key)
        _audit(request, uow, principal, "modify", {key: None})
        return EmptyObject()


ROUTES = [ConfigController]
