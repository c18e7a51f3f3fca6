"""Stateful pods keep their data in a data container (reference §3.9).

The agent creates ``<container>-volumes`` from the pod's image, never started, holding every
anonymous volume of the pod (its ``/path`` volumes and the image's own ``VOLUME``s), and the
pod's container mounts them with ``volumes_from``. Re-creating the pod's container (new
revision, new image) therefore keeps the data; only terminating the pod removes the data
container and its volumes.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from docker.errors import DockerException, NotFound

from core.protocol import DATA_LABEL_POD, DATA_LABEL_TYPE, POD_LABEL_GRID, ServicePod

log = logging.getLogger(__name__)


class ContainerApi(Protocol):
    """A low-level docker SDK call run off the event loop (agent.docker_client.DockerEngine)."""

    async def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """``docker.APIClient.<fn>(*args, **kwargs)`` in a worker thread."""
        ...


class DataContainerError(Exception):
    """The data container could not be created; the message names it."""


def data_container_name(pod: ServicePod) -> str:
    """``<service_name>-<n>-volumes``, as Kontena named it."""
    return f"{pod.container_name}-volumes"


def anonymous_paths(pod: ServicePod) -> list[str]:
    """The pod's anonymous volumes (``/path``, no host path and no volume name)."""
    return [v.path for v in pod.volumes if not (v.bind_mount or v.name)]


def data_container_args(pod: ServicePod) -> dict[str, Any]:
    """Keyword arguments of ``APIClient.create_container`` for the pod's data container."""
    return {
        "image": pod.image_name,
        "name": data_container_name(pod),
        # Never started; an entrypoint anyway, since Docker refuses images without a command.
        "entrypoint": ["/bin/true"],
        "volumes": anonymous_paths(pod) or None,
        "labels": {
            DATA_LABEL_TYPE: "volume",
            DATA_LABEL_POD: pod.id,
            POD_LABEL_GRID: pod.grid_name,
        },
        "detach": True,
    }


def volumes_from(pod: ServicePod) -> list[str]:
    """The pod's ``volumes_from``, plus its data container when it is stateful."""
    if not pod.stateful:
        return list(pod.volumes_from)
    return [*pod.volumes_from, data_container_name(pod)]


async def ensure_data_container(api: ContainerApi, pod: ServicePod) -> None:
    """Create the pod's data container unless it exists (an existing one keeps its data)."""
    name = data_container_name(pod)
    try:
        await api.call("inspect_container", name)
        return
    except NotFound:
        pass
    try:
        await api.call("create_container", **data_container_args(pod))
    except DockerException as exc:
        raise DataContainerError(f"creating data container {name} failed: {exc}") from exc
    log.info("pod %s: created data container %s", pod.id, name)


async def remove_data_containers(api: ContainerApi, pod_id: str) -> None:
    """Remove the pod's data container and its volumes (the pod was terminated)."""
    found = await api.call("containers", all=True, filters={"label": f"{DATA_LABEL_POD}={pod_id}"})
    for container in found:
        try:
            await api.call("remove_container", container["Id"], force=True, v=True)
        except NotFound:
            continue
        log.info("pod %s: removed its data container", pod_id)
