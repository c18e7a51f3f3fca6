"""``kontena-agent``: join a Kontena master and report this Docker node."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from functools import partial

from agent.config import AgentConfig, ConfigError, load_config
from agent.connection import EXIT_CONFIG, EXIT_CRASH, Agent
from agent.container_logs import LogClient, LogShipper
from agent.container_stats import ContainerReporter
from agent.docker_client import DockerApi, DockerEngine
from agent.handlers import NodeSession, NodeState, identify
from agent.pod_docker import PodDocker
from agent.pods import ServicePodManager
from core.protocol import PROTOCOL_VERSION

log = logging.getLogger("agent")

ENVIRONMENT_HELP = """\
environment:
  KONTENA_URI             master URL: ws://, wss://, http:// or https:// (required)
  KONTENA_TOKEN           grid token; joins (and on first join creates) the node
  KONTENA_NODE_TOKEN      node token of a node created with the API (wins over KONTENA_TOKEN)
  KONTENA_NODE_LABELS     comma-separated labels applied when the node first registers
  DOCKER_HOST             Docker Engine to report and manage (unix:///var/run/docker.sock)
  KONTENA_NODE_ID         node id instead of the Engine's ID (several agents on one Engine)
  KONTENA_NODE_NAME       node name instead of the Engine's hostname
  KONTENA_PUBLIC_IP       public address to report (default: the private address)
  KONTENA_PRIVATE_IP      private address to report (default: address of the default route)
  KONTENA_STATS_INTERVAL  seconds between node stats reports (60)
  KONTENA_CONTAINER_STATS_INTERVAL  seconds between container reports and stats (60)
  KONTENA_PING_INTERVAL   seconds between WebSocket pings (30)
  KONTENA_PING_TIMEOUT    seconds to wait for a pong before reconnecting (10)
  KONTENA_POD_SYNC_INTERVAL  seconds between service pod list fetches (30)
  KONTENA_LOG_LEVEL       debug, info, warning or error (info)

exit status: 0 stopped by SIGTERM/SIGINT, 2 bad configuration,
  3 the master refused the node for good (close code 4001, 4010, 4040 or 4041), 1 crash.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: settings come from the environment; flags only tune logging."""
    parser = argparse.ArgumentParser(
        prog="kontena-agent",
        description="Connect this Docker node to a Kontena master and keep it reported.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("KONTENA_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        type=str.lower,
    )
    parser.add_argument("--version", action="version", version=f"kontena-agent {PROTOCOL_VERSION}")
    return parser.parse_args(argv)


def build_agent(
    config: AgentConfig,
    docker: DockerApi,
    *,
    backoff_base: float = 1.0,
    pods: ServicePodManager | None = None,
    containers: ContainerReporter | None = None,
    logs: LogShipper | None = None,
) -> Agent:
    """Wire the connection loop to the node session, the Docker Engine and the pod manager."""
    state = NodeState()
    return Agent(
        config,
        identify=partial(identify, config, docker),
        session_factory=partial(
            NodeSession,
            config=config,
            docker=docker,
            state=state,
            pods=pods,
            containers=containers,
            logs=logs,
        ),
        backoff_base=backoff_base,
    )


def build_pod_manager(config: AgentConfig, engine: DockerEngine) -> ServicePodManager:
    """The service pod manager on the real Engine."""
    return ServicePodManager(PodDocker(engine), sync_interval=config.pod_sync_interval)


async def run_agent(config: AgentConfig, docker: DockerApi | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT or a fatal close code; returns the exit status."""
    engine = docker or DockerEngine(config.docker_host)
    # Service pods, container reports and container logs need the full Engine API; a stand-in
    # DockerApi (tests, the agents benchmark) runs without them.
    pods = containers = logs = None
    if isinstance(engine, DockerEngine):
        pods, containers = build_pod_manager(config, engine), ContainerReporter(engine)
        # Container logs: a follower of its own per container stream.
        logs = LogShipper(LogClient(engine.base_url))
    agent = build_agent(config, engine, pods=pods, containers=containers, logs=logs)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    try:
        return await agent.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if pods is not None:
            await pods.close()
        if logs is not None:
            await logs.close()
        engine.close()


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # websockets' debug log prints the handshake headers, i.e. the grid or node token.
    logging.getLogger("websockets").setLevel(max(logging.INFO, logging.getLogger().level))
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"kontena-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log.info("kontena-agent %s connecting to %s", PROTOCOL_VERSION, config.uri)
    try:
        return asyncio.run(run_agent(config))
    except Exception:
        log.exception("agent crashed")
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
