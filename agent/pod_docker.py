"""Service pod containers in Docker: the create spec (pure) and the Engine calls of a worker."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from docker.errors import APIError, DockerException, NotFound

from agent.pod_data import (
    DataContainerError,
    anonymous_paths,
    ensure_data_container,
    remove_data_containers,
    volumes_from,
)
from agent.pod_plan import ContainerFacts
from agent.volumes import VolumeError, ensure_volume
from core.protocol import (
    POD_LABEL_DEPLOY_REV,
    POD_LABEL_GRID,
    POD_LABEL_INSTANCE,
    POD_LABEL_SERVICE_ID,
    POD_LABEL_SERVICE_NAME,
    POD_LABEL_SERVICE_REVISION,
    POD_LABEL_STACK,
    ServicePod,
)

log = logging.getLogger(__name__)

# Docker restarts crashed pods itself (backoff from 100 ms doubling to 1 min, reset after 10 s
# up); a container the agent stopped stays stopped, also across daemon restarts.
RESTART_POLICY = {"Name": "unless-stopped"}


class ContainerApi(Protocol):
    """A low-level docker SDK call run off the event loop (agent.docker_client.DockerEngine)."""

    async def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """``docker.APIClient.<fn>(*args, **kwargs)`` in a worker thread."""
        ...


class PodError(Exception):
    """A Docker step failed; the message is what the master shows for the instance."""


def docker_error(exc: Exception) -> str:
    """The daemon's own words when it gave some (``explanation``), else the exception text."""
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc) or type(exc).__name__


def bare_service_name(pod: ServicePod) -> str:
    """``svc`` out of ``stack.svc``."""
    prefix = f"{pod.stack_name}."
    if pod.stack_name != "null" and pod.service_name.startswith(prefix):
        return pod.service_name[len(prefix) :]
    return pod.service_name


def pod_labels(pod: ServicePod) -> dict[str, str]:
    """The pod's own labels plus the io.kontena.* labels that tie the container to it."""
    labels = dict(pod.labels)
    # Ours come last so a service label cannot impersonate another pod.
    labels.update(
        {
            POD_LABEL_SERVICE_ID: pod.service_id,
            POD_LABEL_SERVICE_NAME: bare_service_name(pod),
            POD_LABEL_INSTANCE: str(pod.instance_number),
            POD_LABEL_DEPLOY_REV: pod.deploy_rev,
            POD_LABEL_SERVICE_REVISION: str(pod.service_revision),
            POD_LABEL_STACK: pod.stack_name,
            POD_LABEL_GRID: pod.grid_name,
        }
    )
    return labels


def pod_env(pod: ServicePod, node_name: str) -> list[str]:
    """The service env plus the KONTENA_* variables (a service value of the same name wins)."""
    kontena = {
        "KONTENA_SERVICE_ID": pod.service_id,
        "KONTENA_SERVICE_NAME": bare_service_name(pod),
        "KONTENA_GRID_NAME": pod.grid_name,
        "KONTENA_PLATFORM_NAME": pod.grid_name,
        "KONTENA_STACK_NAME": pod.stack_name,
        "KONTENA_NODE_NAME": node_name,
        "KONTENA_SERVICE_INSTANCE_NUMBER": str(pod.instance_number),
    }
    present = {item.split("=", 1)[0] for item in pod.env}
    return [*pod.env, *(f"{k}={v}" for k, v in kontena.items() if k not in present)]


def volume_binds(pod: ServicePod) -> list[str]:
    """``src:path[:flags]`` for bind mounts and named volumes (anonymous ones are not binds)."""
    binds = []
    for volume in pod.volumes:
        source = volume.bind_mount or volume.name
        if source:
            binds.append(f"{source}:{volume.path}" + (f":{volume.flags}" if volume.flags else ""))
    return binds


def host_config_args(pod: ServicePod) -> dict[str, Any]:
    """Keyword arguments of ``APIClient.create_host_config`` for the pod."""
    bindings: dict[str, list[tuple[str, int]]] = {}
    for port in pod.ports:
        bindings.setdefault(f"{port.container_port}/{port.protocol}", []).append(
            (port.ip, port.node_port)
        )
    args: dict[str, Any] = {
        "port_bindings": bindings,
        "binds": volume_binds(pod) or None,
        "volumes_from": volumes_from(pod) or None,
        "privileged": pod.privileged,
        "cap_add": pod.cap_add or None,
        "cap_drop": pod.cap_drop or None,
        "devices": pod.devices or None,
        "network_mode": pod.net,
        "pid_mode": pod.pid,
        "read_only": pod.read_only,
        "mem_limit": pod.memory,
        "memswap_limit": pod.memory_swap,
        "shm_size": pod.shm_size,
        "cpu_shares": pod.cpu_shares,
        "nano_cpus": int(pod.cpus * 1e9) if pod.cpus else None,
        "restart_policy": RESTART_POLICY,
        # PID 1 = docker-init: forwards signals and reaps, so a stop takes ~0.1 s, not the grace.
        "init": True,
    }
    if pod.log_driver:
        args["log_config"] = {"type": pod.log_driver, "config": dict(pod.log_opts)}
    return {k: v for k, v in args.items() if v is not None}


