"""Pure decisions of pod reconciliation: given a pod and a container's facts, what to do.

Nothing here talks to Docker or the master, so every rule is table-tested
(tests/agent/test_pod_plan.py). The worker (agent.pod_worker) gathers the facts and runs the
actions in order.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.protocol import (
    POD_LABEL_DEPLOY_REV,
    POD_LABEL_INSTANCE,
    POD_LABEL_SERVICE_ID,
    POD_LABEL_SERVICE_REVISION,
    ServicePod,
)

RUNNING, STOPPED, TERMINATED = "running", "stopped", "terminated"
# Docker statuses in which the container's process exists (or Docker is about to restart it).
UP_STATUSES = frozenset({"running", "restarting", "paused"})


class Action(enum.StrEnum):
    """One step of a reconciliation, run in list order."""

    PULL = "pull"  # make sure the image exists locally (pull only when missing)
    STOP = "stop"
    REMOVE = "remove"
    CREATE = "create"
    START = "start"
    RESTART = "restart"


@dataclass(frozen=True)
class ContainerFacts:
    """What the worker needs to know about a pod's container (from ``docker inspect``)."""

    id: str
    name: str
    status: str  # created, running, paused, restarting, removing, exited, dead
    image_name: str  # Config.Image: the reference the container was created from
    image_id: str  # the image id (sha256:...) it runs
    labels: Mapping[str, str] = field(default_factory=dict)
    error: str = ""  # State.Error: set when Docker failed to start it
    started_at: datetime | None = None
    ip: str | None = None

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> ContainerFacts:
        """Build from the Engine's inspect document."""
        state = data.get("State") or {}
        config = data.get("Config") or {}
        return cls(
            id=str(data["Id"]),
            name=str(data.get("Name") or "").lstrip("/"),
            status=str(state.get("Status") or ""),
            image_name=str(config.get("Image") or ""),
            image_id=str(data.get("Image") or ""),
            labels=dict(config.get("Labels") or {}),
            error=str(state.get("Error") or ""),
            started_at=parse_docker_time(state.get("StartedAt")),
            ip=container_ip(data.get("NetworkSettings") or {}),
        )

    @property
    def up(self) -> bool:
        """True when the container runs (or Docker is restarting it)."""
        return self.status in UP_STATUSES

    @property
    def revision(self) -> int | None:
        """The service revision the container was created for (None: unlabelled)."""
        try:
            return int(self.labels.get(POD_LABEL_SERVICE_REVISION, ""))
        except ValueError:
            return None

    @property
    def deploy_rev(self) -> str | None:
        """The deploy revision the container was created for."""
        return self.labels.get(POD_LABEL_DEPLOY_REV)

    @property
    def pod_id(self) -> str | None:
        """``<service_id>/<instance_number>`` from the labels, or None for foreign containers."""
        return pod_id_of(self.labels)


def pod_id_of(labels: Mapping[str, str]) -> str | None:
    """The pod id a container's labels name, or None when they name none."""
    service_id = labels.get(POD_LABEL_SERVICE_ID)
    instance = labels.get(POD_LABEL_INSTANCE, "")
    if not service_id or not instance.isdigit():
        return None
    return f"{service_id}/{int(instance)}"


def parse_docker_time(value: object) -> datetime | None:
    """Docker's RFC 3339 nanosecond times; the zero time ("0001-01-01...") means never."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    text = value.replace("Z", "+00:00")
    # Python keeps at most 6 fractional digits; Docker sends 9.
    if "." in text:
        head, rest = text.split(".", 1)
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def container_ip(network: Mapping[str, Any]) -> str | None:
    """The container's address on its first network that has one."""
    if network.get("IPAddress"):
        return str(network["IPAddress"])
    for settings in (network.get("Networks") or {}).values():
        if settings and settings.get("IPAddress"):
            return str(settings["IPAddress"])
    return None


def recreate_reason(
    pod: ServicePod, container: ContainerFacts, image_id: str | None = None
) -> str | None:
    """Why the container must be replaced to run ``pod`` (None: it can be kept).

    ``image_id`` is the local id of ``pod.image_name`` when the worker checked it (it does so
    when ``deploy_rev`` changed); None means "not checked".
    """
    revision = container.revision
    if revision is None or revision < pod.service_revision:
        return f"service revision {revision} < {pod.service_revision}"
    if container.image_name != pod.image_name:
        return f"image {container.image_name} != {pod.image_name}"
    if container.status == "dead" or (container.error and not container.up):
        return f"container failed: {container.error or container.status}"
    if image_id is not None and image_id != container.image_id:
        return f"image {pod.image_name} was updated"
    return None


def image_check_needed(
    pod: ServicePod, container: ContainerFacts | None, checked_rev: str | None
) -> bool:
    """A new deploy_rev of a running pod re-checks its image once (reference §7.4)."""
    return (
        pod.desired_state == RUNNING
        and container is not None
        and container.deploy_rev != pod.deploy_rev
        and checked_rev != pod.deploy_rev
    )


def decide(
    pod: ServicePod | None,
    container: ContainerFacts | None,
    *,
    image_id: str | None = None,
    restart: bool = False,
) -> list[Action]:
    """The actions that make ``container`` match ``pod`` (None: the pod is no longer listed)."""
    if pod is None or pod.desired_state == TERMINATED:
        if container is None:
            return []
        return [Action.STOP, Action.REMOVE] if container.up else [Action.REMOVE]
    if pod.desired_state == STOPPED:
        return [Action.STOP] if container is not None and container.up else []
    if pod.desired_state != RUNNING:
        return []
    if container is None:
        return [Action.PULL, Action.CREATE, Action.START]
    if recreate_reason(pod, container, image_id) is not None:
        stop = [Action.STOP] if container.up else []
        return [Action.PULL, *stop, Action.REMOVE, Action.CREATE, Action.START]
    if not container.up:
        return [Action.START]
    if restart:
        return [Action.RESTART]
    return []


def observed_state(pod: ServicePod, container: ContainerFacts | None) -> str:
    """The ``PodState.state`` to report for what Docker shows now."""
    if container is None:
        return TERMINATED if pod.desired_state == TERMINATED else "missing"
    if container.status == "running":
        return RUNNING
    if container.status == "restarting":
        return "restarting"
    return STOPPED
