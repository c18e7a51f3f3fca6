"""Lifecycle hooks of a service pod (reference §3.10): pre_start, post_start, pre_stop.

``pre_start`` runs in a throw-away container made from the pod's own config (image, env,
volumes, user…) with ``/bin/sh -c cmd``, before the pod's container is created or started;
``post_start`` and ``pre_stop`` run as ``docker exec /bin/sh -c cmd`` in the pod's container.
A oneshot hook is marked as run with the master *before* it runs, so it never runs twice for an
instance, across re-deploys and agent restarts (the master leaves it out of later pods).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from docker.errors import DockerException, NotFound

from agent.pod_docker import PodDocker, PodError, create_args, docker_error, host_config_args
from core.protocol import PodHook, ServicePod

log = logging.getLogger(__name__)

PRE_START, POST_START, PRE_STOP = "pre_start", "post_start", "pre_stop"
HOOK_CONTAINER_LABEL = "io.kontena.container.type"
HOOK_POD_LABEL = "io.kontena.hook.pod"
# A hook is a setup step, not a service: one that runs longer than this fails the instance.
HOOK_TIMEOUT = 300
OUTPUT_LOG_LIMIT = 2000

# Records a oneshot hook as run with the master; raises when the master cannot be told.
OneshotMarker = Callable[[ServicePod, PodHook], Awaitable[None]]


class HookRunner:
    """Runs one pod's hooks; remembers the oneshot hooks it ran (the master does too)."""

    def __init__(self, docker: PodDocker, mark_oneshot: OneshotMarker) -> None:
        self._docker = docker
        self._mark_oneshot = mark_oneshot
        self._ran_oneshot: set[tuple[str, str, str]] = set()

    async def _claim(self, pod: ServicePod, hook: PodHook) -> bool:
        """True when ``hook`` should run now; a oneshot hook is recorded with the master first."""
        if not hook.oneshot:
            return True
        key = (hook.type, hook.name, hook.cmd)
        if key in self._ran_oneshot:
            return False
        try:
            await self._mark_oneshot(pod, hook)
        except Exception as exc:
            # Running it unrecorded could run it twice: fail now, the next sync retries.
            raise PodError(
                f"{hook.type} hook {hook.name}: could not record the oneshot run: {exc}"
            ) from exc
        self._ran_oneshot.add(key)
        return True

    async def pre_start(self, pod: ServicePod, node_name: str) -> None:
        """Run every pre_start hook to completion; a non-zero exit raises PodError."""
        for hook in _of_type(pod, PRE_START):
            if not await self._claim(pod, hook):
                continue
            log.info("pod %s: running pre_start hook %s: %s", pod.id, hook.name, hook.cmd)
            code, output = await self._run_container(pod, hook, node_name)
            _log_output(pod, hook, output)
            if code != 0:
                raise PodError(f"pre_start hook {hook.name} failed: exit code {code}")

    async def post_start(self, pod: ServicePod, container_id: str) -> None:
        """Exec every post_start hook in the started container; a failure raises PodError."""
        for hook in _of_type(pod, POST_START):
            if not await self._claim(pod, hook):
                continue
            code = await self._exec(pod, hook, container_id)
            if code != 0:
                raise PodError(f"post_start hook {hook.name} failed: exit code {code}")

    async def pre_stop(self, pod: ServicePod | None, container_id: str) -> None:
        """Exec every pre_stop hook before a stop; a failure is only logged."""
        if pod is None:
            return
        for hook in _of_type(pod, PRE_STOP):
            try:
                if not await self._claim(pod, hook):
                    continue
                code = await self._exec(pod, hook, container_id)
            except PodError as exc:
                log.warning("pod %s: %s", pod.id, exc)
                continue
            if code != 0:
                log.warning(
                    "pod %s: pre_stop hook %s failed: exit code %d", pod.id, hook.name, code
                )

    async def _exec(self, pod: ServicePod, hook: PodHook, container_id: str) -> int:
        log.info("pod %s: running %s hook %s: %s", pod.id, hook.type, hook.name, hook.cmd)
        api = self._docker.api
        try:
            created = await api.call(
                "exec_create", container_id, ["/bin/sh", "-c", hook.cmd], stdout=True, stderr=True
            )
            output = await api.call("exec_start", created["Id"])
            inspected = await api.call("exec_inspect", created["Id"])
        except DockerException as exc:
            raise PodError(f"{hook.type} hook {hook.name} failed: {docker_error(exc)}") from exc
        _log_output(pod, hook, output)
        code = inspected.get("ExitCode")
        return int(code) if code is not None else -1

    async def _run_container(
        self, pod: ServicePod, hook: PodHook, node_name: str
    ) -> tuple[int, bytes]:
        """Create, start and wait for the hook container; always removes it."""
        api = self._docker.api
        container_id = ""
        try:
            await self._docker.ensure_volumes(pod)
            host_config = await api.call("create_host_config", **hook_host_config_args(pod))
            created = await api.call(
                "create_container",
                host_config=host_config,
                **hook_create_args(pod, hook, node_name),
            )
            container_id = str(created["Id"])
            await api.call("start", container_id)
            result = await api.call("wait", container_id, timeout=HOOK_TIMEOUT)
            output = await api.call("logs", container_id, stdout=True, stderr=True, tail=50)
        except DockerException as exc:
            raise PodError(f"pre_start hook {hook.name} failed: {docker_error(exc)}") from exc
        except OSError as exc:  # the wait's read timeout (requests wraps it in an OSError)
            raise PodError(
                f"pre_start hook {hook.name} failed: no exit within {HOOK_TIMEOUT} s ({exc})"
            ) from exc
        finally:
            if container_id:
                try:
                    await api.call("remove_container", container_id, force=True, v=True)
                except NotFound:
                    pass
                except DockerException as exc:
                    log.warning("removing hook container %s failed: %s", container_id[:12], exc)
        return int(result.get("StatusCode", -1)), output


def _of_type(pod: ServicePod, kind: str) -> list[PodHook]:
    return [hook for hook in pod.hooks if hook.type == kind]


def hook_host_config_args(pod: ServicePod) -> dict[str, Any]:
    """The pod's host config for a hook container: no published ports, no restart policy."""
    args = host_config_args(pod)
    args.pop("port_bindings", None)
    args.pop("restart_policy", None)
    return args


def hook_create_args(pod: ServicePod, hook: PodHook, node_name: str) -> dict[str, Any]:
    """The pod's create arguments for a pre_start hook container.

    It must not carry the pod's ``io.kontena.service.*`` labels: the worker would take it for a
    duplicate of the pod's container.
    """
    args = create_args(pod, node_name)
    args.pop("ports", None)
    args.update(
        name=f"{pod.container_name}-{hook.type}-{secrets.token_hex(3)}",
        entrypoint=["/bin/sh", "-c"],
        command=[hook.cmd],
        labels={HOOK_CONTAINER_LABEL: "service_hook", HOOK_POD_LABEL: pod.id},
    )
    return args


def _log_output(pod: ServicePod, hook: PodHook, output: Any) -> None:
    text = output.decode(errors="replace") if isinstance(output, bytes) else str(output or "")
    if text.strip():
        log.info(
            "pod %s: %s hook %s said: %s", pod.id, hook.type, hook.name, text[-OUTPUT_LOG_LIMIT:]
        )
