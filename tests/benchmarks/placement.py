"""Benchmark: placements per second of plan_deploy (pure, in memory).

Run: ``uv run python -m tests.benchmarks.placement [--nodes 100] [--instances 1000]``. The grid has
``--nodes`` nodes over 5 availability zones, with 3 instances of other services per node already
placed (some publishing ports); each strategy then places ``--instances`` instances with
affinity rules that touch every key. The goal (facts file) is >= 100 placements/s.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import replace

from scheduler.placement import InstanceView, NodeView, ServiceView, plan_deploy


def grid(node_count: int) -> tuple[list[NodeView], list[InstanceView]]:
    """Nodes over 5 zones plus 3 instances of other services on each."""
    nodes = [
        NodeView(
            id=f"node-{i}",
            name=f"node-{i}",
            node_number=i,
            labels=(f"az=z{i % 5}", "ssd" if i % 4 else "hdd", *(("reserved",) if i == 1 else ())),
            cpus=8,
            mem_total=32 << 30,
            mem_free=24 << 30,
        )
        for i in range(1, node_count + 1)
    ]
    existing = [
        InstanceView(
            service_id=f"other-{k}",
            service_name=f"infra.other-{k}",
            instance_number=i,
            node_id=f"node-{i}",
            node_ports=(9000 + k,) if k == 0 else (),
        )
        for i in range(1, node_count + 1)
        for k in range(3)
    ]
    return nodes, existing


def measure(service: ServiceView, nodes: list[NodeView], existing: list[InstanceView]) -> float:
    """Placements per second for one plan."""
    started = time.perf_counter()
    plan = plan_deploy(service, nodes, existing, ("label!=reserved",), random.Random(1))
    elapsed = time.perf_counter() - started
    assert plan.ok, plan.error
    return len(plan.placements) / elapsed


def main() -> None:
    """Print placements/s per strategy."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--instances", type=int, default=1000)
    args = parser.parse_args()
    nodes, existing = grid(args.nodes)
    base = ServiceView(
        id="bench",
        name="shop.web",
        stack="shop",
        instances=args.instances,
        affinity=("label==/^(ssd|hdd)$/", "service!=~other-1", "container!=~web-%s", "node!=x"),
        cpus=0.5,
        memory=16 << 20,
    )
    per_node = max(1, args.instances // args.nodes)
    cases = {
        "ha": base,
        "ha (redeploy, sticky)": base,
        "random": replace(base, strategy="random"),
        "daemon": replace(base, strategy="daemon", instances=per_node),
    }
    print(f"{args.nodes} nodes, {len(existing)} existing instances")
    for label, service in cases.items():
        current = existing
        if label.startswith("ha (redeploy"):
            plan = plan_deploy(service, nodes, existing, (), random.Random(2))
            current = existing + [
                InstanceView("bench", "shop.web", p.instance_number, p.node_id)
                for p in plan.placements
            ]
        rate = measure(service, nodes, current)
        count = service.instances * (args.nodes if service.strategy == "daemon" else 1)
        print(f"{label:>22}: {count:>6} instances  {rate:>10,.0f} placements/s")


if __name__ == "__main__":
    main()
