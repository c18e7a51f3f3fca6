"""Stay connected to the master: handshake, one session per socket, close codes, backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from agent.config import AgentConfig
from agent.rpc import RpcPeer
from core.protocol import (
    FATAL_CLOSE_CODES,
    HEADER_CONNECTED_AT,
    HEADER_GRID_TOKEN,
    HEADER_LABELS,
    HEADER_NODE_ID,
    HEADER_NODE_NAME,
    HEADER_NODE_TOKEN,
    HEADER_VERSION,
    PROTOCOL_VERSION,
    CloseCode,
    format_connected_at,
)

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_CONFIG = 2
# Distinct from a crash so systemd (RestartPreventExitStatus=3) does not restart a refused node.
EXIT_FATAL_CLOSE = 3

BACKOFF_BASE = 1.0
BACKOFF_CAP = 90.0
# A connection that lived this long counts as healthy: the next failure starts from attempt 0.
STABLE_AFTER = 60.0
# Service pod lists can be large; the websockets default (1 MiB) is too tight.
MAX_FRAME_BYTES = 32 * 1024 * 1024

_STANDARD_CLOSES = {
    1000: "normal closure",
    1001: "going away",
    1006: "abnormal closure",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Identity:
    """Who this agent says it is in the handshake."""

    node_id: str
    node_name: str


class Session(Protocol):
    """The node's side of one live connection (see agent.handlers.NodeSession)."""

    @property
    def updated(self) -> bool:
        """True once the master accepted ``/nodes/update`` on this connection."""
        ...

    async def close(self) -> None:
        """Stop the session's background work."""
        ...


SessionFactory = Callable[[RpcPeer, Identity], Session]


@dataclass(frozen=True)
class Outcome:
    """How one connection attempt ended."""

    code: int | None = None
    reason: str = ""
    updated: bool = False
    error: str | None = None

    def describe(self) -> str:
        """A log line for this outcome."""
        if self.error is not None:
            return self.error
        return f"master closed the connection: {describe_close(self.code, self.reason)}"


def describe_close(code: int | None, reason: str) -> str:
    """``4001 (invalid grid token): reason`` style text for logs."""
    if code is None:
        return f"no close frame ({reason})"
    try:
        name = CloseCode(code).name.replace("_", " ").lower()
    except ValueError:
        name = _STANDARD_CLOSES.get(code, "unknown code")
    return f"{code} ({name})" + (f": {reason}" if reason else "")


def backoff_delay(
    attempt: int,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rand: Callable[[], float] = random.random,
) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**attempt)) seconds."""
    return rand() * min(cap, base * (1 << min(attempt, 32)))


def handshake_headers(config: AgentConfig, identity: Identity, now: datetime) -> dict[str, str]:
    """The headers of reference §7.1; a node token wins over a grid token, like the original."""
    headers = {
        HEADER_NODE_ID: identity.node_id,
        HEADER_NODE_NAME: identity.node_name,
        HEADER_VERSION: PROTOCOL_VERSION,
        HEADER_LABELS: ",".join(config.labels),
        HEADER_CONNECTED_AT: format_connected_at(now),
    }
    if config.node_token:
        headers[HEADER_NODE_TOKEN] = config.node_token
    elif config.grid_token:
        headers[HEADER_GRID_TOKEN] = config.grid_token
    return headers


class Agent:
    """Connects, runs a session, and reconnects until a fatal close code or stop()."""

    def __init__(
        self,
        config: AgentConfig,
        identify: Callable[[], Awaitable[Identity]],
        session_factory: SessionFactory,
        *,
        backoff_base: float = BACKOFF_BASE,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._identify = identify
        self._session_factory = session_factory
        self._backoff_base = backoff_base
        self._rand = rand
        self._clock = clock
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask run() to close the socket with 1000 and return 0 (signal-handler safe)."""
        self._stop.set()

    async def run(self) -> int:
        """Run until stopped (EXIT_OK) or refused for good (EXIT_FATAL_CLOSE)."""
        attempt = 0
        while not self._stop.is_set():
            started = self._clock()
            outcome = await self._until_stopped(self._attempt())
            if outcome is None:
                break
            if outcome.code in FATAL_CLOSE_CODES:
                log.error(
                    "master closed the connection with %s; not reconnecting, shutting down",
                    describe_close(outcome.code, outcome.reason),
                )
                return EXIT_FATAL_CLOSE
            if outcome.updated or self._clock() - started > STABLE_AFTER:
                attempt = 0
            delay = backoff_delay(attempt, base=self._backoff_base, rand=self._rand)
            attempt += 1
            log.warning("%s; reconnecting in %.1f s", outcome.describe(), delay)
            if await self._stopped_within(delay):
                break
        log.info("agent stopped")
        return EXIT_OK

    async def _attempt(self) -> Outcome:
        try:
            identity = await self._identify()
        except Exception as exc:
            return Outcome(error=f"cannot read the Docker Engine identity: {exc}")
        headers = handshake_headers(self.config, identity, datetime.now(UTC))
        try:
            async with connect(
                self.config.uri,
                additional_headers=headers,
                ping_interval=self.config.ping_interval,
                ping_timeout=self.config.ping_timeout,
                max_size=MAX_FRAME_BYTES,
                open_timeout=30,
                close_timeout=5,
            ) as socket:
                log.info("connected to %s as %s", self.config.uri, identity.node_id)
                return await self._run_session(socket, identity)
        except InvalidStatus as exc:
            status = exc.response.status_code
            return Outcome(error=f"master refused the WebSocket handshake with HTTP {status}")
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            return Outcome(error=f"cannot connect to {self.config.uri}: {detail}")

    async def _run_session(self, socket: ClientConnection, identity: Identity) -> Outcome:
        peer = RpcPeer(socket)
        session = self._session_factory(peer, identity)
        try:
            closed = await peer.serve()
        except asyncio.CancelledError:
            # stop(): say goodbye properly so the master marks the node offline at once.
            await socket.close(1000, "agent shutting down")
            raise
        finally:
            await session.close()
        return Outcome(code=closed.code, reason=closed.reason, updated=session.updated)

    async def _until_stopped(self, coro: Coroutine[Any, Any, T]) -> T | None:
        """Run ``coro`` unless stop() comes first (then cancel it and return None)."""
        task = asyncio.create_task(coro)
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return None if task.cancelled() else task.result()

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        except TimeoutError:
            return False
        return True
