"""The master ⇄ agent wire protocol: headers, close codes and MessagePack-RPC frames.

Both sides import this module (the agent imports nothing else of ours), so it holds only
plain data and pure functions.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import msgspec

PROTOCOL_VERSION = "1.5.2"

# Handshake headers the agent sends (reference §7.1).
HEADER_NODE_ID = "Kontena-Node-Id"
HEADER_NODE_NAME = "Kontena-Node-Name"
HEADER_VERSION = "Kontena-Version"
HEADER_LABELS = "Kontena-Node-Labels"
HEADER_CONNECTED_AT = "Kontena-Connected-At"
HEADER_GRID_TOKEN = "Kontena-Grid-Token"
HEADER_NODE_TOKEN = "Kontena-Node-Token"

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2


class CloseCode(enum.IntEnum):
    """WebSocket close codes with Kontena's meanings."""

    MISSING_NODE_ID = 4000
    INVALID_GRID_TOKEN = 4001
    INVALID_NODE_TOKEN = 4002
    NODE_ID_CONFLICT = 4003
    MISSING_TOKEN = 4004
    NODE_NEEDS_NODE_TOKEN = 4005
    NODE_TOKEN_CONFLICT = 4006
    VERSION_MISMATCH = 4010
    CLOCK_SKEW = 4020
    KEEPALIVE_TIMEOUT = 4030
    CONNECTION_RESET = 4031
    NODE_REMOVED = 4040
    CONNECTION_CONFLICT = 4041


# The agent stops instead of reconnecting after these: retrying cannot help.
FATAL_CLOSE_CODES = frozenset(
    {
        CloseCode.INVALID_GRID_TOKEN,
        CloseCode.VERSION_MISMATCH,
        CloseCode.NODE_REMOVED,
        CloseCode.CONNECTION_CONFLICT,
    }
)


class RpcError(msgspec.Struct, omit_defaults=True):
    """The error member of a response."""

    code: int
    message: str


def encode_request(msg_id: int, method: str, params: list[Any]) -> bytes:
    """``[0, id, method, params]``."""
    return msgspec.msgpack.encode([REQUEST, msg_id, method, params])


def encode_response(msg_id: int, error: RpcError | None, result: Any) -> bytes:
    """``[1, id, error, result]``."""
    return msgspec.msgpack.encode([RESPONSE, msg_id, error, result])


def encode_notification(method: str, params: list[Any]) -> bytes:
    """``[2, method, params]``."""
    return msgspec.msgpack.encode([NOTIFICATION, method, params])


class Request(msgspec.Struct, array_like=True, frozen=True):
    """A decoded request frame."""

    kind: int
    id: int
    method: str
    params: list[Any]


class Response(msgspec.Struct, array_like=True, frozen=True):
    """A decoded response frame."""

    kind: int
    id: int
    error: dict[str, Any] | None
    result: Any


class Notification(msgspec.Struct, array_like=True, frozen=True):
    """A decoded notification frame."""

    kind: int
    method: str
    params: list[Any]


Frame = Request | Response | Notification


class ProtocolError(ValueError):
    """A frame that is not a MessagePack-RPC array."""


def decode_frame(data: bytes) -> Frame:
    """Decode one binary frame into a request, response or notification."""
    try:
        raw = msgspec.msgpack.decode(data)
        if not isinstance(raw, list) or not raw:
            raise ProtocolError("frame is not an array")
        kind = raw[0]
        if kind == REQUEST:
            return msgspec.convert(raw, Request)
        if kind == RESPONSE:
            return msgspec.convert(raw, Response)
        if kind == NOTIFICATION:
            return msgspec.convert(raw, Notification)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(str(exc)) from exc
    raise ProtocolError(f"unknown frame kind {kind!r}")


