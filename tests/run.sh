#!/usr/bin/env bash
# The project's single test command:  bash tests/run.sh [pytest args...]
#
# Installs what is missing (Debian packages, uv), starts PRIVATE PostgreSQL
# and Redis instances on free loopback ports in a temp dir, runs
# uv sync -> ruff check -> ruff format --check -> mypy -> pytest (failing
# fast), then stops everything it started. Works as root on a bare Debian 12
# machine (CI) and on a machine that already runs its own PostgreSQL/Redis,
# which are never used or touched.
#
#   KONTENA_TEST_SKIP_LINT=1   skip ruff and mypy (quick local runs)
#   KONTENA_TEST_NO_PEBBLE=1   start no Pebble (ACME tests then skip, except
#                              under CI=true)
#   KONTENA_TEST_NO_DOCKER=1   start no Docker daemons (docker tests then skip,
#                              except under CI=true, where they fail)
#   KONTENA_TEST_DOCKER_NODES=N  how many Docker daemons (default 2)
#   KONTENA_TEST_TMPDIR=DIR    where the run's temp dir goes (default: /dev/shm
#                              if it is tmpfs, else /tmp; see tests/env/lib.sh)
#
# Tests get:
#   KONTENA_TEST_DATABASE_URL  postgresql+asyncpg://... (database kontena_test)
#   KONTENA_TEST_PG_ADMIN_URL  postgresql://... (database postgres, to create more DBs)
#   KONTENA_TEST_REDIS_URL     redis://127.0.0.1:PORT/0
#   KONTENA_TEST_ENV_DIR       the run's temp dir (logs, sockets; removed at exit)
#   KONTENA_TEST_DOCKER_HOSTS  unix:///.../node1/docker.sock,unix:///.../node2/...
#                              (private dockerd per node, labelled
#                              kontena.test.node=nodeN; unset with NO_DOCKER)
#   KONTENA_TEST_BUSYBOX_IMAGE local/busybox:latest, imported into every daemon
#   KONTENA_TEST_ACME_DIRECTORY   https://127.0.0.1:PORT/dir (private Pebble;
#                              unset with KONTENA_TEST_NO_PEBBLE=1)
#   KONTENA_TEST_ACME_CA       the CA file Pebble's HTTPS certificate chains to
#   KONTENA_TEST_PEBBLE_MANAGEMENT  https://127.0.0.1:PORT (/roots/0 ...)
#   KONTENA_TEST_CHALLTESTSRV  http://127.0.0.1:PORT (pebble-challtestsrv API)
#   KONTENA_TEST_DNS_RESOLVER  127.0.0.1:PORT (challtestsrv's DNS, Pebble's resolver)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=tests/env/lib.sh
source tests/env/lib.sh

# Debian packages the environment needs. Add new services' packages here.
KT_DEBS=(postgresql redis-server docker-compose) # docker-compose: checks deploy/compose.yaml
# Pebble + pebble-challtestsrv (ACME tests); curl polls their readiness.
[[ ${KONTENA_TEST_NO_PEBBLE:-0} == 1 ]] || KT_DEBS+=(pebble curl)
command -v python3 >/dev/null || KT_DEBS+=(python3) # free_ports needs it
if [[ ${KONTENA_TEST_NO_DOCKER:-0} != 1 ]]; then
	# dockerd, containerd, runc, docker-init + a static busybox for the test image.
	KT_DEBS+=(docker.io busybox-static)
	# The private-registry test: Debian's distribution registry + htpasswd (bcrypt) for its auth.
	KT_DEBS+=(docker-registry apache2-utils)
fi

# ---------------------------------------------------------------- phase timing

_PHASES=() # "name|microseconds|result"
_PHASE=""
_PHASE_T0=0
phase_begin() { _PHASE=$1 _PHASE_T0=$(_kt_now_us); }
phase_end() {
	_PHASES+=("$_PHASE|$(($(_kt_now_us) - _PHASE_T0))|${1:-ok}")
	_PHASE=""
}
phase_skip() { _PHASES+=("$1|0|skipped"); }
# run_phase NAME CMD...: run CMD as a timed phase. Shell functions run in this
# shell (so they can export variables); programs run via run_child. A failure
# exits via `set -e` and on_exit records the open phase as failed.
run_phase() {
	phase_begin "$1"
	shift
	if declare -F "$1" >/dev/null; then
		"$@"
	else
		run_child "$@"
	fi
	phase_end
}

# run_child CMD...: run a program in the background and wait for it. Why:
# bash runs a TERM trap only after a foreground child exits, so a CI timeout
# would never reach pytest; `wait` is interrupted instead. The subshell resets
# INT/QUIT (bash ignores them in background jobs) so ^C still reaches pytest,
# and <&0 keeps stdin (e.g. for pytest --pdb).
_CHILD=""
run_child() {
	(
		trap - INT QUIT TERM
		exec "$@"
	) <&0 &
	_CHILD=$!
	local rc=0
	wait "$_CHILD" || rc=$?
	_CHILD=""
	return "$rc"
}

