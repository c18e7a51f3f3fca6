"""Agent settings from the environment, named like the original Kontena agent's."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

# Scheme rewrites: operators paste the master's HTTP URL as often as its ws:// one.
_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


class ConfigError(ValueError):
    """A missing or malformed setting; the message names the variable."""


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs to join a master."""

    uri: str
    grid_token: str | None = None
    node_token: str | None = None
    labels: list[str] = field(default_factory=list)
    docker_host: str = DEFAULT_DOCKER_HOST
    node_id: str | None = None
    node_name: str | None = None
    public_ip: str | None = None
    private_ip: str | None = None
    stats_interval: float = 60.0
    container_stats_interval: float = 60.0
    ping_interval: float = 30.0
    ping_timeout: float = 10.0
    pod_sync_interval: float = 30.0

    def __repr__(self) -> str:
        # Tokens never reach logs, even through a stray repr().
        return f"AgentConfig(uri={self.uri!r}, node_id={self.node_id!r}, labels={self.labels!r})"


def websocket_url(uri: str) -> str:
    """``KONTENA_URI`` as a ws(s):// URL; an empty path becomes the master root ``/``."""
    parts = urlsplit(uri.strip())
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ConfigError(
            f"KONTENA_URI must be a ws://, wss://, http:// or https:// URL, got {uri!r}"
        )
    return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))


def parse_labels(value: str) -> list[str]:
    """``a=1, b=2`` → ``["a=1", "b=2"]`` (blank items dropped)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
    return value


def load_config(env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read the agent settings; raises ConfigError naming the first bad variable."""
    env = os.environ if env is None else env
    uri = _optional(env, "KONTENA_URI")
    if uri is None:
        raise ConfigError("KONTENA_URI is required (the master URL, e.g. wss://master.example.com)")
    grid_token = _optional(env, "KONTENA_TOKEN")
    node_token = _optional(env, "KONTENA_NODE_TOKEN")
    if grid_token is None and node_token is None:
        raise ConfigError("KONTENA_TOKEN (grid token) or KONTENA_NODE_TOKEN is required")
    return AgentConfig(
        uri=websocket_url(uri),
        grid_token=grid_token,
        node_token=node_token,
        labels=parse_labels(env.get("KONTENA_NODE_LABELS", "")),
        docker_host=_optional(env, "DOCKER_HOST") or DEFAULT_DOCKER_HOST,
        node_id=_optional(env, "KONTENA_NODE_ID"),
        node_name=_optional(env, "KONTENA_NODE_NAME"),
        public_ip=_optional(env, "KONTENA_PUBLIC_IP"),
        private_ip=_optional(env, "KONTENA_PRIVATE_IP"),
        stats_interval=_seconds(env, "KONTENA_STATS_INTERVAL", 60.0),
        container_stats_interval=_seconds(env, "KONTENA_CONTAINER_STATS_INTERVAL", 60.0),
        ping_interval=_seconds(env, "KONTENA_PING_INTERVAL", 30.0),
        ping_timeout=_seconds(env, "KONTENA_PING_TIMEOUT", 10.0),
        pod_sync_interval=_seconds(env, "KONTENA_POD_SYNC_INTERVAL", 30.0),
    )
