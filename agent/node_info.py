"""What the agent tells the master about its node: addresses and the ``/nodes/update`` payload."""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.protocol import PROTOCOL_VERSION

log = logging.getLogger(__name__)

AGENT_VERSION = PROTOCOL_VERSION
_RTF_UP, _RTF_GATEWAY = 0x1, 0x2


def default_route(route_text: str) -> tuple[str, str | None] | None:
    """``(interface, gateway or None)`` of the default IPv4 route in /proc/net/route text."""
    best: tuple[int, str, str | None] | None = None
    for line in route_text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[1] != "00000000" or fields[7] != "00000000":
            continue
        flags, metric = int(fields[3], 16), int(fields[6])
        if not flags & _RTF_UP:
            continue
        gateway = None
        if flags & _RTF_GATEWAY:
            # The kernel prints the address as a host-order (little-endian) hex word.
            gateway = socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
        if best is None or metric < best[0]:
            best = (metric, fields[0], gateway)
    return None if best is None else (best[1], best[2])


def source_address(target: str, port: int = 9) -> str | None:
    """The local address the kernel would use to reach ``target`` (a UDP connect sends nothing)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(target).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((target, port))
            address: str = sock.getsockname()[0]
            return address
    except OSError:
        return None


def detect_private_ip(master_uri: str, route_path: Path = Path("/proc/net/route")) -> str:
    """Address of the default-route interface, else the one facing the master, else loopback."""
    try:
        route = default_route(route_path.read_text())
    except OSError:
        route = None
    if route is not None and route[1] is not None:
        address = source_address(route[1])
        if address:
            return address
    host = urlsplit(master_uri).hostname
    if host:
        try:
            target = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0]
        except OSError:
            target = None
        address = source_address(str(target)) if target else None
        if address:
            return address
    return "127.0.0.1"


def _drivers(names: Any) -> list[dict[str, Any]]:
    """Plugin names (``local``, ``vieux/sshfs:latest``) as ``{name, version}``."""
    drivers: list[dict[str, Any]] = []
    for name in names if isinstance(names, list) else []:
        base, _, tag = str(name).rpartition(":") if ":" in str(name) else (str(name), "", "")
        drivers.append({"name": base, "version": tag or None})
    return drivers


def build_node_update(
    info: dict[str, Any],
    *,
    node_id: str,
    node_name: str,
    public_ip: str,
    private_ip: str,
) -> dict[str, Any]:
    """Docker ``info`` plus the fields the master's ``/nodes/update`` expects."""
    payload = dict(info)
    plugins = info.get("Plugins") or {}
    # The configured identity wins, so several agents on one Engine stay distinct nodes.
    payload["ID"] = node_id
    payload["Name"] = node_name
    payload["PublicIp"] = public_ip
    payload["PrivateIp"] = private_ip
    payload["AgentVersion"] = AGENT_VERSION
    payload["Drivers"] = {
        "Volume": _drivers(plugins.get("Volume")),
        "Network": _drivers(plugins.get("Network")),
    }
    return payload
