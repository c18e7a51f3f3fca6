#!/usr/bin/env bash
# Private PostgreSQL + Redis + one dockerd (with local/busybox:latest), then the
# deploy-vs-Swarm benchmark, then everything stopped again:
#   bash tests/benchmarks/deploy_vs_swarm.sh [--instances N]
# (`uv run python -m tests.benchmarks.deploy_vs_swarm` runs this script itself.)
# Needs root (dockerd) and the Debian packages tests/run.sh installs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/env/lib.sh
source tests/env/lib.sh

trap 'trap - EXIT; stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

reap_stale_envs
make_env_dir
{ read -r pg_port && read -r redis_port; } < <(free_ports 2)
start_postgres "$KT_ENV_DIR" "$pg_port"
"$KT_PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres kontena_bench
start_redis "$KT_ENV_DIR" "$redis_port"
kt_busybox_tarball >/dev/null
start_dockerds "$KT_ENV_DIR" node1
import_busybox "$KT_ENV_DIR/node1" local/busybox:latest

export KONTENA_BENCH_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:$pg_port/kontena_bench"
export KONTENA_BENCH_REDIS_URL="redis://127.0.0.1:$redis_port/0"
export KONTENA_BENCH_DOCKER_HOST="unix://$KT_ENV_DIR/node1/docker.sock"
export KONTENA_BENCH_DIR="$KT_ENV_DIR"
uv run --frozen python -m tests.benchmarks.deploy_vs_swarm "$@"
