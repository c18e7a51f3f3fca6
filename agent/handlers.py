"""The agent's side of a connection: answer the master, report the node, send stats."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from agent.config import AgentConfig
from agent.connection import Identity, backoff_delay
from agent.container_logs import LogShipper
from agent.container_stats import SAVE_TIMEOUT, ContainerReporter
from agent.docker_client import DockerApi
from agent.node_info import build_node_update, detect_private_ip
from agent.pods import ServicePodManager
from agent.rpc import NotConnected, RemoteError, RpcPeer, RpcTimeout
from agent.stats import StatsCollector
from agent.volumes import VolumeSync

log = logging.getLogger(__name__)

UPDATE_TIMEOUT = 30.0
# Retries of /nodes/update within one connection stay short: the node is "connecting" meanwhile.
UPDATE_RETRY_CAP = 30.0


@dataclass
class NodeState:
    """What the agent learned from the master; survives reconnects."""

    master_version: str | None = None
    node_info: dict[str, Any] | None = None
    docker_root_dir: str = "/var/lib/docker"


async def identify(config: AgentConfig, docker: DockerApi) -> Identity:
    """Node id and name: the configured overrides, else the Engine's ID and hostname."""
    if config.node_id and config.node_name:
        return Identity(config.node_id, config.node_name)
    info = await docker.info()
    return Identity(config.node_id or str(info["ID"]), config.node_name or str(info["Name"]))


class NodeSession:
    """Registers the master-facing handlers on a peer and reports once the master says hello."""

    def __init__(
        self,
        peer: RpcPeer,
        identity: Identity,
        *,
        config: AgentConfig,
        docker: DockerApi,
        state: NodeState,
        pods: ServicePodManager | None = None,
        containers: ContainerReporter | None = None,
        logs: LogShipper | None = None,
    ) -> None:
        self._peer = peer
        self._logs = logs
        self._identity = identity
        self._config = config
        self._docker = docker
        self._state = state
        self._pods = pods
        self._containers = containers
        self._updated = False
        self._reporter: asyncio.Task[None] | None = None
        peer.handlers.update(
            {
                "/agent/master_info": self.master_info,
                "/agent/node_info": self.node_info,
                "/agent/ping": self.ping,
            }
        )
        if pods is not None:
            peer.handlers["/service_pods/notify_update"] = pods.notify_update
            peer.handlers["/service_pods/restart"] = pods.restart
            volumes = VolumeSync(peer, pods.docker.api, identity.node_id, self._grid_name)
            peer.handlers["/volumes/notify_update"] = volumes.notify_update

    def _grid_name(self) -> str | None:
        grid = (self._state.node_info or {}).get("grid") or {}
        name = grid.get("name")
        return str(name) if name else None

    @property
    def updated(self) -> bool:
        """True once the master accepted ``/nodes/update`` on this connection."""
        return self._updated

    async def master_info(self, info: dict[str, Any] | None = None, *_: Any) -> None:
        """The master's hello: the connection is up, so report the node."""
        version = (info or {}).get("version")
        self._state.master_version = version
        log.info("master version %s", version)
        if self._reporter is None:
            self._reporter = self._start(self._report())
        if self._pods is not None:
            self._pods.attach(self._peer, self._identity.node_id, self._identity.node_name)
        if self._logs is not None:
            self._logs.attach(self._peer, self._identity.node_id)

    async def node_info(self, info: dict[str, Any] | None = None, *_: Any) -> None:
        """What the master knows about this node (name, number, grid…)."""
        info = info or {}
        self._state.node_info = info
        grid = info.get("grid") or {}
        log.info(
            "node info: name=%s node_number=%s grid=%s labels=%s",
            info.get("name"),
            info.get("node_number"),
            grid.get("name"),
            info.get("labels"),
        )

    async def ping(self, *_: Any) -> str:
        """A cheap round trip for the master's health checks and benchmarks."""
        return "pong"

    async def close(self) -> None:
        """Stop reporting; the connection is gone."""
        if self._pods is not None:
            self._pods.detach()
        if self._logs is not None:
            self._logs.detach()
        if self._reporter is not None:
            self._reporter.cancel()
            await asyncio.gather(self._reporter, return_exceptions=True)

    def _start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.create_task(coro)

    async def _report(self) -> None:
        try:
            await self._send_update()
            async with asyncio.TaskGroup() as reporters:
                reporters.create_task(self._send_stats_forever())
                if self._containers is not None:
                    reporters.create_task(self._send_containers_forever(self._containers))
        except* NotConnected:
            log.debug("connection closed; reporting stops")

    async def _send_update(self) -> None:
        attempt = 0
        while True:
            try:
                info = await self._docker.info()
                params = [self._identity.node_id, await self._node_update(info)]
                await self._peer.request("/nodes/update", params, timeout=UPDATE_TIMEOUT)
            except NotConnected:
                raise
            except Exception as exc:  # RemoteError, RpcTimeout, any Docker/requests error
                delay = backoff_delay(attempt, cap=UPDATE_RETRY_CAP)
                attempt += 1
                log.warning("/nodes/update failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._state.docker_root_dir = str(info.get("DockerRootDir") or "/var/lib/docker")
            self._updated = True
            log.info("node %s reported to the master", self._identity.node_id)
            return

    async def _node_update(self, info: dict[str, Any]) -> dict[str, Any]:
        # Name resolution of the master host may block: keep it off the loop.
        private_ip = self._config.private_ip
        if private_ip is None:
            private_ip = await asyncio.to_thread(detect_private_ip, self._config.uri)
        return build_node_update(
            info,
            node_id=self._identity.node_id,
            node_name=self._identity.node_name,
            public_ip=self._config.public_ip or private_ip,
            private_ip=private_ip,
        )

    async def _send_stats_forever(self) -> None:
        collector = StatsCollector(self._docker)
        await collector.prime()
        while True:
            await asyncio.sleep(self._config.stats_interval)
            try:
                stats = await collector.collect(self._state.docker_root_dir)
                await self._peer.notify("/nodes/stats", [self._identity.node_id, stats])
            except NotConnected:
                raise
            except Exception:
                # One bad sample (Docker busy, /proc hiccup) must not end the reporting.
                log.exception("collecting node stats failed")

    async def _send_containers_forever(self, reporter: ContainerReporter) -> None:
        # A new connection may be a restarted master: it hears about every container again.
        reporter.saved.clear()
        while True:
            try:
                await self._send_containers(reporter)
            except NotConnected:
                raise
            except Exception:
                # Docker busy or a container gone mid-way: the next period tries again.
                log.exception("reporting containers failed")
            await asyncio.sleep(self._config.container_stats_interval)

    async def _send_containers(self, reporter: ContainerReporter) -> None:
        """Save new or changed containers, drop vanished ones, then send every stats sample."""
        report = await reporter.collect()
        node_id = self._identity.node_id
        for document in report.changed:
            params = [{"node": node_id, "container": document}]
            try:
                await self._peer.request("/containers/save", params, timeout=SAVE_TIMEOUT)
            except (RemoteError, RpcTimeout) as exc:
                log.warning("/containers/save of %s failed: %s", document["Id"], exc)
                continue
            reporter.saved[str(document["Id"])] = document
        await self._peer.request(
            "/containers/cleanup", [node_id, report.present], timeout=SAVE_TIMEOUT
        )
        for gone in set(reporter.saved) - set(report.present):
            del reporter.saved[gone]
        if report.stats:
            await self._peer.notify("/containers/stat", report.stats)
