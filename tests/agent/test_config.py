"""Agent settings from the environment."""

from __future__ import annotations

import pytest

from agent.config import DEFAULT_DOCKER_HOST, ConfigError, load_config, websocket_url

BASE = {"KONTENA_URI": "ws://master.example:8080", "KONTENA_TOKEN": "grid-token"}


def test_defaults() -> None:
    config = load_config(BASE)
    assert config.uri == "ws://master.example:8080/"
    assert config.grid_token == "grid-token"
    assert config.node_token is None
    assert config.labels == []
    assert config.docker_host == DEFAULT_DOCKER_HOST == "unix:///var/run/docker.sock"
    assert (config.node_id, config.node_name) == (None, None)
    assert (config.public_ip, config.private_ip) == (None, None)
    assert (config.stats_interval, config.ping_interval) == (60.0, 30.0)


def test_every_variable_is_read() -> None:
    config = load_config(
        {
            "KONTENA_URI": "https://master.example/",
            "KONTENA_NODE_TOKEN": "node-token",
            "KONTENA_NODE_LABELS": "region=eu, az=a,,ssd ",
            "DOCKER_HOST": "unix:///run/d1.sock",
            "KONTENA_NODE_ID": "ID:1",
            "KONTENA_NODE_NAME": "n1",
            "KONTENA_PUBLIC_IP": "203.0.113.1",
            "KONTENA_PRIVATE_IP": "10.0.0.1",
            "KONTENA_STATS_INTERVAL": "15",
            "KONTENA_PING_INTERVAL": "2.5",
            "KONTENA_PING_TIMEOUT": "4",
        }
    )
    assert config.uri == "wss://master.example/"
    assert config.node_token == "node-token"
    assert config.grid_token is None
    assert config.labels == ["region=eu", "az=a", "ssd"]
    assert config.docker_host == "unix:///run/d1.sock"
    assert (config.node_id, config.node_name) == ("ID:1", "n1")
    assert (config.public_ip, config.private_ip) == ("203.0.113.1", "10.0.0.1")
    assert (config.stats_interval, config.ping_interval, config.ping_timeout) == (15, 2.5, 4)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ws://m:8080", "ws://m:8080/"),
        ("wss://m", "wss://m/"),
        ("http://m:8080/", "ws://m:8080/"),
        ("HTTPS://m/kontena", "wss://m/kontena"),
        (" http://127.0.0.1:9292 ", "ws://127.0.0.1:9292/"),
    ],
)
def test_uri_becomes_a_websocket_url(given: str, expected: str) -> None:
    assert websocket_url(given) == expected


@pytest.mark.parametrize("uri", ["master.example", "ftp://m/", "ws://"])
def test_bad_uri_is_refused(uri: str) -> None:
    with pytest.raises(ConfigError, match="KONTENA_URI must be"):
        load_config({**BASE, "KONTENA_URI": uri})


def test_missing_uri_is_named() -> None:
    with pytest.raises(ConfigError, match="KONTENA_URI is required"):
        load_config({"KONTENA_TOKEN": "t"})


def test_missing_token_is_named() -> None:
    with pytest.raises(
        ConfigError, match=r"KONTENA_TOKEN \(grid token\) or KONTENA_NODE_TOKEN is required"
    ):
        load_config({"KONTENA_URI": "ws://m", "KONTENA_TOKEN": "  "})


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_bad_interval_is_named(value: str) -> None:
    with pytest.raises(ConfigError, match="KONTENA_STATS_INTERVAL"):
        load_config({**BASE, "KONTENA_STATS_INTERVAL": value})


def test_repr_never_shows_tokens() -> None:
    config = load_config({**BASE, "KONTENA_NODE_TOKEN": "node-secret"})
    assert "grid-token" not in repr(config)
    assert "node-secret" not in repr(config)
