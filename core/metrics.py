"""Prometheus metrics in the text exposition format (0.0.4), without prometheus_client.

HTTP metrics are counted in-process (each API replica exposes its own: scrape the replicas, not
the proxy). Everything else is read from the database and the queues at scrape time, so any
replica answers the same.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.queues import QueuesReport
from core.work import registered
from models.acme import Certificate
from models.base import utcnow
from models.grids import Grid
from models.nodes import Node
from models.services import ServiceDeploy

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEPLOY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Deploy durations are summarised over the newest finished deploys, not all of history.
DEPLOY_SAMPLE = 1000

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    items = ",".join(f'{name}="{_escape(value)}"' for name, value in labels)
    return "{" + items + "}" if items else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Family:
    """One metric family being rendered: HELP, TYPE and its samples."""

    name: str
    kind: str
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        """Add a sample ``<name><suffix>{labels} value``."""
        self.samples.append((suffix, tuple(labels.items()), value))

    def render(self) -> str:
        """The family's lines."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{self.name}{s}{_labels(lab)} {_number(v)}" for s, lab, v in self.samples]
        return "\n".join(lines)


def histogram(
    family: Family, values: Sequence[float], buckets: Sequence[float], **labels: str
) -> None:
    """Add the cumulative buckets, _sum and _count of ``values`` to ``family``."""
    for bound in (*buckets, math.inf):
        le = "+Inf" if math.isinf(bound) else _number(bound)
        family.add(sum(1 for v in values if v <= bound), "_bucket", **labels, le=le)
    family.add(sum(values), "_sum", **labels)
    family.add(len(values), "_count", **labels)


class HttpMetrics:
    """Request counts and latency histograms by method, route template and status."""

    def __init__(self, buckets: Sequence[float] = HTTP_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()
        # key -> (per-bucket counts, sum, count)
        self._series: dict[Labels, tuple[list[int], float, int]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        key: Labels = (("method", method), ("route", route), ("status", str(status)))
        with self._lock:
            counts, total, count = self._series.get(key, ([0] * len(self.buckets), 0.0, 0))
            for i, bound in enumerate(self.buckets):
                if seconds <= bound:
                    counts[i] += 1
            self._series[key] = (counts, total + seconds, count + 1)

    def families(self) -> list[Family]:
        """The request counter and the latency histogram."""
        requests = Family("kontena_http_requests_total", "counter", "HTTP requests answered.")
        latency = Family(
            "kontena_http_request_duration_seconds", "histogram", "HTTP request latency."
        )
        with self._lock:
            series = sorted(self._series.items())
        for key, (counts, total, count) in series:
            labels = dict(key)
            requests.add(count, **labels)
            for bound, n in zip(self.buckets, counts, strict=True):
                latency.add(n, "_bucket", **labels, le=_number(bound))
            latency.add(count, "_bucket", **labels, le="+Inf")
            latency.add(total, "_sum", **labels)
            latency.add(count, "_count", **labels)
        return [requests, latency]


# One per process: the API's middleware feeds it.
HTTP = HttpMetrics()


async def database_families(session: AsyncSession) -> list[Family]:
    """Deploys by outcome and duration, connected nodes per grid, work rows by state."""
    deploys = Family("kontena_deploys", "gauge", "Service deploys by state.")
    for state, count in await session.execute(
        select(ServiceDeploy.state, func.count()).group_by(ServiceDeploy.state)
    ):
        deploys.add(count, state=state)
    durations = Family(
        "kontena_deploy_duration_seconds",
        "histogram",
        f"Duration of the newest {DEPLOY_SAMPLE} finished deploys, by outcome.",
    )
    finished = (
        await session.execute(
            select(ServiceDeploy.state, ServiceDeploy.started_at, ServiceDeploy.finished_at)
            .where(ServiceDeploy.finished_at.is_not(None), ServiceDeploy.started_at.is_not(None))
            .order_by(ServiceDeploy.finished_at.desc())
            .limit(DEPLOY_SAMPLE)
        )
    ).all()
    by_state: dict[str, list[float]] = {}
    for state, started, ended in finished:
        if started is not None and ended is not None:  # filtered in SQL; mypy cannot know
            by_state.setdefault(state, []).append(max(0.0, (ended - started).total_seconds()))
    for state, values in sorted(by_state.items()):
        histogram(durations, values, DEPLOY_BUCKETS, state=state)
    nodes = Family("kontena_connected_nodes", "gauge", "Nodes connected to the master, per grid.")
    for grid, count in await session.execute(
        select(Grid.name, func.count(Node.id))
        .select_from(Grid)
        .outerjoin(Node, (Node.grid_id == Grid.id) & Node.connected.is_(True))
        .group_by(Grid.name)
        .order_by(Grid.name)
    ):
        nodes.add(count, grid=grid)
    work = Family("kontena_work_rows", "gauge", "Work rows (job outcomes) by kind and state.")
    for kind in sorted(registered(), key=lambda k: k.name):
        for state, count in await session.execute(
            select(kind.model.state, func.count()).group_by(kind.model.state)
        ):
            work.add(count, kind=kind.name, state=state)
    expiry = Family(
        "kontena_certificate_expiry_days", "gauge", "Days until each certificate expires."
    )
    now = utcnow()
    for grid, subject, valid_until in await session.execute(
        select(Grid.name, Certificate.subject, Certificate.valid_until)
        .join(Grid, Grid.id == Certificate.grid_id)
        .order_by(Grid.name, Certificate.subject)
    ):
        expiry.add(
            round((valid_until - now).total_seconds() / 86400, 3), grid=grid, subject=subject
        )
    return [deploys, durations, nodes, work, expiry]


def queue_families(report: QueuesReport) -> list[Family]:
    """Queue depth by kind of backlog and the oldest ready message's age."""
    depth = Family("kontena_queue_messages", "gauge", "Messages per queue and status.")
    age = Family(
        "kontena_queue_oldest_ready_age_seconds", "gauge", "Age of the oldest ready message."
    )
    for queue in report.queues:
        for status in ("ready", "delayed", "in_progress", "dead"):
            depth.add(getattr(queue, status), queue=queue.name, status=status)
        age.add(queue.oldest_ready_age or 0.0, queue=queue.name)
    workers = Family("kontena_queue_workers", "gauge", "Broker processes with a live heartbeat.")
    if not report.embedded:
        workers.add(len(report.workers))
    return [depth, age, workers]


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families``."""
    return "\n".join(family.render() for family in families) + "\n"
