"""The mounts of a service pod that need no volume object: bind mounts and anonymous volumes.

A stateful pod's anonymous volumes live in its data container on the node (agent.pod_data), so
they must reach the agent even before named volumes (grid ``Volume`` objects, resolved per
scope by the volumes work) do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.service_spec import parse_volume


def plain_pod_volumes(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``{path, flags?, bind_mount?}`` for each ``/host:/path[:flags]`` and ``/path`` volume."""
    mounts = []
    for text in spec.get("volumes") or []:
        try:
            volume = parse_volume(str(text))
        except ValueError:
            continue  # rejected with a 422 when the service was saved
        if volume["volume"]:
            continue  # a named volume: resolved with its grid Volume object, not here
        mount: dict[str, Any] = {"path": volume["path"]}
        if volume["bind_mount"]:
            mount["bind_mount"] = volume["bind_mount"]
        if volume["flags"]:
            mount["flags"] = ",".join(volume["flags"])
        mounts.append(mount)
    return mounts
