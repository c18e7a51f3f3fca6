"""One worker per service pod: converges the pod's container and reports the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from agent.pod_docker import PodDocker, PodError
from agent.pod_health import HealthMonitor, HealthReporter
from agent.pod_hooks import HookRunner, OneshotMarker
from agent.pod_plan import (
    RUNNING,
    TERMINATED,
    Action,
    ContainerFacts,
    decide,
    image_check_needed,
    observed_state,
    pod_id_of,
    recreate_reason,
)
from core.protocol import POD_LABEL_INSTANCE, POD_LABEL_SERVICE_ID, ServicePod

log = logging.getLogger(__name__)

Reporter = Callable[[ServicePod, str, str | None], Awaitable[None]]

PORT_POLL_INTERVAL = 1.0


class PodWorker:
    """Applies the latest desired pod (None: no longer listed) whenever it is woken."""

    def __init__(
        self,
        pod_id: str,
        docker: PodDocker,
        *,
        node_name: Callable[[], str],
        report: Reporter,
        port_timeout: float,
        on_idle: Callable[[PodWorker], None],
        report_health: HealthReporter,
        mark_oneshot: OneshotMarker,
    ) -> None:
        self.pod_id = pod_id
        self._docker = docker
        self._node_name = node_name
        self._report = report
        self._port_timeout = port_timeout
        self._on_idle = on_idle
        self.desired: ServicePod | None = None
        # The last listed pod: a pod no longer listed still gets its pre_stop hooks.
        self._last_pod: ServicePod | None = None
        self._hooks = HookRunner(docker, mark_oneshot)
        self.health = HealthMonitor(
            pod_id, report=report_health, restart=self.request_restart, target=port_target
        )
        self._wake = asyncio.Event()
        self._restart_requested_at: datetime | None = None
        self._checked_rev: str | None = None
        # (deploy_rev, container id) whose wait_for_port already succeeded.
        self._port_ok: tuple[str, str] | None = None
        self.applies = 0  # finished applies (tests and logs use it to know a round is over)
        self.task: asyncio.Task[None] = asyncio.create_task(self._run(), name=f"pod {pod_id}")

    def update(self, pod: ServicePod | None) -> None:
        """Set the desired pod and apply it soon (later updates coalesce)."""
        self.desired = pod
        if pod is not None:
            self._last_pod = pod
        self._wake.set()

    def request_restart(self) -> None:
        """Restart the container if it was started before now (reference §3.8)."""
        self._restart_requested_at = datetime.now(UTC)
        self._wake.set()

    async def stop(self) -> None:
        """Cancel the worker (agent shutdown)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.health.close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pod = self.desired
            try:
                await self._apply(pod)
            except asyncio.CancelledError:
                raise
            except Exception:
                # An unexpected failure must not kill the worker: the next sync retries.
                log.exception("applying pod %s failed", self.pod_id)
            self.applies += 1
            if pod is None and self.desired is None and not self._wake.is_set():
                self.health.unwatch()
                self._on_idle(self)
                return

    def _superseded(self, pod: ServicePod | None) -> bool:
        """True when a newer desired pod arrived while ``pod`` was being applied."""
        new = self.desired
        if pod is None or new is None:
            return new is not pod
        return (new.deploy_rev, new.desired_state) != (pod.deploy_rev, pod.desired_state)

    async def _containers(self, pod: ServicePod | None) -> ContainerFacts | None:
        """The pod's container; duplicates (same labels, e.g. after a crash) are removed."""
        service_id, _, instance = self.pod_id.rpartition("/")
        found = await self._docker.pod_containers(
            [f"{POD_LABEL_SERVICE_ID}={service_id}", f"{POD_LABEL_INSTANCE}={instance}"]
        )
        found = [c for c in found if pod_id_of(c.get("Labels") or {}) == self.pod_id]
        if not found:
            return None
        wanted = f"/{pod.container_name}" if pod is not None else None
        found.sort(key=lambda c: (wanted not in (c.get("Names") or []), -int(c.get("Created", 0))))
        for extra in found[1:]:
            log.warning("removing duplicate container %s of pod %s", extra["Id"][:12], self.pod_id)
            await self._docker.step(
                "removal", "remove_container", extra["Id"], extra["Id"][:12], force=True, v=True
            )
        return await self._docker.inspect(found[0]["Id"])

    async def _apply(self, pod: ServicePod | None) -> None:
        container = await self._containers(pod)
        error: str | None = None
        try:
            container = await self._converge(pod, container)
            if pod is not None and container is not None and container.status == RUNNING:
                await self._wait_for_port(pod, container)
        except PodError as exc:
            error = str(exc)
            log.warning("pod %s: %s", self.pod_id, error)
            container = await self._containers(pod)
        except _Superseded:
            return
        self._watch_health(pod, container)
        if pod is None or self._superseded(pod):
            return  # unlisted pods have no instance left to report on; stale revs never report
        if pod.desired_state not in (RUNNING, "stopped", TERMINATED):
            return
        await self._report(pod, observed_state(pod, container), error)

    async def _converge(
        self, pod: ServicePod | None, container: ContainerFacts | None
    ) -> ContainerFacts | None:
        image_id: str | None = None
        if pod is not None and image_check_needed(pod, container, self._checked_rev):
            image_id = await self._docker.ensure_image(pod)
            self._checked_rev = pod.deploy_rev
        restart = self._restart_due(container)
        actions = decide(pod, container, image_id=image_id, restart=restart)
        if not actions:
            if pod is not None and pod.desired_state == TERMINATED:
                # The container went earlier (or never was): its data container goes now.
                await self._docker.remove_data(self.pod_id)
            return container
        if pod is not None and container is not None and Action.REMOVE in actions:
            reason = recreate_reason(pod, container, image_id)
            if reason:
                log.info("pod %s: re-creating its container (%s)", self.pod_id, reason)
        log.info("pod %s: %s", self.pod_id, ", ".join(actions))
        container_id = container.id if container else ""
        name = container.name if container else ""
        grace = pod.stop_grace_period if pod is not None else 10
        pre_started = False
        for action in actions:
            if action is Action.PULL:
                assert pod is not None
                await self._docker.ensure_image(pod)
                self._checked_rev = pod.deploy_rev
            elif action is Action.STOP:
                self.health.unwatch()
                # Kontena ran the hooks of the pod being applied (the old container's are gone).
                await self._hooks.pre_stop(pod or self._last_pod, container_id)
                await self._docker.step("stop", "stop", container_id, name, timeout=grace)
            elif action is Action.REMOVE:
                await self._docker.step(
                    "removal", "remove_container", container_id, name, force=True, v=True
                )
                container_id = ""  # gone: nothing left to inspect unless CREATE follows
            elif action is Action.CREATE:
                assert pod is not None
                await self._hooks.pre_start(pod, self._node_name())
                pre_started = True
                container_id = await self._docker.create(pod, self._node_name())
                name = pod.container_name
            elif action is Action.START:
                assert pod is not None
                if not pre_started:
                    await self._hooks.pre_start(pod, self._node_name())
                await self._docker.step("start", "start", container_id, name)
                await self._hooks.post_start(pod, container_id)
            elif action is Action.RESTART:
                await self._docker.step("restart", "restart", container_id, name, timeout=grace)
            if action in (Action.START, Action.RESTART):
                self._restart_requested_at = None
        if pod is not None and pod.desired_state == TERMINATED:
            # Only an explicit termination takes a stateful pod's data with it: a pod merely
            # missing from one list (say, one the master could not build) keeps its data.
            await self._docker.remove_data(self.pod_id)
        return await self._docker.inspect(container_id) if container_id else None

    def _watch_health(self, pod: ServicePod | None, container: ContainerFacts | None) -> None:
        """Probe a running container of a pod with a health check; stop probing otherwise."""
        if (
            pod is not None
            and pod.health_check is not None
            and pod.desired_state == RUNNING
            and container is not None
            and container.status == RUNNING
        ):
            self.health.watch(pod, container)
        else:
            self.health.unwatch()

    def _restart_due(self, container: ContainerFacts | None) -> bool:
        requested = self._restart_requested_at
        if requested is None:
            return False
        if container is None or not container.up:
            self._restart_requested_at = None  # a start (if any) comes from the desired state
            return False
        started = container.started_at
        if started is not None and started >= requested:
            self._restart_requested_at = None
            return False
        return True

    async def _wait_for_port(self, pod: ServicePod, container: ContainerFacts) -> None:
        """Poll ``wait_for_port`` (1 s interval) before a running pod is reported."""
        port = pod.wait_for_port
        if not port or self._port_ok == (pod.deploy_rev, container.id):
            return
        host, target = port_target(pod, container, port)
        if host is None:
            raise PodError(f"wait_for_port {port}: the container has no address to probe")
        deadline = time.monotonic() + self._port_timeout
        while True:
            if self._superseded(pod):
                log.info("pod %s: wait_for_port aborted (service redeployed)", self.pod_id)
                raise _Superseded
            if await port_open(host, target):
                self._port_ok = (pod.deploy_rev, container.id)
                return
            if time.monotonic() >= deadline:
                raise PodError(
                    f"port {port} of container {pod.container_name} did not open within "
                    f"{self._port_timeout:g} s"
                )
            await asyncio.sleep(PORT_POLL_INTERVAL)


class _Superseded(Exception):
    """A newer desired pod arrived during a wait: drop this apply without reporting."""


def port_target(pod: ServicePod, container: ContainerFacts, port: int) -> tuple[str | None, int]:
    """Where to probe ``port``: the published node port if any, else the container address."""
    if pod.net == "host":
        return "127.0.0.1", port
    for published in pod.ports:
        # node_port 0: Docker picked the host port; the container address is known, that is not.
        if published.container_port == port and published.protocol == "tcp" and published.node_port:
            ip = published.ip
            return ("127.0.0.1" if ip in ("0.0.0.0", "") else ip), published.node_port  # noqa: S104
    return container.ip, port


async def port_open(host: str, port: int, timeout: float = 1.0) -> bool:  # noqa: ASYNC109
    """True when a TCP connect to host:port succeeds within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
