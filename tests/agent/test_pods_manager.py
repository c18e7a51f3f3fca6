"""ServicePodManager rules that need no Docker: malformed lists, nudges, report de-duplication."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.pod_docker import PodDocker
from agent.pods import ServicePodManager
from core.protocol import ServicePod

ORPHAN = {
    "Id": "orphan-id",
    "Names": ["/old.svc-1"],
    "Created": 1,
    "Labels": {"io.kontena.service.id": "old", "io.kontena.service.instance_number": "1"},
}


class FakeApi:
    """Records Engine calls; lists one orphan container; inspect finds nothing."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(fn)
        if fn == "containers":
            labels = kwargs["filters"]["label"]
            return [ORPHAN] if labels == ["io.kontena.service.id"] or "old" in labels[0] else []
        if fn == "inspect_container":
            return {"Id": "orphan-id", "State": {"Status": "exited"}, "Config": ORPHAN}
        if fn == "remove_container":
            return None
        raise AssertionError(f"unexpected call {fn}")


class FakePeer:
    """Answers /node_service_pods/list with ``pods``; records set_state params."""

    def __init__(self, pods: list[Any]) -> None:
        self.pods = pods
        self.sent: list[list[Any]] = []

    async def request(self, method: str, params: list[Any], timeout: float = 30) -> Any:
        self.sent.append([method, *params])
        return {"service_pods": self.pods} if method == "/node_service_pods/list" else {}


async def test_a_malformed_pod_keeps_unlisted_containers() -> None:
    api = FakeApi()
    manager = ServicePodManager(PodDocker(api))
    peer = FakePeer([{"id": "bad/1", "service_id": "bad"}])  # most fields missing
    await manager.sync(peer)  # type: ignore[arg-type]
    assert manager.workers == {}
    assert api.calls == []  # not even listed: nothing may be removed on a partial list

    peer.pods = []
    await manager.sync(peer)  # type: ignore[arg-type]
    assert set(manager.workers) == {"old/1"}
    await asyncio.wait_for(manager.workers["old/1"].task, 5)
    # Removed; an unlisted pod's data container (stateful pods have one) is kept.
    assert api.calls[-2:] == ["inspect_container", "remove_container"]
    await manager.close()


async def test_notify_update_answers_at_once_and_reports_are_not_repeated() -> None:
    manager = ServicePodManager(PodDocker(FakeApi()))
    assert await manager.notify_update() == {}
    assert await manager.restart("nope", 1) == {}
    peer = FakePeer([])
    manager.attach(peer, "node-1", "n1")  # type: ignore[arg-type]
    pod = ServicePod(
        id="s/1",
        service_id="s",
        service_name="s",
        instance_number=1,
        desired_state="running",
        deploy_rev="r1",
        service_revision=1,
        image_name="x",
        grid_name="g",
    )
    for _ in range(3):
        await manager._report(pod, "running", None)
    await manager._report(pod, "stopped", "boom")
    states = [p for p in peer.sent if p[0] == "/node_service_pods/set_state"]
    assert states == [
        [
            "/node_service_pods/set_state",
            "node-1",
            {"service_id": "s", "instance_number": 1, "rev": "r1", "state": "running"},
        ],
        [
            "/node_service_pods/set_state",
            "node-1",
            {
                "service_id": "s",
                "instance_number": 1,
                "rev": "r1",
                "state": "stopped",
                "error": "boom",
            },
        ],
    ]
    await manager.close()
