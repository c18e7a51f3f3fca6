"""The service attributes clients send (Kontena's ``grid_services/common.rb``) and their checks.

Every struct field defaults to ``UNSET`` so an update can tell "not given" from "given as null";
``null`` resets a field to its default. Checks that need no database live here; the ones that
look up links and secrets are in :mod:`core.services`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from core.errors import ErrorTree
from core.validation import set_error

# Ruby's \w is ASCII-only; the look-ahead forbids a leading "-" as Kontena did.
NAME_PATTERN = r"\A(?!-)[A-Za-z0-9_-]+\Z"
NAME_MAX = 64  # the column width; the FQDN rule below is stricter anyway
FQDN_MAX = 64
ENV_PATTERN = re.compile(r"\A[^=]+=", re.DOTALL)
ENV_MAX_BYTES = 128 * 1024  # the agent refuses longer env strings (reference §5.1)
NET_PATTERN = r"\A(bridge|host|container:.+)\Z"
STOP_SIGNAL_PATTERN = r"\A(SIGRTMIN\+\d+|SIGRTMAX-\d+|SIG[A-Z0-9]+|\d+)\Z"
# Go-style durations as Kontena's CLI writes them: "30s", "1m30s", "1.5h".
DURATION_PATTERN = r"\A(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+\Z"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
    "us": Decimal("0.000001"),
    "µs": Decimal("0.000001"),
    "ns": Decimal("0.000000001"),
}
_HOOK_INSTANCES = re.compile(r"\A(\*|\d+(,\d+)*)\Z")
STRATEGIES = ("ha", "daemon", "random")
DEFAULT_STOP_GRACE_PERIOD = 10

Port = Annotated[int, Meta(ge=0, le=65535)]


class PortSpec(msgspec.Struct):
    """A published port; ``ip`` and ``protocol`` default as in Kontena."""

    node_port: Port
    container_port: Port
    ip: str = "0.0.0.0"  # noqa: S104 (Docker's "all interfaces" default, as Kontena)
    protocol: Literal["tcp", "udp"] = "tcp"


class LinkSpec(msgspec.Struct):
    """A link: ``svc`` (same stack) or ``stack/svc``, with an alias."""

    name: str
    alias: str


class SecretSpec(msgspec.Struct):
    """A vault secret exposed under ``name``."""

    secret: str
    name: str
    type: Literal["env"] = "env"


class CertificateSpec(msgspec.Struct):
    """A certificate bundle exposed under ``name``."""

    subject: str
    name: str
    type: Literal["env"] = "env"


class DeployOpts(msgspec.Struct):
    """Rolling-deploy options; a missing key keeps Kontena's default."""

    wait_for_port: Port | UnsetType | None = UNSET
    min_health: Annotated[float, Meta(ge=0, le=1)] | UnsetType | None = UNSET
    interval: Annotated[int, Meta(ge=1)] | UnsetType | None = UNSET


class HookSpec(msgspec.Struct):
    """One lifecycle hook; ``instances`` is ``*`` or a comma list of instance numbers."""

    name: str
    cmd: str
    instances: str
    oneshot: bool = False


class HooksSpec(msgspec.Struct):
    """Hooks by type."""

    pre_start: list[HookSpec] | None = None
    post_start: list[HookSpec] | None = None
    pre_stop: list[HookSpec] | None = None


class HealthCheckSpec(msgspec.Struct):
    """``port`` and ``protocol`` are required keys (null allowed: no health check)."""

    port: Annotated[int, Meta(ge=1, le=65535)] | None
    protocol: Literal["http", "tcp"] | None
    uri: str = "/"
    timeout: Annotated[int, Meta(ge=0)] = 10
    interval: Annotated[int, Meta(ge=0)] = 60
    initial_delay: Annotated[int, Meta(ge=0)] = 10


Strings = list[str] | None | UnsetType


