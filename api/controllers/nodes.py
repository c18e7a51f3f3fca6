"""Nodes (``/v1/grids/:grid/nodes``, ``/v1/nodes/:grid/:node/…``) and grid stats/metrics."""

from __future__ import annotations

from functools import partial
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State

from api.audit import audit
from api.deps import get_runtime, load_grid
from api.schemas.nodes import (
    Metrics,
    Node,
    NodeCreate,
    NodeList,
    NodeToken,
    NodeTokenClear,
    NodeTokenReset,
    NodeUpdate,
    StatsList,
    node_grid_view,
    node_view,
)
from core import grids, node_metrics, nodes
from core.auth import Principal
from core.stateful import nudge_node
from core.unit_of_work import UnitOfWork
from core.validation import decode_body, parse_json
from models import Grid as GridRow
from models import Node as NodeRow

RESOURCE = "node"
Req = Request[Any, Any, Any]


def _redacted(body: bytes) -> bytes:
    """The body with a given node token masked: audit entries never keep secrets."""
    data = parse_json(body)  # already known to be valid: decode_body ran first
    if isinstance(data, dict) and data.get("token"):
        data["token"] = "[FILTERED]"
        return msgspec.json.encode(data)
    return body


async def _render(state: State, uow: UnitOfWork, grid: GridRow, node: NodeRow) -> Node:
    grid_view = node_grid_view(grid, grids.grid_token(get_runtime(state).vault, grid))
    return node_view(node, grid, grid_view, await nodes.grid_peers(uow.session, grid))


def _audit(
    request: Req,
    uow: UnitOfWork,
    principal: Principal,
    grid: GridRow,
    node: NodeRow,
    event_name: str,
    body: bytes | None = None,
) -> None:
    audit(
        request,
        uow,
        principal,
        resource_type=RESOURCE,
        event_name=event_name,
        resource_id=node.id,
        resource_name=nodes.node_path(grid.name, node.name),
        grid=grid,
        body=body,
    )


class GridNodeController(Controller):
    """A grid's nodes and the grid-wide stats and metrics built from them."""

    path = "/v1/grids/{name:str}"
    tags = ["nodes"]

    @get("/nodes", summary="List nodes")
    async def list_nodes(
        self, name: str, state: State, uow: UnitOfWork, principal: Principal
    ) -> NodeList:
        """The grid's nodes by name (members)."""
        grid = await load_grid(uow, principal, name)
        grid_view = node_grid_view(grid, grids.grid_token(get_runtime(state).vault, grid))
        rows = await nodes.list_nodes(uow.session, grid)
        peers = [nodes.Peer(r.id, r.labels or [], r.private_ip, r.public_ip) for r in rows]
        return NodeList(nodes=[node_view(row, grid, grid_view, peers) for row in rows])

    @post("/nodes", summary="Create a node", status_code=201)
    async def create_node(
        self, name: str, request: Req, state: State, uow: UnitOfWork, principal: Principal
    ) -> Node:
        """Create a node that joins with its own token (grid_admin+)."""
        grid = await load_grid(uow, principal, name)
        body = await request.body()
        nodes.require_token_admin(principal, grid)  # a 403 before any 422, as Kontena
        data = decode_body(body, NodeCreate)
        node, _token = await nodes.create_node(
            uow.session, get_runtime(state).vault, principal, grid, data
        )
        _audit(request, uow, principal, grid, node, "create", _redacted(body))
        return await _render(state, uow, grid, node)

    @get("/stats", summary="Get grid stats")
    async def get_grid_stats(
        self, name: str, request: Req, uow: UnitOfWork, principal: Principal
    ) -> StatsList:
        """Running containers of the grid with their latest stats, largest first."""
        grid = await load_grid(uow, principal, name)
        params = request.query_params
        sort = node_metrics.parse_sort(params.get("sort"))
        limit = node_metrics.parse_limit(params.get("limit"))
        found = await node_metrics.container_stats(uow.session, grid.id)
        return StatsList(stats=node_metrics.sort_container_stats(found, sort, limit))

    @get("/metrics", summary="Get grid metrics")
    async def get_grid_metrics(
        self, name: str, request: Req, uow: UnitOfWork, principal: Principal
    ) -> Metrics:
        """Per-minute node stats of the grid: summed over nodes, CPU averaged."""
        grid = await load_grid(uow, principal, name)
        params = request.query_params
        start, end = node_metrics.parse_window(params.get("from"), params.get("to"))
        return await node_metrics.grid_metrics(uow.session, grid.id, start, end)


