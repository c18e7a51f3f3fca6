"""Named volumes on this node: create them before a pod's container, remove deleted ones.

Reference §5.3. A pod names its grid volumes with the Docker name, driver, options and labels
the master chose; the agent creates a missing one (Docker would otherwise create a ``local``
volume without the driver or labels). When the master says ``/volumes/notify_update``, the agent
re-lists ``/node_volumes/list`` and removes this grid's labelled volumes it no longer names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from docker.errors import APIError, DockerException, NotFound

from core.protocol import VOLUME_LABEL_GRID, VOLUME_LABEL_ID, PodVolume

log = logging.getLogger(__name__)

LIST_TIMEOUT = 30.0


class EngineApi(Protocol):
    """A low-level docker SDK call run off the event loop (agent.docker_client.DockerEngine)."""

    async def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """``docker.APIClient.<fn>(*args, **kwargs)`` in a worker thread."""
        ...


class Requester(Protocol):
    """The part of the agent's RPC peer the volume sync uses."""

    async def request(self, method: str, params: list[Any], timeout: float) -> Any:  # noqa: ASYNC109
        """Call the master and wait for its answer."""
        ...


class VolumeError(Exception):
    """A volume could not be made ready; the message says which and why."""


def _plugin(driver: str) -> str:
    """``rexray`` out of ``rexray:0.11`` (Docker lists managed plugins with their tag)."""
    return driver.partition(":")[0]


async def ensure_volume(api: EngineApi, volume: PodVolume) -> None:
    """Create the named volume unless it exists; an existing one must use the same driver."""
    assert volume.name is not None
    try:
        existing = await api.call("inspect_volume", volume.name)
    except NotFound:
        existing = None
    except DockerException as exc:
        raise VolumeError(f"inspecting volume {volume.name} failed: {exc}") from exc
    if existing is not None:
        have, want = str(existing.get("Driver") or ""), volume.driver
        if want and have != want and _plugin(have) != _plugin(want):
            raise VolumeError(f"volume {volume.name} exists with driver {have}, not {want}")
        return
    log.info("creating volume %s (driver %s)", volume.name, volume.driver)
    try:
        await api.call(
            "create_volume",
            volume.name,
            driver=volume.driver or "local",
            driver_opts=dict(volume.driver_opts) or None,
            labels=dict(volume.labels) or None,
        )
    except DockerException as exc:
        detail = exc.explanation if isinstance(exc, APIError) and exc.explanation else exc
        raise VolumeError(f"creating volume {volume.name} failed: {detail}") from exc


async def prune_volumes(api: EngineApi, grid: str, keep: set[str]) -> list[str]:
    """Remove the grid's labelled volumes not named in ``keep``; returns the removed names."""
    found = await api.call("volumes", filters={"label": f"{VOLUME_LABEL_GRID}={grid}"})
    removed = []
    for volume in (found or {}).get("Volumes") or []:
        name = volume.get("Name")
        if not name or name in keep or VOLUME_LABEL_ID not in (volume.get("Labels") or {}):
            continue
        try:
            await api.call("remove_volume", name)
        except NotFound:
            continue
        except DockerException as exc:
            # In use by a container the agent has not removed yet: the next notify retries.
            log.warning("volume %s not removed: %s", name, exc)
            continue
        log.info("removed volume %s (its grid volume was deleted)", name)
        removed.append(name)
    return removed


class VolumeSync:
    """Answers ``/volumes/notify_update``: re-list the node's volumes, prune deleted ones."""

    def __init__(
        self, peer: Requester, api: EngineApi, node_id: str, grid: Callable[[], str | None]
    ) -> None:
        self._peer = peer
        self._api = api
        self._node_id = node_id
        self._grid = grid
        self._task: asyncio.Task[None] | None = None
        self._again = False

    async def notify_update(self, *_: Any) -> dict[str, Any]:
        """Answer at once; sync right after (a sync already running runs once more)."""
        if self._task is not None and not self._task.done():
            self._again = True
        else:
            self._task = asyncio.create_task(self._run(), name="volume sync")
        return {}

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self.sync()
            except Exception as exc:  # RemoteError, RpcTimeout, NotConnected, Docker errors
                log.warning("volume sync failed: %s", exc)
            if not self._again:
                return

    async def sync(self) -> list[str]:
        """One round: what the master lists stays, the rest of this grid's volumes go."""
        grid = self._grid()
        if not grid:
            return []  # node info not received yet: cannot tell our volumes from others'
        result = await self._peer.request("/node_volumes/list", [self._node_id], LIST_TIMEOUT)
        listed = (result or {}).get("volumes")
        if not isinstance(listed, list):
            log.error("invalid /node_volumes/list answer: %r", result)
            return []
        keep = {str(item.get("name")) for item in listed if isinstance(item, dict)}
        return await prune_volumes(self._api, grid, keep)
