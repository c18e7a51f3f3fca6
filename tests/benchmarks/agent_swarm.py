"""The load process of ``tests.benchmarks.agents``: many real agents in one event loop.

Each agent is the real ``agent`` package (connection loop, RPC peer, node session) wired by
``agent.main.build_agent`` with a distinct node id and name. Only the Docker client is a
stand-in (tests/agent/fakes.py): the benchmark measures the master, not Docker.

Protocol with the parent: reads the grid tokens from stdin, prints ``ready`` once imported,
starts the agents when stdin says ``go`` (the parent's clock starts then), runs until SIGTERM,
stops every agent cleanly (close 1000) and prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import signal
import sys
from collections import Counter

from agent.config import AgentConfig
from agent.main import build_agent
from tests.agent.fakes import FakeDocker


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each socket is one descriptor)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Reconnects(logging.Handler):
    """Counts the agents' "reconnecting in" warnings: each is a failed or dropped connection."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.samples: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        """Count one warning and remember its (truncated) text."""
        message = record.getMessage()
        if "reconnecting in" in message:
            self.count += 1
            self.samples[message.split(";")[0][:120]] += 1


async def run_swarm(
    args: argparse.Namespace, tokens: list[str], per_grid: int
) -> dict[str, object]:
    """Run ``args.count`` agents until SIGTERM; agent ``i`` joins grid ``i // per_grid``."""
    agents = []
    for i in range(args.first, args.first + args.count):
        config = AgentConfig(
            uri=args.uri,
            grid_token=tokens[i // per_grid],
            node_id=f"BENCH:{args.run}:{i:05d}",
            node_name=f"bench-{args.run}-{i:05d}",
            # Given addresses: no default-route probe per agent.
            private_ip="127.0.0.1",
            public_ip="127.0.0.1",
            stats_interval=args.stats_interval,
            ping_interval=args.ping_interval,
            ping_timeout=10.0,
        )
        agents.append(build_agent(config, FakeDocker(running=0)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks = [asyncio.create_task(agent.run()) for agent in agents]
    await stop.wait()
    for agent in agents:
        agent.stop()
    codes = await asyncio.gather(*tasks, return_exceptions=True)
    return {"exit_codes": dict(Counter(str(code) for code in codes))}


def main() -> None:
    """``python -m tests.benchmarks.agent_swarm --uri ws://… --first 0 --count 500 …``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--run", required=True, help="distinguishes node ids between rounds")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--stats-interval", type=float, default=3600.0)
    parser.add_argument("--ping-interval", type=float, default=30.0)
    args = parser.parse_args()
    # Grid tokens come on stdin, never on a command line that `ps` shows.
    grids = json.loads(sys.stdin.readline())
    tokens, per_grid = list(grids["tokens"]), int(grids["per_grid"])
    raise_nofile_limit()
    reconnects = Reconnects()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    logging.getLogger("agent").addHandler(reconnects)
    logging.getLogger("agent").setLevel(logging.WARNING)
    # Warnings are counted, not printed (a join storm makes hundreds); errors still print.
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR)
    logging.getLogger("agent").addHandler(errors)
    logging.getLogger("agent").propagate = False
    # Imports done: say so, and start together with the other agent processes on "go".
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    summary = asyncio.run(run_swarm(args, tokens, per_grid))
    summary["reconnects"] = reconnects.count
    summary["reconnect_reasons"] = dict(reconnects.samples.most_common(5))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
