"""The /nodes/update payload and address detection."""

from __future__ import annotations

from pathlib import Path

from agent.node_info import build_node_update, default_route, detect_private_ip, source_address
from tests.agent.fakes import SAMPLE_INFO

ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def test_default_route_picks_the_lowest_metric() -> None:
    assert default_route(ROUTE) == ("eth0", "192.0.2.1")


def test_default_route_without_gateway_or_route() -> None:
    header = ROUTE.splitlines()[0]
    assert default_route(
        header + "\nwg0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n"
    ) == (
        "wg0",
        None,
    )
    assert default_route(header + "\n") is None
    # A route that is down does not count.
    assert (
        default_route(header + "\neth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n")
        is None
    )


def test_source_address_towards_loopback() -> None:
    assert source_address("127.0.0.1") == "127.0.0.1"


def test_private_ip_falls_back_to_the_master_facing_address(tmp_path: Path) -> None:
    missing = tmp_path / "route"
    assert detect_private_ip("ws://127.0.0.1:8080/", missing) == "127.0.0.1"


def test_node_update_adds_kontena_fields() -> None:
    info = {**SAMPLE_INFO, "Plugins": {"Volume": ["local", "vieux/sshfs:1.2"], "Network": []}}
    payload = build_node_update(
        info, node_id="ID:1", node_name="n1", public_ip="203.0.113.1", private_ip="10.0.0.1"
    )
    assert payload["ID"] == "ID:1"
    assert payload["Name"] == "n1"
    assert payload["PublicIp"] == "203.0.113.1"
    assert payload["PrivateIp"] == "10.0.0.1"
    assert payload["AgentVersion"] == "1.5.2"
    assert payload["Drivers"] == {
        "Volume": [{"name": "local", "version": None}, {"name": "vieux/sshfs", "version": "1.2"}],
        "Network": [],
    }
    # Docker's own keys pass through untouched.
    for key in ("OperatingSystem", "KernelVersion", "Driver", "DockerRootDir", "MemTotal", "NCPU"):
        assert payload[key] == SAMPLE_INFO[key]
    assert info["ID"] == SAMPLE_INFO["ID"], "the Docker info dict is not modified"


def test_node_update_without_plugins() -> None:
    payload = build_node_update(
        {"ID": "x"}, node_id="x", node_name="n", public_ip="1.1.1.1", private_ip="1.1.1.1"
    )
    assert payload["Drivers"] == {"Volume": [], "Network": []}
