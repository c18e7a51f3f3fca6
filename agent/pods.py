"""ServicePodManager: fetch this node's service pods from the master and keep Docker matching.

Reference §7.4. The list is fetched when the master says hello, on every
``/service_pods/notify_update`` and every ``KONTENA_POD_SYNC_INTERVAL`` seconds; each pod is
applied by its own PodWorker (agent.pod_worker), so a slow pod never holds up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec

from agent.pod_docker import PodDocker
from agent.pod_health import ProbeResult
from agent.pod_plan import pod_id_of
from agent.pod_worker import PodWorker
from agent.rpc import NotConnected, RpcPeer
from core.protocol import (
    POD_LABEL_SERVICE_ID,
    PodHealth,
    PodHook,
    PodHookRef,
    PodState,
    ServicePod,
)

log = logging.getLogger(__name__)

LIST_TIMEOUT = 30.0
SET_STATE_TIMEOUT = 30.0
MARK_HOOK_TIMEOUT = 30.0


class ServicePodManager:
    """Lives as long as the agent; attached to one master connection at a time."""

    def __init__(
        self,
        docker: PodDocker,
        *,
        sync_interval: float = 30.0,
        port_timeout: float = 300.0,
    ) -> None:
        self.docker = docker
        self.sync_interval = sync_interval
        self.port_timeout = port_timeout
        self.workers: dict[str, PodWorker] = {}
        self._peer: RpcPeer | None = None
        self._node_id = ""
        self._node_name = ""
        self._sync_now = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        # pod id → the last PodState the master accepted on this connection (no repeats).
        self._reported: dict[str, PodState] = {}
        self._health_reported: dict[str, PodHealth] = {}

    # --- connection lifecycle -------------------------------------------------------------

    def attach(self, peer: RpcPeer, node_id: str, node_name: str) -> None:
        """Start syncing over ``peer`` (after the master's hello)."""
        if self._loop is not None and self._peer is peer:
            return
        self.detach()
        self._peer, self._node_id, self._node_name = peer, node_id, node_name
        # A new connection (maybe a restarted master) hears everything.
        self._reported.clear()
        self._health_reported.clear()
        self._sync_now.set()
        self._loop = asyncio.create_task(self._sync_forever(peer), name="pod sync")

    def detach(self) -> None:
        """The connection is gone: stop fetching (workers keep their containers as they are)."""
        if self._loop is not None:
            self._loop.cancel()
        self._loop = None
        self._peer = None

    async def close(self) -> None:
        """Agent shutdown: stop the sync loop and every worker."""
        loop = self._loop
        self.detach()
        if loop is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        workers = list(self.workers.values())
        self.workers.clear()
        for worker in workers:
            await worker.stop()

    # --- master → agent -------------------------------------------------------------------

    async def notify_update(self, *_: Any) -> dict[str, Any]:
        """``/service_pods/notify_update``: answer at once, re-fetch the list right after."""
        self._sync_now.set()
        return {}

    async def restart(self, service_id: str, instance_number: int, *_: Any) -> dict[str, Any]:
        """``/service_pods/restart [service_id, instance_number]``."""
        worker = self.workers.get(f"{service_id}/{int(instance_number)}")
        if worker is None or worker.desired is None:
            log.warning("restart of unknown pod %s/%s ignored", service_id, instance_number)
        else:
            worker.request_restart()
        return {}

    # --- syncing --------------------------------------------------------------------------

    async def _sync_forever(self, peer: RpcPeer) -> None:
        while True:
            self._sync_now.clear()
            try:
                await self.sync(peer)
            except NotConnected:
                return
            except Exception as exc:
                log.warning("service pod sync failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.sync_interval):
                    await self._sync_now.wait()

    async def sync(self, peer: RpcPeer) -> None:
        """Fetch the pod list once and hand every pod (and every orphan) to its worker."""
        result = await peer.request("/node_service_pods/list", [self._node_id], LIST_TIMEOUT)
        raw = (result or {}).get("service_pods") or []
        pods: list[ServicePod] = []
        complete = True
        for item in raw:
            try:
                pods.append(msgspec.convert(item, ServicePod))
            except msgspec.ValidationError as exc:
                complete = False
                pod_id = item.get("id") if isinstance(item, dict) else None
                log.error("ignoring malformed service pod %s: %s", pod_id, exc)
        listed = {pod.id: pod for pod in pods}
        for pod in pods:
            self._worker(pod.id).update(pod)
        if not complete:
            return  # a pod we could not read must not be mistaken for a removed one
        containers = await self.docker.pod_containers([POD_LABEL_SERVICE_ID])
        orphans = {pod_id_of(c.get("Labels") or {}) for c in containers}
        orphans.update(self.workers)
        for pod_id in orphans:
            if pod_id is not None and pod_id not in listed:
                self._worker(pod_id).update(None)
                self._reported.pop(pod_id, None)
                self._health_reported.pop(pod_id, None)

    def _worker(self, pod_id: str) -> PodWorker:
        worker = self.workers.get(pod_id)
        if worker is None:
            worker = PodWorker(
                pod_id,
                self.docker,
                node_name=lambda: self._node_name,
                report=self._report,
                port_timeout=self.port_timeout,
                on_idle=self._retire,
                report_health=self._report_health,
                mark_oneshot=self._mark_oneshot,
            )
            self.workers[pod_id] = worker
        return worker

    def _retire(self, worker: PodWorker) -> None:
        if self.workers.get(worker.pod_id) is worker:
            del self.workers[worker.pod_id]

    async def _report(self, pod: ServicePod, state: str, error: str | None) -> None:
        """``/node_service_pods/set_state [node_id, PodState]``, skipping exact repeats."""
        record = PodState(
            service_id=pod.service_id,
            instance_number=pod.instance_number,
            rev=pod.deploy_rev,
            state=state,
            error=error,
        )
        peer = self._peer
        if peer is None or self._reported.get(pod.id) == record:
            return
        try:
            await peer.request(
                "/node_service_pods/set_state",
                [self._node_id, msgspec.to_builtins(record)],
                SET_STATE_TIMEOUT,
            )
        except NotConnected:
            return
        except Exception as exc:  # RemoteError, RpcTimeout: the next sync reports again
            log.warning("reporting pod %s failed: %s", pod.id, exc)
            return
        self._reported[pod.id] = record

    async def _report_health(self, pod: ServicePod, result: ProbeResult) -> None:
        """``/node_service_pods/set_health [node_id, PodHealth]``, skipping exact repeats."""
        record = PodHealth(
            service_id=pod.service_id,
            instance_number=pod.instance_number,
            rev=pod.deploy_rev,
            status=result.status,
            status_code=result.status_code,
            error=result.error,
        )
        peer = self._peer
        if peer is None or self._health_reported.get(pod.id) == record:
            return
        try:
            await peer.request(
                "/node_service_pods/set_health",
                [self._node_id, msgspec.to_builtins(record)],
                SET_STATE_TIMEOUT,
            )
        except NotConnected:
            return
        except Exception as exc:  # the next probe reports again
            log.warning("reporting the health of pod %s failed: %s", pod.id, exc)
            return
        self._health_reported[pod.id] = record

    async def _mark_oneshot(self, pod: ServicePod, hook: PodHook) -> None:
        """``/node_service_pods/mark_oneshot_hook``; raises when the master was not told."""
        peer = self._peer
        if peer is None:
            raise NotConnected("not connected to the master")
        ref = PodHookRef(type=hook.type, name=hook.name, cmd=hook.cmd)
        await peer.request(
            "/node_service_pods/mark_oneshot_hook",
            [
                self._node_id,
                {"service_id": pod.service_id, "instance_number": pod.instance_number},
                msgspec.to_builtins(ref),
            ],
            MARK_HOOK_TIMEOUT,
        )
