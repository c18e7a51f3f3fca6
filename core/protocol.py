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
