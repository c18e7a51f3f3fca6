"""A thin async face on the (blocking) docker SDK: every call runs in a worker thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol

import docker


class DockerApi(Protocol):
    """What the agent asks of the Docker Engine."""

    async def info(self) -> dict[str, Any]:
        """``docker info`` as the Engine returns it."""
        ...

    async def running_containers(self) -> int:
        """How many containers are running right now."""
        ...

    def close(self) -> None:
        """Release the HTTP connection pool."""
        ...


class DockerEngine:
    """The real Engine at ``DOCKER_HOST``; the client is created on first use and after errors."""

    def __init__(self, base_url: str, timeout: int = 30) -> None:
        self.base_url = base_url
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def _get(self) -> docker.DockerClient:
        # Creating the client with version="auto" already talks to the daemon (it negotiates
        # the API version), so it happens here, in a worker thread, and is retried after errors.
        with self._lock:
            if self._client is None:
                self._client = docker.DockerClient(
                    base_url=self.base_url, version="auto", timeout=self._timeout
                )
            return self._client

    def _call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        client = self._get()
        try:
            return getattr(client.api, fn)(*args, **kwargs)
        except docker.errors.APIError:
            # The daemon answered (404, 409, 500...): the connection pool is fine.
            raise
        except Exception:
            # A broken pool (daemon restarted, socket gone) is rebuilt on the next call.
            self._reset()
            raise

    def _reset(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def info(self) -> dict[str, Any]:
        """``docker info``."""
        result: dict[str, Any] = await asyncio.to_thread(self._call, "info")
        return result

    async def running_containers(self) -> int:
        """Count of running containers (ids only: no per-container inspect)."""
        ids = await asyncio.to_thread(self._call, "containers", quiet=True)
        return len(ids)

    async def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """Any ``docker.APIClient`` method, run in a worker thread (used by the pod workers)."""
        return await asyncio.to_thread(self._call, fn, *args, **kwargs)

    def close(self) -> None:
        """Close the client if one was created."""
        self._reset()
