"""The service pod of an instance: what its agent is asked to run (reference §7.4).

A pod is built from the service spec every time an agent lists its pods, so a changed secret or
registry password reaches the node on the next deploy without being stored anywhere in plain
text. Secrets and registry credentials are looked up once per service (:class:`PodInputs`).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core.acme_pods import acme_pod_env
from core.protocol import (
    POD_LABEL_GRID,
    POD_LABEL_INSTANCE,
    POD_LABEL_SERVICE_ID,
    POD_LABEL_SERVICE_NAME,
    POD_LABEL_STACK,
    ServicePod,
)
from core.registries import registry_credentials_for_image
from core.secrets import resolve_service_secrets
from core.service_volumes import VolumeRef, service_volume_refs
from core.service_volumes import pod_volumes as _pod_volumes
from core.vault import Vault
from models import Grid, Node, Service, ServiceInstance
from models.services import NULL_STACK

POD_LABEL_PLATFORM = "io.kontena.platform.name"


class PodError(ValueError):
    """The service spec cannot be turned into a pod (a bad value slipped into the spec)."""


def pod_service_name(service: Service) -> str:
    """``svc`` for a stack-less service, ``stack.svc`` otherwise (container names start so)."""
    return service.name if service.stack == NULL_STACK else f"{service.stack}.{service.name}"


@dataclass
class PodInputs:
    """What a service's pods need from the vault: secret env and image pull credentials."""

    secret_env: list[str] = field(default_factory=list)
    image_credentials: dict[str, str] | None = None
    # The grid volumes the spec's ``name:/path`` mounts stand for, by the name the spec uses.
    volumes: dict[str, VolumeRef] = field(default_factory=dict)


async def load_pod_inputs(
    session: AsyncSession, vault: Vault, grid: Grid, service: Service
) -> PodInputs:
    """Resolve the service's secrets and registry credentials.

    Raises core.secrets.MissingSecretError naming every secret the grid does not hold.
    """
    refs = service.spec.get("secrets") or []
    resolved = await resolve_service_secrets(session, vault, grid, refs)
    credentials = await registry_credentials_for_image(session, vault, grid, service.image)
    return PodInputs(
        # Certificates and http-01 challenges travel like secrets (reference §6.1).
        secret_env=secret_env(resolved) + await acme_pod_env(session, vault, grid, service),
        image_credentials=(
            {k: v for k, v in credentials.items() if v is not None} if credentials else None
        ),
        volumes=await service_volume_refs(session, service),
    )


def secret_env(resolved: Sequence[Mapping[str, str]]) -> list[str]:
    """``NAME=value`` entries; several secrets mapped to one name are joined with newlines."""
    values: dict[str, list[str]] = {}
    for item in resolved:
        if item.get("type", "env") == "env":
            values.setdefault(item["name"], []).append(item["value"])
    return [f"{name}={chr(10).join(parts)}" for name, parts in values.items()]


def _command(value: Any) -> list[str] | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list):
        return [str(part) for part in value]
    raise PodError(f"a command must be a string or a list, not {type(value).__name__}")