class ServiceFields(msgspec.Struct):
    """Attributes both create and update accept."""

    strategy: str | UnsetType | None = UNSET
    instances: Annotated[int, Meta(ge=0)] | UnsetType | None = UNSET
    container_count: Annotated[int, Meta(ge=0)] | UnsetType | None = UNSET  # legacy name
    user: str | UnsetType | None = UNSET
    cmd: Strings = UNSET
    entrypoint: str | UnsetType | None = UNSET
    env: Strings = UNSET
    secrets: list[SecretSpec] | UnsetType | None = UNSET
    certificates: list[CertificateSpec] | UnsetType | None = UNSET
    ports: list[PortSpec] | UnsetType | None = UNSET
    links: list[LinkSpec] | UnsetType | None = UNSET
    affinity: Strings = UNSET
    deploy_opts: DeployOpts | UnsetType | None = UNSET
    volumes: Strings = UNSET
    volumes_from: Strings = UNSET
    cpus: Annotated[float, Meta(gt=0)] | UnsetType | None = UNSET
    cpu_shares: Annotated[int, Meta(ge=0, le=1024)] | UnsetType | None = UNSET
    memory: Annotated[int, Meta(ge=0)] | UnsetType | None = UNSET
    memory_swap: Annotated[int, Meta(ge=-1)] | UnsetType | None = UNSET
    shm_size: Annotated[int, Meta(ge=0)] | UnsetType | None = UNSET
    privileged: bool | UnsetType | None = UNSET
    cap_add: Strings = UNSET
    cap_drop: Strings = UNSET
    devices: Strings = UNSET
    net: Annotated[str, Meta(pattern=NET_PATTERN)] | UnsetType | None = UNSET
    pid: Literal["host"] | UnsetType | None = UNSET
    read_only: bool | UnsetType | None = UNSET
    log_driver: str | UnsetType | None = UNSET
    log_opts: dict[str, str] | UnsetType | None = UNSET
    labels: dict[str, str] | UnsetType | None = UNSET
    hooks: HooksSpec | UnsetType | None = UNSET
    health_check: HealthCheckSpec | UnsetType | None = UNSET
    stop_signal: Annotated[str, Meta(pattern=STOP_SIGNAL_PATTERN)] | UnsetType | None = UNSET
    stop_grace_period: Annotated[str, Meta(pattern=DURATION_PATTERN)] | UnsetType | None = UNSET


