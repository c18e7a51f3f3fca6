"""Settings read from ``KONTENA_*`` environment variables, with embedded defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

PREFIX = "KONTENA_"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every knob of the master; see docs/configuration.md for each one."""

    data_dir: str = "./data"
    database_url: str = ""
    redis_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    vault_key: str = ""
    vault_old_keys: str = ""
    log_level: str = "info"
    server_name: str = "kontena-master"
    max_body_bytes: int = 1_048_576
    token_rate_limit: int = 60
    token_rate_window: int = 60
    refresh_token_expires_in: int = 7200
    # An expired token that can still be refreshed is kept this long after it expired.
    refresh_window_days: int = 30
    recovery_after: int = 60
    work_deadline: int = 1800
    lease_ttl: int = 15
    event_log_retention_days: int = 30
    audit_log_retention_days: int = 365
    # Node and container stats samples (the per-minute metrics are computed from them).
    stats_retention_days: int = 7
    # Container logs: lines older than this many days, and the oldest lines beyond the newest
    # max_lines (0: no line cap), are deleted by the hourly retention tick.
    container_log_retention_days: float = 7.0
    container_log_max_lines: int = 1_000_000
    # Services keep this many finished deploys (Kontena's DeploymentCleanupJob kept 100).
    deploy_history: int = 100
    # A work row delivered this often without finishing is quarantined (ends `error`).
    max_deliveries: int = 5
    # Bearer token /metrics requires; empty = unauthenticated (the usual Prometheus scrape).
    metrics_token: str = ""
    # json (default) or console; `up` defaults to console.
    log_format: str = ""
    worker_threads: int = 4
    worker_processes: int = 1
    # Agent keepalive: ping each agent this often, close 4030 without an answer in time.
    agent_ping_interval: float = 30.0
    agent_pong_timeout: float = 5.0
    # The liveness sweep marks connected nodes unseen this long offline (covers a dead API
    # process; a live one notices a dropped socket at once). Must exceed ping + pong time.
    node_offline_after: float = 45.0
    # Deploys: how long one instance may take to run at the new revision, how long a whole
    # deploy may take from its start, and how long a removed service waits for its containers.
    deploy_instance_timeout: float = 300.0
    deploy_deadline: float = 1800.0
    service_remove_timeout: float = 120.0
    # Continuous rescheduling: how often the scheduler checks running services (reference 20 s).
    reschedule_interval: float = 20.0
    # ACME (Let's Encrypt): directory URL, a CA file to trust for a private ACME server, and
    # comma-separated host:port DNS resolvers for the master's own dns-01 TXT check.
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_ca_bundle: str = ""
    acme_dns_resolvers: str = ""
    # The node port the CA connects to for http-01 (80; a test CA such as Pebble uses another).
    acme_http01_port: int = 80

    @property
    def embedded_queue(self) -> bool:
        """True when jobs run in this process (no Redis configured)."""
        return not self.redis_url

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        path = (Path(self.data_dir) / "kontena.db").resolve()
        return f"sqlite+aiosqlite:///{path}"

    @property
    def resolved_public_url(self) -> str:
        """The URL users and agents reach the master on."""
        return self.public_url or f"http://{self.host}:{self.port}"


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``KONTENA_*`` variables; explicit overrides win."""
    env = os.environ if env is None else env
    fields = {f.name: f for f in msgspec.structs.fields(Settings)}
    values: dict[str, Any] = {}
    for name in fields:
        raw = env.get(PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid KONTENA_* setting: {exc}") from exc
