"""Ship the stdout/stderr of this node's Kontena containers to the master (reference §5.5).

One thread per container stream follows ``docker logs --follow --timestamps``; the lines go
to the master in batches sent as requests, so a batch counts as shipped only once the master
answered. Where a stream stands is the master's record (``/containers/log_cursor``): after
a restart, a reconnect or any failed batch the shipper drops what it holds and starts again
from those cursors, and the master skips lines it already stored. No gaps, no duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import docker
import msgspec

from agent.connection import backoff_delay
from agent.rpc import NotConnected, RpcPeer
from core.protocol import (
    LOG_BATCH_METHOD,
    LOG_CURSOR_METHOD,
    LOG_STREAMS,
    POD_LABEL_INSTANCE,
    POD_LABEL_SERVICE_ID,
    LogLine,
    parse_log_time,
)

log = logging.getLogger(__name__)

Position = tuple[int, int]  # (Docker timestamp in ns, ordinal among lines sharing it)
REQUEST_TIMEOUT = 30.0
# Readers wait while this many lines are not shipped yet (a slow or absent master).
MAX_PENDING = 20_000


@dataclass(frozen=True)
class ContainerRef:
    """A Kontena container as ``docker ps`` lists it."""

    id: str
    name: str
    service_id: str
    instance_number: int
    running: bool


def container_refs(listed: list[dict[str, Any]]) -> list[ContainerRef]:
    """The containers carrying a service id label, from ``APIClient.containers(all=True)``."""
    refs = []
    for item in listed:
        labels = item.get("Labels") or {}
        service_id = labels.get(POD_LABEL_SERVICE_ID)
        instance = str(labels.get(POD_LABEL_INSTANCE) or "")
        if not service_id or not instance.isdigit() or item.get("State") == "created":
            continue  # a container that never started has nothing to say
        names = item.get("Names") or [""]
        refs.append(
            ContainerRef(
                id=str(item["Id"]),
                name=str(names[0]).lstrip("/"),
                service_id=str(service_id),
                instance_number=int(instance),
                running=item.get("State") == "running",
            )
        )
    return refs


def split_message(message: bytes) -> tuple[str, str]:
    """``b"<RFC 3339 time> <data>\\n"`` → (time, data without its line break)."""
    text = message.decode("utf-8", errors="replace")
    stamp, _, data = text.partition(" ")
    if data.endswith("\n"):
        data = data[:-1]
    if data.endswith("\r"):
        data = data[:-1]
    return stamp, data


class Batch:
    """Lines read but not shipped yet, shared by the readers of one shipping session."""

    def __init__(self) -> None:
        self.lines: deque[LogLine] = deque()
        self.lock = threading.Condition()
        self.closed = False

    def put(self, line: LogLine) -> bool:
        """Add a line, waiting while the batch is full; False once the session ended."""
        with self.lock:
            while len(self.lines) >= MAX_PENDING and not self.closed:
                self.lock.wait(0.5)
            if self.closed:
                return False
            self.lines.append(line)
            return True

    def peek(self, limit: int) -> list[LogLine]:
        """Up to ``limit`` of the oldest lines, left in place until :meth:`drop`."""
        with self.lock:
            return [self.lines[i] for i in range(min(limit, len(self.lines)))]

    def drop(self, count: int) -> None:
        """The oldest ``count`` lines were stored by the master."""
        with self.lock:
            for _ in range(count):
                self.lines.popleft()
            self.lock.notify_all()

    def close(self) -> None:
        """The session ended: readers stop adding."""
        with self.lock:
            self.closed = True
            self.lines.clear()
            self.lock.notify_all()


class StreamReader:
    """Follows one stream of one container in a thread, from a position on."""

    def __init__(
        self,
        client: LogClient,
        container: ContainerRef,
        stream: str,
        start: Position | None,
        batch: Batch,
    ) -> None:
        self.container = container
        self.stream = stream
        self.last = start
        self.failed = False
        # The container's log driver cannot be read back (e.g. `none`, or syslog without
        # Docker's dual logging): nothing to ship, and no point retrying.
        self.unreadable = False
        self._client = client
        self._batch = batch
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(
            target=self._run, name=f"logs {container.name} {stream}", daemon=True
        )

    def start(self) -> None:
        """Begin reading."""
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the thread reads (the container runs, or old lines are still coming)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop reading: closing the HTTP response wakes the blocked thread."""
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()

    def _run(self) -> None:
        try:
            self._read()
        except docker.errors.APIError as exc:
            if self._stop.is_set():
                return
            if exc.status_code == 501 or "does not support reading" in str(exc.explanation):
                self.unreadable = True
                log.info("the logs of %s cannot be read back: %s", self.container.name, exc)
            else:
                self.failed = True
                log.warning("reading %s of %s failed: %s", self.stream, self.container.name, exc)
        except Exception as exc:
            if not self._stop.is_set():
                self.failed = True
                log.warning("reading %s of %s failed: %s", self.stream, self.container.name, exc)

    def _read(self) -> None:
        # Docker's `since` is inclusive and whole seconds: start a second early and skip
        # what was shipped; every line of the cursor's timestamp is seen, so ordinals match.
        since = max(1, self.last[0] // 1_000_000_000 - 1) if self.last else None
        tty, response = self._client.open(self.container.id, self.stream, since)
        self._response = response
        if self._stop.is_set():
            self.stop()
            return
        pending = b""
        previous: Position | None = None
        for chunk in response:
            if self._stop.is_set():
                return
            if tty:
                # A TTY stream is raw bytes: messages are the lines, however they arrive.
                pending += chunk
                *messages, pending = pending.split(b"\n")
            else:
                messages = [chunk]  # one multiplexed frame is one message
            for message in messages:
                previous = self._emit(message, previous)
                if previous is None:
                    return
        if pending:
            self._emit(pending, previous)

    def _emit(self, message: bytes, previous: Position | None) -> Position | None:
        stamp, data = split_message(message)
        try:
            time_ns = parse_log_time(stamp)
        except ValueError:
            return previous or (0, -1)  # not a timestamped message: nothing to place it by
        seq = previous[1] + 1 if previous and previous[0] == time_ns else 0
        position = (time_ns, seq)
        if self.last is not None and position <= self.last:
            return position
        line = LogLine(
            id=self.container.id,
            name=self.container.name,
            service_id=self.container.service_id,
            instance_number=self.container.instance_number,
            type=self.stream,
            time=stamp,
            seq=seq,
            data=data,
        )
        if not self._batch.put(line):
            return None
        self.last = position
        return position


class LogClient:
    """A docker SDK client of its own: follow streams stay open for hours (no read timeout)."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._api: docker.APIClient | None = None
        self._lock = threading.Lock()
        self._tty: dict[str, bool] = {}

    def api(self) -> docker.APIClient:
        """The client, created on first use (it negotiates the API version with the daemon)."""
        with self._lock:
            if self._api is None:
                self._api = docker.APIClient(
                    base_url=self._base_url, version="auto", timeout=None, max_pool_size=256
                )
            return self._api

    def open(self, container_id: str, stream: str, since: int | None) -> tuple[bool, Any]:
        """(tty?, the follow stream of ``stream``) — blocking, for a reader thread."""
        api = self.api()
        tty = self._tty.get(container_id)
        if tty is None:
            config = api.inspect_container(container_id).get("Config") or {}
            tty = self._tty[container_id] = bool(config.get("Tty"))
        if tty and stream == "stderr":
            return tty, iter(())  # a TTY merges stderr into stdout
        response = api.logs(
            container_id,
            stdout=stream == "stdout",
            stderr=stream == "stderr",
            stream=True,
            follow=True,
            timestamps=True,
            since=since,
        )
        return tty, response

    def list(self) -> list[dict[str, Any]]:
        """Every container with a Kontena service id label, running or not."""
        listed: list[dict[str, Any]] = self.api().containers(
            all=True, filters={"label": [POD_LABEL_SERVICE_ID]}
        )
        return listed

    def forget(self, container_ids: set[str]) -> None:
        """Drop what was cached about containers that are gone."""
        for container_id in container_ids:
            self._tty.pop(container_id, None)

    def close(self) -> None:
        """Release the connection pool."""
        with self._lock:
            api, self._api = self._api, None
        if api is not None:
            api.close()


@dataclass
class _Session:
    """One shipping session: its readers and the lines they read."""

    batch: Batch = field(default_factory=Batch)
    readers: dict[tuple[str, str], StreamReader] = field(default_factory=dict)
    # Stopped containers whose streams were read to the end in this session.
    drained: set[str] = field(default_factory=set)
    # True once the master stored a batch of this session (the backoff starts over).
    shipped: bool = False

    def stop(self) -> None:
        self.batch.close()
        for reader in self.readers.values():
            reader.stop()


class LogShipper:
    """Lives as long as the agent; ships over one master connection at a time."""

    def __init__(
        self,
        client: LogClient,
        *,
        scan_interval: float = 2.0,
        flush_interval: float = 0.2,
        batch_lines: int = 1_000,
    ) -> None:
        self.client = client
        self.scan_interval = scan_interval
        self.flush_interval = flush_interval
        self.batch_lines = batch_lines
        self._task: asyncio.Task[None] | None = None
        self._peer: RpcPeer | None = None
        self._node_id = ""

    def attach(self, peer: RpcPeer, node_id: str) -> None:
        """Start shipping over ``peer`` (after the master's hello)."""
        if self._task is not None and self._peer is peer:
            return
        self.detach()
        self._peer, self._node_id = peer, node_id
        self._task = asyncio.create_task(self._ship_forever(peer), name="log shipping")

    def detach(self) -> None:
        """The connection is gone: stop; the next connection resumes from the master's cursors."""
        if self._task is not None:
            self._task.cancel()
        self._task = None
        self._peer = None

    async def close(self) -> None:
        """Agent shutdown."""
        task = self._task
        self.detach()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.client.close)

    async def _ship_forever(self, peer: RpcPeer) -> None:
        attempt = 0
        while True:
            session = _Session()
            try:
                await self._ship(peer, session)
            except NotConnected:
                return
            except Exception as exc:  # RemoteError, RpcTimeout, Docker errors
                if session.shipped:
                    attempt = 0
                delay = backoff_delay(attempt, cap=30.0)
                attempt += 1
                log.warning("container log shipping failed (%s); resuming in %.1f s", exc, delay)
                session.stop()
                await asyncio.sleep(delay)
                continue
            finally:
                session.stop()

    async def _ship(self, peer: RpcPeer, session: _Session) -> None:
        next_scan = 0.0
        while True:
            if time.monotonic() >= next_scan:
                await self._scan(peer, session)
                next_scan = time.monotonic() + self.scan_interval
            if await self._flush(peer, session.batch):
                session.shipped = True
            await asyncio.sleep(self.flush_interval)

    async def _scan(self, peer: RpcPeer, session: _Session) -> None:
        """Start readers for new or restarted containers; forget removed ones."""
        refs = container_refs(await asyncio.to_thread(self.client.list))
        present = {ref.id for ref in refs}
        for key in [key for key in session.readers if key[0] not in present]:
            session.readers.pop(key).stop()
        gone = {cid for cid in session.drained if cid not in present}
        session.drained -= gone
        self.client.forget(gone)
        for ref in refs:
            await self._follow(peer, session, ref)

    async def _follow(self, peer: RpcPeer, session: _Session, ref: ContainerRef) -> None:
        readers = [session.readers.get((ref.id, stream)) for stream in LOG_STREAMS]
        if any(reader is not None and reader.alive for reader in readers):
            return
        if all(reader is not None for reader in readers):
            if any(r.unreadable for r in readers if r is not None):
                return
            if not ref.running and not any(r.failed for r in readers if r is not None):
                session.drained.add(ref.id)  # read to the end; it says nothing more
                return
            starts: dict[str, Position | None] = {
                r.stream: r.last for r in readers if r is not None
            }
        elif ref.id in session.drained and not ref.running:
            return
        else:
            starts = await self._cursors(peer, ref.id)
        session.drained.discard(ref.id)
        for stream in LOG_STREAMS:
            reader = StreamReader(self.client, ref, stream, starts.get(stream), session.batch)
            session.readers[(ref.id, stream)] = reader
            reader.start()

    async def _cursors(self, peer: RpcPeer, container_id: str) -> dict[str, Position | None]:
        result = await peer.request(
            LOG_CURSOR_METHOD, [self._node_id, container_id], REQUEST_TIMEOUT
        )
        starts: dict[str, Position | None] = {}
        for stream in LOG_STREAMS:
            value = (result or {}).get(stream)
            starts[stream] = (int(value[0]), int(value[1])) if value else None
        return starts

    async def _flush(self, peer: RpcPeer, batch: Batch) -> bool:
        """Send everything read so far, oldest first; raises (ending the session) on failure."""
        sent = False
        while True:
            lines = batch.peek(self.batch_lines)
            if not lines:
                return sent
            await peer.request(
                LOG_BATCH_METHOD,
                [self._node_id, [msgspec.to_builtins(line) for line in lines]],
                REQUEST_TIMEOUT,
            )
            batch.drop(len(lines))
            sent = True
