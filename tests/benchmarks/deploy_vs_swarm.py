"""Deploy N busybox instances through the master, through Swarm, and directly; on one dockerd.

    uv run python -m tests.benchmarks.deploy_vs_swarm [--instances 30]

Without ``KONTENA_BENCH_DOCKER_HOST`` this re-runs itself through
``tests/benchmarks/deploy_vs_swarm.sh``, which starts a private PostgreSQL, Redis and dockerd
(as ``tests/run.sh`` does) and stops them afterwards. The three runs, in order:

1. master: ``kontena-master api`` + ``worker`` processes and one real agent on the daemon; time
   from ``POST /v1/services/…/deploy`` to the deploy's ``success``.
2. Swarm: ``docker swarm init`` on the same daemon, ``docker service create --replicas N``; time
   until N tasks run. The service is removed and the swarm left afterwards.
3. direct: create+start N containers with the docker SDK on 4 threads.

Every container is removed between runs, so each starts from an empty daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx

from core.deployer import batch_size
from tests.benchmarks.agent_procs import ApiProcess, _stop

IMAGE = "local/busybox:latest"
CMD = ["sleep", "3600"]
GRID = "bench"
MIN_HEALTH = 0.0  # every instance may be down at once: the largest batches the master allows
POLL = 0.1  # every run polls its "done" condition at the same interval
TARGET_SWARM = 0.7
TARGET_DIRECT = 1.5


def _wait(check: Callable[[], Any], deadline: float, what: str) -> Any:
    """Call ``check()`` every POLL seconds until it returns something truthy."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not happen within {deadline} s")
        time.sleep(POLL)


def _remove_all(client: docker.DockerClient) -> None:
    """Force-remove every container on the daemon (each run starts from an empty daemon)."""

    def remove(container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):  # Swarm removed it meanwhile
            client.api.remove_container(container_id, force=True)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(remove, [c["Id"] for c in client.api.containers(all=True)]))


def _master_env(api: ApiProcess) -> dict[str, str]:
    return {key: value for key, value in api.env.items() if key != "KONTENA_PORT"}


def run_master(client: docker.DockerClient, host: str, n: int, tmp: str) -> float:
    """Seconds from POST deploy to the deploy's ``success`` (API, worker, one agent)."""
    db_url, redis_url = (
        os.environ["KONTENA_BENCH_DATABASE_URL"],
        os.environ["KONTENA_BENCH_REDIS_URL"],
    )
    api = ApiProcess(db_url, redis_url, tmp)
    env = _master_env(api)
    cli = [sys.executable, "-m", "api.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*cli, "token", "create", "--token"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    procs: list[subprocess.Popen[str]] = []
    logs = Path(tmp)
    try:
        with api, httpx.Client(base_url=api.http_url, headers=headers, timeout=30) as http:
            with (logs / "worker.log").open("ab") as log:
                procs.append(
                    subprocess.Popen([*cli, "worker"], env=env, stderr=log, stdout=log, text=True)
                )
            asyncio.run(api.wait_ready())
            grid = http.post("/v1/grids", json={"name": GRID, "initial_size": 1})
            grid.raise_for_status()
            agent_env = {
                **os.environ,
                "KONTENA_URI": api.ws_url,
                "KONTENA_TOKEN": grid.json()["token"],
                "DOCKER_HOST": host,
                "KONTENA_NODE_ID": "BENCH:NODE1",
                "KONTENA_NODE_NAME": "node1",
                "KONTENA_LOG_LEVEL": "warning",
            }
            with (logs / "agent.log").open("ab") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "agent.main"],
                        env=agent_env,
                        stderr=log,
                        stdout=log,
                        text=True,
                    )
                )

            def online() -> bool:
                nodes = http.get(f"/v1/grids/{GRID}/nodes").json()["nodes"]
                return any(node["status"] == "online" for node in nodes)

            _wait(online, 60, "the agent's node online")
            created = http.post(
                f"/v1/grids/{GRID}/services",
                json={
                    "name": "bench",
                    "image": IMAGE,
                    "stateful": False,
                    "instances": n,
                    "cmd": CMD,
                    "deploy_opts": {"min_health": MIN_HEALTH},
                },
            )
            created.raise_for_status()
            base = f"/v1/services/{GRID}/null/bench"
            started, wall = time.monotonic(), time.time()
            response = http.post(f"{base}/deploy", json={})
            response.raise_for_status()
            url = f"{base}/deploys/{response.json()['id']}"

            def finished() -> dict[str, Any] | None:
                body: dict[str, Any] = http.get(url).json()
                return body if body["state"] in ("success", "error") else None

            deploy = _wait(finished, 300, "the master's deploy finished")
            elapsed = time.monotonic() - started
            if deploy["state"] != "success":
                raise RuntimeError(f"the master's deploy failed: {deploy.get('reason')}")
            running = client.api.containers(filters={"label": "io.kontena.service.id"})
            if len(running) != n:
                raise RuntimeError(f"deploy success but {len(running)} containers run, not {n}")
            print(_timeline(client, running, wall, elapsed), file=sys.stderr)
    finally:
        for proc in reversed(procs):  # the agent first, so it recreates nothing we remove
            _stop(proc, 15)
        _remove_all(client)
    return elapsed