class ServiceCreate(ServiceFields, kw_only=True):
    """``POST /v1/grids/:grid/services``: ``image``, ``name`` and ``stateful`` are required."""

    image: Annotated[str, Meta(min_length=1)]
    name: Annotated[str, Meta(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
    stateful: bool


class ServiceUpdate(ServiceFields, kw_only=True):
    """``PUT /v1/services/:grid/:stack/:service``: only given keys change."""

    image: Annotated[str, Meta(min_length=1)] | UnsetType = UNSET
    force: bool = False


def default_spec() -> dict[str, Any]:
    """The stored spec of a service that set nothing but image, name and stateful."""
    return {
        "user": None,
        "cmd": None,
        "entrypoint": None,
        "env": [],
        "secrets": [],
        "certificates": [],
        "ports": [],
        "links": [],
        "affinity": [],
        "deploy_opts": {"wait_for_port": None, "min_health": 0.8, "interval": None},
        "volumes": [],
        "volumes_from": [],
        "cpus": None,
        "cpu_shares": None,
        "memory": None,
        "memory_swap": None,
        "shm_size": None,
        "privileged": False,
        "cap_add": [],
        "cap_drop": [],
        "devices": [],
        "net": "bridge",
        "pid": None,
        "read_only": False,
        "log_driver": None,
        "log_opts": {},
        "labels": {},
        "hooks": [],
        "health_check": None,
        "stop_signal": None,
        "stop_grace_period": DEFAULT_STOP_GRACE_PERIOD,
    }


# Spec keys copied as given (null → the default); the others are converted below.
_PLAIN = (
    "user",
    "cmd",
    "entrypoint",
    "affinity",
    "volumes",
    "volumes_from",
    "cpus",
    "cpu_shares",
    "memory",
    "memory_swap",
    "shm_size",
    "privileged",
    "cap_add",
    "cap_drop",
    "devices",
    "net",
    "pid",
    "read_only",
    "log_driver",
    "log_opts",
    "labels",
    "stop_signal",
)


def parse_duration(text: str) -> int:
    """``1m30s`` → 90, ``1.5h`` → 5400: whole seconds, rounded."""
    total = sum(
        (Decimal(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)),
        Decimal(0),
    )
    return int(total.to_integral_value())


def parse_volume(volume: str) -> dict[str, Any]:
    """Kontena's volume syntax: ``/host:/path[:flags]``, ``name:/path[:flags]`` or ``/path``."""
    parts = volume.split(":")
    if len(parts) >= 2 and parts[0].startswith("/") and parts[1].startswith("/"):
        return {"bind_mount": parts[0], "volume": None, "path": parts[1], "flags": parts[2:]}
    if len(parts) >= 2 and parts[0] and not parts[0].startswith("/") and parts[1].startswith("/"):
        return {"bind_mount": None, "volume": parts[0], "path": parts[1], "flags": parts[2:]}
    if parts[0].startswith("/") and (len(parts) == 1 or not parts[1].startswith("/")):
        return {"bind_mount": None, "volume": None, "path": parts[0], "flags": []}
    raise ValueError(f"Volume definition '{volume}' not in right format")


def env_map(env: list[str]) -> dict[str, str]:
    """``["K=V", …]`` as an ordered map; a later duplicate wins, as in Kontena."""
    pairs = (item.split("=", 1) for item in env)
    return {key: value for key, value in pairs}


def field_errors(data: ServiceFields) -> ErrorTree:
    """Checks that need nothing but the request: strategy, env, hooks, health check, volumes."""
    tree: ErrorTree = {}
    if isinstance(data.strategy, str) and data.strategy not in STRATEGIES:
        tree["strategy"] = "Strategy not supported"
    for index, item in enumerate(data.env or []):
        if not ENV_PATTERN.match(item):
            set_error(tree, ["env", index], f"Env[{index}] isn't in the right format")
        elif len(item.encode()) > ENV_MAX_BYTES:
            set_error(tree, ["env", index], f"Env[{index}] is too long")
    hooks = data.hooks if isinstance(data.hooks, HooksSpec) else None
    for kind in ("pre_start", "post_start", "pre_stop"):
        for index, hook in enumerate(getattr(hooks, kind) or [] if hooks else []):
            if not _HOOK_INSTANCES.match(hook.instances.replace(" ", "")):
                path: list[str | int] = ["hooks", kind, index, "instances"]
                set_error(tree, path, "Instances isn't in the right format")
    check = data.health_check
    if isinstance(check, HealthCheckSpec) and check.interval < check.timeout:
        tree["health_check"] = "Interval has to be bigger than timeout"
    bad_volumes = []
    for volume in data.volumes or []:
        try:
            parse_volume(volume)
        except ValueError as exc:
            bad_volumes.append(str(exc))
    if bad_volumes:
        tree["volumes"] = bad_volumes
    return tree


def _hooks(spec: HooksSpec | None, old: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Hooks flattened with their type, as Kontena stores them (``done`` = oneshot runs).

    A hook equal to one the service already has keeps its ``done`` list (an unchanged oneshot
    hook does not run again, and the PUT does not count as a change).
    """
    if spec is None:
        return []
    hooks = [
        {
            "name": hook.name,
            "type": kind,
            "cmd": hook.cmd,
            "instances": hook.instances.replace(" ", "").split(","),
            "oneshot": hook.oneshot,
            "done": [],
        }
        for kind in ("pre_start", "post_start", "pre_stop")
        for hook in getattr(spec, kind) or []
    ]
    for hook in hooks:
        for previous in old or []:
            if {k: v for k, v in previous.items() if k != "done"} == {
                k: v for k, v in hook.items() if k != "done"
            }:
                hook["done"] = list(previous.get("done") or [])
                break
    return hooks


def apply_fields(spec: dict[str, Any], data: ServiceFields) -> dict[str, Any]:
    """A new spec: ``spec`` with every given field of ``data`` applied (links excepted).

    Links need a database lookup; :mod:`core.services` resolves and stores them.
    """
    new = dict(spec)
    defaults = default_spec()
    for key in _PLAIN:
        value = getattr(data, key)
        if value is not UNSET:
            new[key] = defaults[key] if value is None else value
    if data.secrets is not UNSET:
        new["secrets"] = [msgspec.to_builtins(item) for item in data.secrets or []]
    if data.certificates is not UNSET:
        new["certificates"] = [msgspec.to_builtins(item) for item in data.certificates or []]
    if data.ports is not UNSET:
        new["ports"] = [msgspec.to_builtins(item) for item in data.ports or []]
    if data.deploy_opts is not UNSET:
        opts = dict(defaults["deploy_opts"])
        if data.deploy_opts is not None:
            opts.update(msgspec.to_builtins(data.deploy_opts))
        new["deploy_opts"] = opts
    if data.hooks is not UNSET:
        new["hooks"] = _hooks(data.hooks, spec.get("hooks"))
    if data.health_check is not UNSET:
        check = data.health_check
        # Both port and protocol null means "no health check", as in Kontena.
        new["health_check"] = (
            msgspec.to_builtins(check)
            if check is not None and (check.port is not None or check.protocol is not None)
            else None
        )
    if data.stop_grace_period is not UNSET:
        period = data.stop_grace_period
        new["stop_grace_period"] = (
            DEFAULT_STOP_GRACE_PERIOD if period is None else parse_duration(period)
        )
    if data.env is not UNSET:
        current = env_map(spec.get("env") or [])
        merged = env_map(data.env or [])
        # `KEY=` keeps the current value of KEY (how clients update env without secrets).
        for key, value in merged.items():
            if value == "" and current.get(key):
                merged[key] = current[key]
        new["env"] = [f"{key}={value}" for key, value in merged.items()]
    return new


def given_instances(data: ServiceFields) -> int | None:
    """``instances`` (or the legacy ``container_count``) when given."""
    for value in (data.instances, data.container_count):
        if isinstance(value, int):
            return value
    return None
