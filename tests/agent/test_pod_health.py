"""Health probes and the monitor's schedule against small servers on 127.0.0.1 (no Docker).

Real containers are probed in tests/agent/test_pod_hooks_health.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import msgspec

from agent.pod_health import HealthMonitor, ProbeResult, probe_http, probe_tcp
from agent.pod_plan import ContainerFacts
from core.protocol import ServicePod

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on a free loopback port; yields the port."""
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


def answering(status_line: bytes) -> Handler:
    """A handler that reads the request head and answers ``status_line``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(status_line + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts and never answers (until the client hangs up)."""
    await reader.read()
    writer.close()


async def test_http_probes_accept_2xx_and_3xx_only() -> None:
    async with server(answering(b"HTTP/1.1 302 Found")) as port:
        assert await probe_http("127.0.0.1", port, "/", 1) == ProbeResult("healthy", 302)
    async with server(answering(b"HTTP/1.0 503 Service Unavailable")) as port:
        result = await probe_http("127.0.0.1", port, "health", 1)
    why = f"GET http://127.0.0.1:{port}/health answered 503"
    assert result == ProbeResult("unhealthy", 503, why)
    async with server(answering(b"SSH-2.0-OpenSSH")) as port:
        result = await probe_http("127.0.0.1", port, "/", 1)
    assert result.error == f"GET http://127.0.0.1:{port}/ failed: not an HTTP answer"
    async with server(silent) as port:
        result = await probe_http("127.0.0.1", port, "/", 0.2)
    assert result.error == f"GET http://127.0.0.1:{port}/ failed: no answer within 0.2 s"
    async with server(silent) as port:
        assert (await probe_tcp("127.0.0.1", port, 1)).status == "healthy"
    # The server is closed now: nothing listens there any more.
    refused = await probe_tcp("127.0.0.1", port, 1)
    assert refused.status == "unhealthy"
    assert str(refused.error).startswith(f"TCP connect to 127.0.0.1:{port} failed")


def pod(rev: str, port: int) -> ServicePod:
    """A pod whose check probes ``port`` on 127.0.0.1 at once, then hourly."""
    check = {"protocol": "http", "port": port, "timeout": 1, "interval": 3600, "initial_delay": 0}
    return msgspec.convert(
        {
            "id": "svc/1",
            "service_id": "svc",
            "service_name": "svc",
            "instance_number": 1,
            "desired_state": "running",
            "deploy_rev": rev,
            "service_revision": 1,
            "image_name": "busybox",
            "grid_name": "g",
            "health_check": check,
        },
        ServicePod,
    )


def facts(container_id: str = "c1") -> ContainerFacts:
    """A container that started a minute ago."""
    started = datetime.now(UTC) - timedelta(minutes=1)
    return ContainerFacts(container_id, "svc-1", "running", "busybox", "sha", started_at=started)


async def test_the_monitor_reports_resends_on_a_new_rev_and_restarts_when_unhealthy() -> None:
    reports: list[tuple[str, str]] = []
    restarts: list[bool] = []
    changed = asyncio.Event()

    async def report(p: ServicePod, result: ProbeResult) -> None:
        reports.append((p.deploy_rev, result.status))
        changed.set()

    async def until(count: int) -> None:
        async with asyncio.timeout(10):
            while len(reports) < count:
                changed.clear()
                await changed.wait()

    monitor = HealthMonitor(
        "svc/1",
        report=report,
        restart=lambda: restarts.append(True),
        target=lambda p, c, port: ("127.0.0.1", port),
    )
    try:
        container = facts()
        async with server(answering(b"HTTP/1.0 200 OK")) as port:
            monitor.watch(pod("r1", port), container)
            await until(1)
            # Same container, new deploy: the last result again at once, no new probe.
            monitor.watch(pod("r2", port), container)
            await until(2)
            assert monitor.probes == 1
        assert reports == [("r1", "healthy"), ("r2", "healthy")]
        assert restarts == []

        async with server(answering(b"HTTP/1.0 500 Oops")) as port:
            monitor.watch(pod("r2", port), facts("c2"))  # a new container: a new schedule
            await until(3)
        assert reports[-1] == ("r2", "unhealthy")
        assert restarts == [True]
    finally:
        await monitor.close()