def _stamp(value: str) -> float:
    """Docker's RFC 3339 nanosecond timestamp as epoch seconds."""
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp() + float(f"0.{frac or 0}")


def _timeline(
    client: docker.DockerClient, running: list[dict[str, Any]], wall: float, elapsed: float
) -> str:
    """Where the master's time went: containers' created/started offsets from POST deploy."""
    facts = [client.api.inspect_container(c["Id"]) for c in running]
    created = sorted(_stamp(f["Created"]) - wall for f in facts)
    started = sorted(_stamp(f["State"]["StartedAt"]) - wall for f in facts)
    return (
        f"master timeline (s after POST deploy): first created {created[0]:.2f}, "
        f"20th created {created[min(19, len(created) - 1)]:.2f}, "
        f"20th started {started[min(19, len(started) - 1)]:.2f}, "
        f"21st created {created[min(20, len(created) - 1)]:.2f}, "
        f"last started {started[-1]:.2f}, success seen {elapsed:.2f}"
    )


def run_swarm(client: docker.DockerClient, host: str, n: int) -> float:
    """Seconds from ``docker service create --replicas n`` until n tasks run."""
    docker_cli = ["docker", "-H", host]
    subprocess.run(
        [*docker_cli, "swarm", "init", "--advertise-addr", "127.0.0.1"],
        check=True,
        capture_output=True,
    )
    try:
        started = time.monotonic()
        create = ["service", "create", "--detach", "--name", "bench", "--replicas", str(n)]
        subprocess.run(
            [*docker_cli, *create, IMAGE, *CMD],
            check=True,
            capture_output=True,
        )
        service = client.services.get("bench")

        def converged() -> bool:
            tasks = service.tasks(filters={"desired-state": "running"})
            return sum(task["Status"]["State"] == "running" for task in tasks) >= n  # type: ignore[no-any-return]

        _wait(converged, 300, f"{n} Swarm tasks running")
        elapsed = time.monotonic() - started
        service.remove()
        _wait(lambda: not client.api.containers(all=True), 120, "Swarm's containers gone")
    finally:
        subprocess.run([*docker_cli, "swarm", "leave", "--force"], capture_output=True)
        _remove_all(client)
    return elapsed


def run_direct(client: docker.DockerClient, n: int) -> float:
    """Seconds to create+start n containers with the docker SDK on 4 threads."""
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda i: client.containers.run(IMAGE, CMD, name=f"direct-{i}", detach=True),
                    range(1, n + 1),
                )
            )
        return time.monotonic() - started
    finally:
        _remove_all(client)


def report(n: int, master: float, swarm: float, direct: float) -> str:
    """The Markdown table of the three times and the two ratios against their targets."""
    size = batch_size(n, MIN_HEALTH)
    batches = -(-n // size)

    def verdict(ratio: float, target: float) -> str:
        return "met" if ratio <= target else "MISSED"

    return "\n".join(
        [
            f"{n} busybox instances (`{' '.join(CMD)}`, no ports) on one dockerd; master deploy "
            f"with deploy_opts.min_health={MIN_HEALTH:g} → batches of {size} ({batches} batches)",
            "",
            "| run | seconds |",
            "|---|---:|",
            f"| master (POST deploy → success) | {master:.2f} |",
            f"| Swarm (service create → {n} running) | {swarm:.2f} |",
            f"| direct (docker SDK, 4 threads) | {direct:.2f} |",
            "",
            "| ratio | value | target | |",
            "|---|---:|---:|---|",
            f"| master / Swarm | {master / swarm:.2f} | <= {TARGET_SWARM} "
            f"| {verdict(master / swarm, TARGET_SWARM)} |",
            f"| master / direct | {master / direct:.2f} | <= {TARGET_DIRECT} "
            f"| {verdict(master / direct, TARGET_DIRECT)} |",
        ]
    )


def main() -> int:
    """Run the three benchmarks in one go and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=30)
    args = parser.parse_args()
    host = os.environ.get("KONTENA_BENCH_DOCKER_HOST")
    if not host:
        script = Path(__file__).with_suffix(".sh")
        return subprocess.run(["bash", str(script), *sys.argv[1:]], check=False).returncode
    client = docker.DockerClient(base_url=host, version=None, timeout=120)
    tmp = os.environ["KONTENA_BENCH_DIR"]
    try:
        _remove_all(client)
        master = run_master(client, host, args.instances, tmp)
        print(f"master: {master:.2f} s", file=sys.stderr)
        swarm = run_swarm(client, host, args.instances)
        print(f"swarm: {swarm:.2f} s", file=sys.stderr)
        direct = run_direct(client, args.instances)
        print(f"direct: {direct:.2f} s", file=sys.stderr)
    finally:
        client.close()
    print(report(args.instances, master, swarm, direct))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