def create_args(pod: ServicePod, node_name: str) -> dict[str, Any]:
    """Keyword arguments of ``APIClient.create_container`` (without ``host_config``)."""
    args: dict[str, Any] = {
        "image": pod.image_name,
        "name": pod.container_name,
        "command": pod.cmd,
        "entrypoint": pod.entrypoint,
        "environment": pod_env(pod, node_name),
        "labels": pod_labels(pod),
        "ports": [(p.container_port, p.protocol) for p in pod.ports] or None,
        # Anonymous volumes: Docker creates one per path (kept until the container is removed);
        # a stateful pod gets them from its data container instead (agent.pod_data).
        "volumes": (None if pod.stateful else anonymous_paths(pod)) or None,
        "user": pod.user,
        "stop_signal": pod.stop_signal,
        "stop_timeout": pod.stop_grace_period,
        "detach": True,
    }
    # Docker refuses a hostname in the host's UTS namespace.
    if pod.hostname and pod.net != "host":
        args["hostname"] = pod.hostname
    if pod.domainname:
        args["domainname"] = pod.domainname
    return {k: v for k, v in args.items() if v is not None}


class PodDocker:
    """The Engine operations on pod containers; Docker failures become PodError."""

    def __init__(self, api: ContainerApi) -> None:
        self.api = api

    async def pod_containers(self, labels: list[str]) -> list[dict[str, Any]]:
        """Summaries (``docker ps -a``) of containers carrying every label in ``labels``."""
        found: list[dict[str, Any]] = await self.api.call(
            "containers", all=True, filters={"label": labels}
        )
        return found

    async def inspect(self, container_id: str) -> ContainerFacts | None:
        """The container's facts, or None when it is gone."""
        try:
            data = await self.api.call("inspect_container", container_id)
        except NotFound:
            return None
        return ContainerFacts.from_inspect(data)

    async def image_id(self, image: str) -> str | None:
        """The local id of ``image``, or None when it is not present."""
        try:
            data = await self.api.call("inspect_image", image)
        except NotFound:
            return None
        return str(data["Id"])

    async def ensure_image(self, pod: ServicePod) -> str:
        """The image's local id; pulls (with the pod's credentials) only when it is missing."""
        image_id = await self.image_id(pod.image_name)
        if image_id is not None:
            return image_id
        log.info("pulling image %s", pod.image_name)
        try:
            await self.api.call("pull", pod.image_name, auth_config=pod.image_credentials)
        except DockerException as exc:
            raise PodError(f"pulling image {pod.image_name} failed: {docker_error(exc)}") from exc
        image_id = await self.image_id(pod.image_name)
        if image_id is None:
            # The pull stream carried the error instead of the HTTP status.
            raise PodError(f"image {pod.image_name} not found (pull did not produce it)")
        return image_id

    async def create(self, pod: ServicePod, node_name: str) -> str:
        """Create the pod's container; returns its id."""
        try:
            await self.ensure_volumes(pod)
            host_config = await self.api.call("create_host_config", **host_config_args(pod))
            created = await self.api.call(
                "create_container", host_config=host_config, **create_args(pod, node_name)
            )
        except DockerException as exc:
            raise PodError(
                f"creating container {pod.container_name} failed: {docker_error(exc)}"
            ) from exc
        return str(created["Id"])

    async def ensure_volumes(self, pod: ServicePod) -> None:
        """Create what the pod mounts: a stateful pod's data container, missing named volumes.

        Hook containers mount the same, so pre_start hooks call this before the pod's
        container exists (on a first deploy the data container does not exist yet either).
        """
        if pod.stateful:
            try:
                await ensure_data_container(self.api, pod)
            except DataContainerError as exc:
                raise PodError(str(exc)) from exc
        for volume in pod.volumes:
            if volume.name and not volume.bind_mount:
                try:
                    await ensure_volume(self.api, volume)
                except VolumeError as exc:
                    raise PodError(str(exc)) from exc

    async def remove_data(self, pod_id: str) -> None:
        """Remove a terminated pod's data container (stateful pods have one)."""
        try:
            await remove_data_containers(self.api, pod_id)
        except DockerException as exc:
            raise PodError(f"removal of the data container of {pod_id} failed: {exc}") from exc

    async def step(self, what: str, fn: str, container: str, name: str, **kwargs: Any) -> None:
        """One container operation (start, stop, restart, remove); NotFound is not an error."""
        try:
            await self.api.call(fn, container, **kwargs)
        except NotFound:
            log.debug("%s %s: container already gone", what, name)
        except DockerException as exc:
            raise PodError(f"{what} of container {name} failed: {docker_error(exc)}") from exc