def format_connected_at(moment: datetime) -> str:
    """The agent clock as Kontena sent it: ``%F %T.%NZ`` in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%fZ")


def parse_connected_at(value: str) -> datetime:
    """Parse ``Kontena-Connected-At`` (also accepts ISO 8601)."""
    text = value.strip().replace("T", " ").rstrip("Z")
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def version_compatible(server: str, agent: str) -> bool:
    """``~> MAJOR.MINOR.0``: the agent's major and minor must equal the server's."""
    try:
        return [int(p) for p in agent.split(".")[:2]] == [int(p) for p in server.split(".")[:2]]
    except ValueError:
        return False


# --- Service pods: what the master wants running on a node (reference §7.3-7.4) ----------------

POD_LABEL_SERVICE_ID = "io.kontena.service.id"
POD_LABEL_SERVICE_NAME = "io.kontena.service.name"
POD_LABEL_INSTANCE = "io.kontena.service.instance_number"
POD_LABEL_DEPLOY_REV = "io.kontena.container.deploy_rev"
POD_LABEL_SERVICE_REVISION = "io.kontena.service.revision"
POD_LABEL_STACK = "io.kontena.stack.name"
POD_LABEL_GRID = "io.kontena.grid.name"
# A stateful pod's data container (``<container>-volumes``) carries these instead of the pod's
# own labels, so it is never taken for the pod's container or for an orphan.
DATA_LABEL_TYPE = "io.kontena.container.type"
DATA_LABEL_POD = "io.kontena.volumes.pod"


# Labels on the Docker volumes the agent creates for grid volumes (Kontena's agent used
# ``io.kontena.volume.id`` too); the agent removes only volumes that carry them.
VOLUME_LABEL_ID = "io.kontena.volume.id"  # the volume's API id, ``grid/name``
VOLUME_LABEL_GRID = "io.kontena.grid.name"
VOLUME_LABEL_SCOPE = "io.kontena.volume.scope"


class PodPort(msgspec.Struct, frozen=True):
    """A published port."""

    container_port: int
    node_port: int
    protocol: str = "tcp"
    ip: str = "0.0.0.0"  # noqa: S104  (Kontena's default: publish on every address)


class PodVolume(msgspec.Struct, frozen=True, omit_defaults=True):
    """A mount: ``bind_mount`` (host path), ``name`` (named volume) or neither (anonymous)."""

    path: str  # the path inside the container
    flags: str | None = None  # "ro", "rw,z"...
    bind_mount: str | None = None
    name: str | None = None
    driver: str | None = None
    driver_opts: dict[str, str] = {}
    labels: dict[str, str] = {}  # put on a named volume the agent creates


class PodHook(msgspec.Struct, frozen=True, omit_defaults=True):
    """A lifecycle hook the agent runs for the pod (reference §3.10).

    ``type`` is ``pre_start`` (a throw-away container from the pod's config), ``post_start`` or
    ``pre_stop`` (``docker exec`` in the pod's container); the command runs as ``/bin/sh -c cmd``.
    """

    name: str
    type: str
    cmd: str
    oneshot: bool = False


class PodHealthCheck(msgspec.Struct, frozen=True, omit_defaults=True):
    """How the agent probes a pod's container: HTTP 2xx/3xx or a TCP connect (seconds)."""

    protocol: str  # http or tcp
    port: int
    uri: str = "/"
    timeout: int = 10
    interval: int = 60
    initial_delay: int = 10


class ServicePod(msgspec.Struct, frozen=True, omit_defaults=True):
    """One instance the agent must converge to; the reply of ``/node_service_pods/list``.

    ``desired_state`` is ``running``, ``stopped`` or ``terminated``. The container is recreated
    when ``service_revision`` or ``image_name`` changes, and (re)applied when ``deploy_rev``
    changes; the agent reports ``rev=deploy_rev`` through ``/node_service_pods/set_state``.
    """

    id: str  # "<service_id>/<instance_number>"
    service_id: str
    service_name: str  # "svc" for stack-less services, "stack.svc" otherwise
    instance_number: int
    desired_state: str
    deploy_rev: str
    service_revision: int
    image_name: str
    grid_name: str
    stack_name: str = "null"
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = []
    ports: list[PodPort] = []
    labels: dict[str, str] = {}
    memory: int | None = None
    memory_swap: int | None = None
    shm_size: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    privileged: bool = False
    cap_add: list[str] = []
    cap_drop: list[str] = []
    devices: list[str] = []
    net: str = "bridge"
    pid: str | None = None
    user: str | None = None
    read_only: bool = False
    log_driver: str | None = None
    log_opts: dict[str, str] = {}
    stop_signal: str | None = None
    stop_grace_period: int = 10
    hostname: str | None = None
    domainname: str | None = None
    volumes: list[PodVolume] = []
    volumes_from: list[str] = []  # container names (``%s`` already replaced by the master)
    wait_for_port: int | None = None
    image_credentials: dict[str, str] | None = None
    # Hooks for this instance only; oneshot hooks already run are left out by the master.
    hooks: list[PodHook] = []
    health_check: PodHealthCheck | None = None
    # Anonymous volumes live in a data container that outlives re-creates (reference §3.9).
    stateful: bool = False

    @property
    def container_name(self) -> str:
        """``<service_name>-<n>``, as Kontena named containers."""
        return f"{self.service_name}-{self.instance_number}"


class PodState(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the agent reports for a pod (``/node_service_pods/set_state`` params[1])."""

    service_id: str
    instance_number: int
    rev: str
    state: str  # running, stopped, restarting, missing, terminated
    error: str | None = None


class PodHookRef(msgspec.Struct, frozen=True):
    """Which hook ``/node_service_pods/mark_oneshot_hook`` marks as run (params[2])."""

    type: str
    name: str
    cmd: str


class PodHealth(msgspec.Struct, frozen=True, omit_defaults=True):
    """A health probe result (``/node_service_pods/set_health`` params[1]).

    ``rev`` is the pod's ``deploy_rev`` the probed container runs; ``error`` says why a probe
    failed (status code, refused connection, timeout).
    """

    service_id: str
    instance_number: int
    rev: str
    status: str  # healthy or unhealthy
    status_code: int | None = None
    error: str | None = None


# Container logs (reference §5.5). The agent asks where each stream of a container stands,
# then sends batches as requests: the answer says they are stored, so nothing is lost.
LOG_CURSOR_METHOD = "/containers/log_cursor"
LOG_BATCH_METHOD = "/containers/log_batch"
LOG_STREAMS = ("stdout", "stderr")


class LogLine(msgspec.Struct, frozen=True):
    """One line of ``/containers/log_batch`` params[1] (Kontena's ``{id, time, type, data}``).

    ``time`` is Docker's RFC 3339 timestamp with nanoseconds; ``seq`` numbers the lines of one
    stream that share a timestamp (0 for the first), so ``(time, seq)`` orders a stream.
    """

    id: str  # the Docker container id
    name: str
    service_id: str
    instance_number: int
    type: str  # stdout or stderr
    time: str
    seq: int
    data: str


def parse_log_time(value: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp with up to 9 fraction digits."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text, offset = text[:-1], "+00:00"
    else:
        text, offset = text[:-6], text[-6:]
    whole, _, fraction = text.partition(".")
    if not fraction.isdigit() and fraction:
        raise ValueError(f"bad timestamp fraction in {value!r}")
    seconds = datetime.fromisoformat(whole + offset)
    return int(seconds.timestamp()) * 1_000_000_000 + int((fraction + "000000000")[:9])