# stop_child: on an interrupted run, give the child a moment to finish by
# itself (^C reaches it directly), then TERM, then KILL.
stop_child() {
	[[ -n $_CHILD ]] || return 0
	if ! _kt_wait_until 3 "the interrupted command to exit" _kt_pid_gone "$_CHILD"; then
		kill -TERM "$_CHILD" 2>/dev/null
		_kt_wait_until 15 "the interrupted command to stop" _kt_pid_gone "$_CHILD" ||
			kill -KILL "$_CHILD" 2>/dev/null
	fi
	wait "$_CHILD" 2>/dev/null
	_CHILD=""
}

print_phases() {
	local row name us result
	printf '\n%-24s %9s  %s\n' phase seconds result >&2
	for row in "${_PHASES[@]}"; do
		IFS='|' read -r name us result <<<"$row"
		printf '%-24s %5d.%03d  %s\n' "$name" $((us / 1000000)) $((us % 1000000 / 1000)) "$result" >&2
	done
}

on_exit() {
	local rc=$?
	trap - EXIT
	trap "" INT TERM # a second ^C must not cut the teardown short (it has deadlines)
	set +e
	stop_child
	[[ -n $_PHASE ]] && phase_end "FAILED (exit $rc)"
	run_phase teardown stop_all
	print_phases
	if ((rc == 5)) && [[ ${_PHASES[-2]} == pytest\|* ]]; then
		echo "pytest collected no tests: that counts as a failure" >&2
	fi
	((rc == 0)) && echo "tests/run.sh: all phases passed" >&2
	exit "$rc"
}
trap on_exit EXIT
# A plain `trap stop_all INT` would let the script carry on after ^C: exit
# instead, which runs on_exit (teardown) exactly once. TERM is passed on to
# the running command at once; on ^C the terminal already sent it INT.
trap 'exit 130' INT
trap '[[ -n $_CHILD ]] && kill -TERM "$_CHILD" 2>/dev/null; exit 143' TERM

# ---------------------------------------------------------------- tools

run_phase "install debs" ensure_debs "${KT_DEBS[@]}"
run_phase "install uv" ensure_uv

# ---------------------------------------------------------------- services

setup_services() {
	reap_stale_envs
	make_env_dir
	local pg_port redis_port
	{ read -r pg_port && read -r redis_port; } < <(free_ports 2)
	start_postgres "$KT_ENV_DIR" "$pg_port"
	"$KT_PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres kontena_test
	start_redis "$KT_ENV_DIR" "$redis_port"
	# New services start here and export their URLs.
	if [[ ${KONTENA_TEST_NO_PEBBLE:-0} != 1 ]]; then
		start_pebble "$KT_ENV_DIR/pebble" || return 1
	fi

	export KONTENA_TEST_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:$pg_port/kontena_test"
	export KONTENA_TEST_PG_ADMIN_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
	export KONTENA_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"
	export KONTENA_TEST_ENV_DIR="$KT_ENV_DIR"
}
run_phase "start services" setup_services

# Private Docker daemons as test nodes (see start_dockerd in tests/env/lib.sh),
# booting in parallel; then the busybox image is imported into all at once.
start_docker_nodes() {
	local count=${KONTENA_TEST_DOCKER_NODES:-2} i names=() name hosts=() pids=() pid
	local image=local/busybox:latest
	for ((i = 1; i <= count; i++)); do names+=("node$i"); done
	kt_busybox_tarball >/dev/null || return 1
	start_dockerds "$KT_ENV_DIR" "${names[@]}" || return 1
	for name in "${names[@]}"; do
		import_busybox "$KT_ENV_DIR/$name" "$image" &
		pids+=("$!")
		hosts+=("unix://$KT_ENV_DIR/$name/docker.sock")
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || { _kt_log "importing $image failed"; return 1; }
	done
	export KONTENA_TEST_DOCKER_HOSTS
	KONTENA_TEST_DOCKER_HOSTS=$(IFS=,; echo "${hosts[*]}")
	export KONTENA_TEST_BUSYBOX_IMAGE=$image
}
if [[ ${KONTENA_TEST_NO_DOCKER:-0} == 1 ]]; then
	phase_skip "start docker nodes"
else
	run_phase "start docker nodes" start_docker_nodes
fi
env | grep '^KONTENA_TEST_' | sort >&2

# ---------------------------------------------------------------- checks

if [[ -f uv.lock ]]; then
	run_phase "uv sync" uv sync --frozen
else
	run_phase "uv sync (no uv.lock)" uv sync
fi
# Everything below uses exactly the environment synced above (no re-lock).
UV_RUN=(uv run --frozen)

if [[ ${KONTENA_TEST_SKIP_LINT:-0} == 1 ]]; then
	phase_skip "ruff check"
	phase_skip "ruff format --check"
	phase_skip "mypy"
else
	run_phase "ruff check" "${UV_RUN[@]}" ruff check .
	run_phase "ruff format --check" "${UV_RUN[@]}" ruff format --check .
	run_phase "mypy" "${UV_RUN[@]}" mypy
fi

# Any non-zero exit fails the run, including 5 (no tests collected).
run_phase "pytest" "${UV_RUN[@]}" pytest "$@"