def _env(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [f"{k}={v}" for k, v in value.items()]
    return [str(item) for item in value or []]


def _labels(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    labels: dict[str, str] = {}
    for item in value or []:
        key, _, val = str(item).partition("=")
        labels[key] = val
    return labels


def parse_port(value: Any) -> dict[str, Any]:
    """A spec port: a ``{container_port, node_port, protocol, ip}`` dict or ``ip:node:cport``."""
    if isinstance(value, Mapping):
        return dict(value)
    text, _, protocol = str(value).partition("/")
    parts = text.rsplit(":", 2)
    if len(parts) == 3:
        ip, node, container = parts
    elif len(parts) == 2:
        ip, (node, container) = "0.0.0.0", parts  # noqa: S104 - Kontena's default
    else:
        raise PodError(f"port {value!r} is not node_port:container_port")
    return {
        "ip": ip,
        "node_port": int(node),
        "container_port": int(container),
        "protocol": protocol or "tcp",
    }


def spec_ports(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The service's published ports as dicts."""
    return [parse_port(port) for port in spec.get("ports") or []]


def _seconds(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip().lower()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return int(float(text[: -len(unit)]) * units[unit])
    return int(float(text))


def kontena_env(grid: Grid, service: Service, number: int, node: Node | None) -> list[str]:
    """The ``KONTENA_*`` variables every container of a service gets."""
    return [
        f"KONTENA_SERVICE_ID={service.id}",
        f"KONTENA_SERVICE_NAME={service.name}",
        f"KONTENA_GRID_NAME={grid.name}",
        f"KONTENA_PLATFORM_NAME={grid.name}",
        f"KONTENA_STACK_NAME={service.stack}",
        f"KONTENA_NODE_NAME={node.name if node else ''}",
        f"KONTENA_SERVICE_INSTANCE_NUMBER={number}",
    ]


HEALTH_CHECK_LABEL = "io.kontena.health_check."
HEALTH_CHECK_KEYS = ("protocol", "port", "uri", "timeout", "interval", "initial_delay")


def health_check_of(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The service's health check when it has one to probe (protocol and port), else None."""
    check = spec.get("health_check")
    if not isinstance(check, Mapping) or not check.get("protocol") or not check.get("port"):
        return None
    return {key: check[key] for key in HEALTH_CHECK_KEYS if check.get(key) is not None}


def hooks_for_instance(spec: Mapping[str, Any], number: int) -> list[dict[str, Any]]:
    """The hooks instance ``number`` runs: ``instances`` is ``*`` or names it; oneshot hooks
    already run there (their ``done`` list holds the number) are left out."""
    hooks = []
    for hook in spec.get("hooks") or []:
        instances = [str(item).strip() for item in hook.get("instances") or ["*"]]
        if "*" not in instances and str(number) not in instances:
            continue
        if hook.get("oneshot") and number in (hook.get("done") or []):
            continue
        hooks.append(
            {
                "name": hook["name"],
                "type": hook["type"],
                "cmd": hook["cmd"],
                "oneshot": bool(hook.get("oneshot")),
            }
        )
    return hooks


def build_pod(
    grid: Grid,
    service: Service,
    instance: ServiceInstance,
    node: Node | None,
    inputs: PodInputs,
) -> ServicePod:
    """The pod for ``instance``; raises PodError when the spec holds a value of a wrong type."""
    spec = service.spec or {}
    number = instance.instance_number
    labels = {
        **_labels(spec.get("labels")),
        POD_LABEL_SERVICE_ID: service.id,
        POD_LABEL_SERVICE_NAME: service.name,
        POD_LABEL_INSTANCE: str(number),
        POD_LABEL_STACK: service.stack,
        POD_LABEL_GRID: grid.name,
        POD_LABEL_PLATFORM: grid.name,
    }
    health_check = health_check_of(spec)
    if health_check is not None:
        # Kontena passed the check to its agent as container labels; kept for `docker inspect`.
        labels.update({f"{HEALTH_CHECK_LABEL}{k}": str(v) for k, v in health_check.items()})
    deploy_opts = spec.get("deploy_opts") or {}
    pod = {
        "id": f"{service.id}/{number}",
        "service_id": service.id,
        "service_name": pod_service_name(service),
        "instance_number": number,
        "desired_state": instance.desired_state,
        "deploy_rev": instance.deploy_rev or "",
        "service_revision": service.revision,
        "image_name": service.image,
        "grid_name": grid.name,
        "stack_name": service.stack,
        "cmd": _command(spec.get("cmd")),
        "entrypoint": _command(spec.get("entrypoint")),
        # User env first, then Kontena's (they win, as on Kontena), then secrets.
        "env": _env(spec.get("env")) + kontena_env(grid, service, number, node) + inputs.secret_env,
        "ports": spec_ports(spec),
        "labels": labels,
        "hostname": f"{service.name}-{number}",
        "wait_for_port": deploy_opts.get("wait_for_port"),
        "stop_grace_period": _seconds(spec.get("stop_grace_period"), 10),
        "image_credentials": inputs.image_credentials,
        "hooks": hooks_for_instance(spec, number),
        "health_check": health_check,
        "stateful": service.stateful,
    }
    for key in (
        "memory",
        "memory_swap",
        "shm_size",
        "cpus",
        "cpu_shares",
        "pid",
        "user",
        "log_driver",
        "stop_signal",
    ):
        if spec.get(key) is not None:
            pod[key] = spec[key]
    for key in ("privileged", "read_only"):
        pod[key] = bool(spec.get(key))
    for key in ("cap_add", "cap_drop", "devices"):
        pod[key] = list(spec.get(key) or [])
    pod["net"] = spec.get("net") or "bridge"
    pod["volumes"] = _pod_volumes(grid.name, service, number, node, inputs.volumes)
    pod["log_opts"] = {str(k): str(v) for k, v in (spec.get("log_opts") or {}).items()}
    try:
        return msgspec.convert(pod, ServicePod, strict=False)
    except msgspec.ValidationError as exc:
        raise PodError(f"service {service.name}: {exc}") from exc


def pod_dict(pod: ServicePod) -> dict[str, Any]:
    """The pod as the plain dict sent over the agent socket."""
    result: dict[str, Any] = msgspec.to_builtins(pod)
    return result