class NodeController(Controller):
    """One node: ``node`` is its name, or its agent id when it contains ``:``."""

    path = "/v1/nodes/{grid:str}/{node:str}"
    tags = ["nodes"]

    @get("/", summary="Get a node")
    async def get_node(
        self, grid: str, node: str, state: State, uow: UnitOfWork, principal: Principal
    ) -> Node:
        """One node (members)."""
        grid_row = await load_grid(uow, principal, grid)
        row = await nodes.find_node(uow.session, grid_row, node)
        return await _render(state, uow, grid_row, row)

    @put("/", summary="Update a node")
    async def update_node(
        self,
        grid: str,
        node: str,
        request: Req,
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> Node:
        """Replace labels and/or set availability active|drain (members)."""
        grid_row = await load_grid(uow, principal, grid)
        row = await nodes.find_node(uow.session, grid_row, node)
        body = await request.body()
        data = decode_body(body, NodeUpdate)
        await nodes.update_node(uow.session, principal, grid_row, row, data)
        _audit(request, uow, principal, grid_row, row, "update", body)
        if data.availability is not None:
            # Stateful instances there stop or start again: the agent hears it now.
            uow.after_commit(partial(nudge_node, get_runtime(state), row))
        return await _render(state, uow, grid_row, row)

    @delete("/", summary="Remove a node", status_code=200)
    async def delete_node(
        self,
        grid: str,
        node: str,
        request: Req,
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Unregister the node; its agent's socket is closed with 4040. Answers ``{}``."""
        grid_row = await load_grid(uow, principal, grid)
        row = await nodes.find_node(uow.session, grid_row, node)
        # Audited before the row goes, as Kontena did (`remove node`).
        _audit(request, uow, principal, grid_row, row, "remove node")
        await nodes.delete_node(uow.session, principal, grid_row, row)
        uow.after_commit(partial(nodes.request_recheck, get_runtime(state), row))
        return {}

    @get("/token", summary="Get a node token")
    async def get_node_token(
        self, grid: str, node: str, state: State, uow: UnitOfWork, principal: Principal
    ) -> NodeToken:
        """The node token for ``KONTENA_NODE_TOKEN`` (grid_admin+); 404 when it has none."""
        grid_row = await load_grid(uow, principal, grid)
        nodes.require_token_admin(principal, grid_row)
        row = await nodes.find_node(uow.session, grid_row, node)
        token = nodes.node_token(get_runtime(state).vault, grid_row, row)
        return NodeToken(id=nodes.node_path(grid_row.name, row.name), token=token)

    @put("/token", summary="Reset a node token")
    async def update_node_token(
        self,
        grid: str,
        node: str,
        request: Req,
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> NodeToken:
        """A new token, given or generated; ``reset_connection`` drops the agent (4031)."""
        grid_row = await load_grid(uow, principal, grid)
        nodes.require_token_admin(principal, grid_row)
        row = await nodes.find_node(uow.session, grid_row, node)
        body = await request.body()
        data = decode_body(body, NodeTokenReset)
        runtime = get_runtime(state)
        token = await nodes.reset_token(uow.session, runtime.vault, principal, grid_row, row, data)
        _audit(request, uow, principal, grid_row, row, "reset token", _redacted(body))
        if data.reset_connection:
            uow.after_commit(partial(nodes.request_recheck, runtime, row))
        return NodeToken(id=nodes.node_path(grid_row.name, row.name), token=token)

    @delete("/token", summary="Clear a node token", status_code=200)
    async def delete_node_token(
        self,
        grid: str,
        node: str,
        request: Req,
        state: State,
        uow: UnitOfWork,
        principal: Principal,
    ) -> dict[str, Any]:
        """Remove the node token; the agent can then join only with the grid token."""
        grid_row = await load_grid(uow, principal, grid)
        nodes.require_token_admin(principal, grid_row)
        row = await nodes.find_node(uow.session, grid_row, node)
        body = await request.body()
        data = decode_body(body, NodeTokenClear)
        await nodes.clear_token(uow.session, principal, grid_row, row, data)
        _audit(request, uow, principal, grid_row, row, "clear token", body)
        if data.reset_connection:
            uow.after_commit(partial(nodes.request_recheck, get_runtime(state), row))
        return {}

    @get("/stats", summary="Get node stats")
    async def get_node_stats(
        self, grid: str, node: str, request: Req, uow: UnitOfWork, principal: Principal
    ) -> StatsList:
        """Running containers on the node with their latest stats, largest first."""
        grid_row = await load_grid(uow, principal, grid)
        row = await nodes.find_node(uow.session, grid_row, node)
        params = request.query_params
        sort = node_metrics.parse_sort(params.get("sort"))
        limit = node_metrics.parse_limit(params.get("limit"))
        found = await node_metrics.container_stats(uow.session, grid_row.id, row.id)
        return StatsList(stats=node_metrics.sort_container_stats(found, sort, limit))

    @get("/metrics", summary="Get node metrics")
    async def get_node_metrics(
        self, grid: str, node: str, request: Req, uow: UnitOfWork, principal: Principal
    ) -> Metrics:
        """Per-minute stats of the node between ``from`` and ``to`` (default: the last hour)."""
        grid_row = await load_grid(uow, principal, grid)
        row = await nodes.find_node(uow.session, grid_row, node)
        params = request.query_params
        start, end = node_metrics.parse_window(params.get("from"), params.get("to"))
        return await node_metrics.node_metrics(uow.session, row.id, start, end)


ROUTES = [GridNodeController, NodeController]
