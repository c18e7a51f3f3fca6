"""Bind mounts and anonymous volumes of a service reach its pod; named ones are not ours here."""

from __future__ import annotations

from core.pod_volumes import plain_pod_volumes


def test_bind_mounts_and_anonymous_volumes_become_pod_mounts() -> None:
    spec = {"volumes": ["/host/data:/data:ro,z", "/cache", "logs:/var/log", "/srv:/srv"]}
    assert plain_pod_volumes(spec) == [
        {"path": "/data", "bind_mount": "/host/data", "flags": "ro,z"},
        {"path": "/cache"},
        {"path": "/srv", "bind_mount": "/srv"},
    ]


def test_no_volumes() -> None:
    assert plain_pod_volumes({}) == []
    assert plain_pod_volumes({"volumes": None}) == []
