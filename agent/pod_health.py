"""Health checks of a service pod's container (reference §3.10).

After ``initial_delay`` seconds from the container's start the agent probes it every
``interval`` seconds: HTTP (a 2xx or 3xx answer within ``timeout`` is healthy) or TCP (a
connect within ``timeout``). Every result goes to the master (the pod manager drops exact
repeats); an unhealthy result asks the pod's worker to restart the container, as Kontena's
agent did, and the checks start over (initial delay included) once it runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.pod_plan import ContainerFacts
from core.protocol import PodHealthCheck, ServicePod

log = logging.getLogger(__name__)

HEALTHY, UNHEALTHY = "healthy", "unhealthy"
MIN_INTERVAL = 1.0  # an interval of 0 passes validation; probing in a tight loop would not do


@dataclass(frozen=True)
class ProbeResult:
    """One probe: the status, the HTTP status code (http only) and why it failed."""

    status: str
    status_code: int | None = None
    error: str | None = None


HealthReporter = Callable[[ServicePod, ProbeResult], Awaitable[None]]
Target = Callable[[ServicePod, ContainerFacts, int], tuple[str | None, int]]


async def probe_http(host: str, port: int, uri: str, timeout: float) -> ProbeResult:  # noqa: ASYNC109
    """GET ``http://host:port/uri`` (HTTP/1.0); 2xx and 3xx are healthy (no redirects followed).

    Only the status line matters, so a plain socket does: no client (nor TLS context) per probe.
    """
    path = uri if uri.startswith("/") else f"/{uri}"
    url = f"http://{host}:{port}{path}"
    request = (
        f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kontena-agent\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
    except TimeoutError:
        return ProbeResult(UNHEALTHY, None, f"GET {url} failed: no answer within {timeout:g} s")
    except OSError as exc:
        return ProbeResult(UNHEALTHY, None, f"GET {url} failed: {exc or type(exc).__name__}")
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    parts = status_line.decode("latin-1").split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return ProbeResult(UNHEALTHY, None, f"GET {url} failed: not an HTTP answer")
    code = int(parts[1])
    if 200 <= code < 400:
        return ProbeResult(HEALTHY, code)
    return ProbeResult(UNHEALTHY, code, f"GET {url} answered {code}")


async def probe_tcp(host: str, port: int, timeout: float) -> ProbeResult:  # noqa: ASYNC109
    """A TCP connect to ``host:port`` within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        return ProbeResult(UNHEALTHY, None, f"TCP connect to {host}:{port} failed: {why}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(HEALTHY)


async def probe(check: PodHealthCheck, host: str | None, port: int) -> ProbeResult:
    """Run the pod's check once against ``host:port``."""
    if host is None:
        return ProbeResult(UNHEALTHY, None, "the container has no address to probe")
    timeout = float(check.timeout) if check.timeout > 0 else MIN_INTERVAL
    if check.protocol == "http":
        return await probe_http(host, port, check.uri or "/", timeout)
    return await probe_tcp(host, port, timeout)


class HealthMonitor:
    """Probes one pod's container while the worker says it runs (``watch``/``unwatch``)."""

    def __init__(
        self, pod_id: str, *, report: HealthReporter, restart: Callable[[], None], target: Target
    ) -> None:
        self.pod_id = pod_id
        self._report = report
        self._restart = restart
        self._target = target
        self._task: asyncio.Task[None] | None = None
        self._key: tuple[str, datetime | None] | None = None
        self._pod: ServicePod | None = None
        self._container: ContainerFacts | None = None
        self._last: ProbeResult | None = None
        self._changed = asyncio.Event()
        self.probes = 0  # how many probes ran (logs and tests)

    def watch(self, pod: ServicePod, container: ContainerFacts) -> None:
        """Check ``container`` for ``pod``; a new container (or start) begins a new schedule."""
        assert pod.health_check is not None
        key = (container.id, container.started_at)
        previous = self._pod
        if key != self._key or self._task is None or self._task.done():
            self.unwatch()
            self._key, self._pod, self._container, self._last = key, pod, container, None
            self._changed.clear()
            self._task = asyncio.create_task(self._run(), name=f"health {self.pod_id}")
            return
        self._pod, self._container = pod, container
        if previous is not None and previous.deploy_rev != pod.deploy_rev:
            # Same container, new deploy: its health is what it was; say so at the new rev now
            # instead of one interval later (the deploy waits for it).
            self._changed.set()

    def unwatch(self) -> None:
        """Stop probing (the container stopped, went away or the pod lost its check)."""
        if self._task is not None:
            self._task.cancel()
        self._task, self._key, self._last = None, None, None

    async def close(self) -> None:
        """Stop and wait for the probing task."""
        task = self._task
        self.unwatch()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        pod, container = self._pod, self._container
        assert pod is not None and pod.health_check is not None and container is not None
        started = container.started_at or datetime.now(UTC)
        age = (datetime.now(UTC) - started).total_seconds()
        next_probe = time.monotonic() + max(0.0, pod.health_check.initial_delay - age)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_probe - time.monotonic())):
                    await self._changed.wait()
            pod, container = self._pod, self._container
            assert pod is not None and pod.health_check is not None and container is not None
            if self._changed.is_set():
                self._changed.clear()
                if self._last is not None:
                    await self._send(pod, self._last)
                continue
            check = pod.health_check
            host, port = self._target(pod, container, check.port)
            result = await probe(check, host, port)
            self.probes += 1
            self._last = result
            next_probe = time.monotonic() + max(float(check.interval), MIN_INTERVAL)
            await self._send(pod, result)
            if result.status == UNHEALTHY:
                log.info("pod %s is unhealthy (%s): restarting it", self.pod_id, result.error)
                self._restart()

    async def _send(self, pod: ServicePod, result: ProbeResult) -> None:
        try:
            await self._report(pod, result)
        except Exception as exc:  # the next probe reports again
            log.warning("reporting the health of pod %s failed: %s", self.pod_id, exc)
