# shellcheck shell=bash
# Test-environment helpers, sourced by tests/run.sh.
#
# Every service the tests need (PostgreSQL, Redis, later Docker daemons and
# Pebble) is a PRIVATE instance: its own directory under one temp dir, its own
# loopback port, started by us and stopped by us by pid. The machine's own
# services (e.g. PostgreSQL on 5432, Redis on 6379) are never used or touched,
# so the suite behaves the same on a dev box, on CI and on a bare machine.
#
# Functions return non-zero on failure explicitly (they do not rely on
# `set -e`, which bash silently disables inside `if`/`||` contexts).
#
# How to add a service (Docker daemons, Pebble, ...):
#   1. add its Debian package to KT_DEBS in tests/run.sh;
#   2. write start_<name> DIR ...: launch it with _kt_detached (no inherited
#      fds, own session), wait with _kt_wait_until, then kt_on_stop a
#      command that stops it by pid;
#   3. call it from the "services" section of tests/run.sh and export its
#      KONTENA_TEST_* variables.
# stop_all and the stale-run reaper then handle it with no further changes.

KT_ENV_DIR="${KT_ENV_DIR:-}" # the run's temp dir (set by make_env_dir)
_KT_STOP_CMDS=()             # shell-quoted stop commands, run in reverse order
_KT_APT_UPDATED=0

_kt_log() { printf '[test-env] %s\n' "$*" >&2; }

# Monotonic-enough wall clock in microseconds (bash 5 builtin, no fork).
_kt_now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# _kt_wait_until SECONDS DESCRIPTION CMD...: poll CMD until it succeeds or the
# deadline passes. Short poll interval, no fixed sleeps. CMD returning 2 means
# "will never succeed" (e.g. the daemon already died): give up at once.
_kt_wait_until() {
	local timeout=$1 desc=$2 rc
	shift 2
	local deadline=$(($(_kt_now_us) + timeout * 1000000))
	while true; do
		rc=0
		"$@" >/dev/null 2>&1 || rc=$?
		((rc == 0)) && return 0
		if ((rc == 2)); then
			_kt_log "gave up waiting for $desc"
			return 1
		fi
		if (($(_kt_now_us) > deadline)); then
			_kt_log "timed out after ${timeout}s waiting for $desc"
			return 1
		fi
		sleep 0.05
	done
}

# _kt_detached CMD...: run CMD with stdin from /dev/null, in its own session
# (so ^C to the test run does not hit it before stop_all does) and with every
# fd > 2 closed: a daemon holding e.g. a CI lock-file fd would block the next
# run. Output stays wherever the caller redirects it. CMD must be a program,
# not a shell function.
_kt_detached() {
	(
		_kt_close_fds
		exec setsid "$@" </dev/null
	)
}
# _kt_spawn PIDFILE LOG CMD...: start CMD in the background in its own session,
# with no inherited fds, and write ITS pid to PIDFILE. (`_kt_detached … &` would
# record the pid of a forked shell instead, and stopping that leaves CMD running.)
_kt_spawn() {
	local pidfile=$1 log=$2
	shift 2
	(
		_kt_close_fds
		exec setsid "$@" </dev/null >>"$log" 2>&1
	) &
	echo "$!" >"$pidfile"
}
# _kt_close_fds: close every fd > 2 of the current (sub)shell.
_kt_close_fds() {
	local fd
	for fd in /proc/"$BASHPID"/fd/*; do
		fd=${fd##*/}
		((fd > 2)) && exec {fd}>&-
	done
	return 0
}

# _kt_kill_pidfile PIDFILE NAME: stop a daemon by the pid in PIDFILE, but only
# if that pid still runs a process called NAME (guards against pid reuse).
# TERM, then KILL after a deadline.
_kt_kill_pidfile() {
	local pidfile=$1 name=$2 pid comm
	[[ -s $pidfile ]] || return 0
	pid=$(head -n1 "$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 0
	[[ $comm == "$name"* ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	if ! _kt_wait_until 10 "$name (pid $pid) to exit" _kt_pid_gone "$pid"; then
		kill -KILL "$pid" 2>/dev/null
		_kt_wait_until 5 "$name (pid $pid) to die" _kt_pid_gone "$pid"
	fi
}
# Gone = no such process, or a zombie waiting for init to reap it.
_kt_pid_gone() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[[ ${stat%% *} == Z ]]
}

# ---------------------------------------------------------------- stop registry

# kt_on_stop CMD...: remember how to stop something we started. Kept in memory
# for stop_all and mirrored into $KT_ENV_DIR/.kt-stop so a later run can clean
# up after a run that was killed with SIGKILL (see reap_stale_envs).
kt_on_stop() {
	local line
	printf -v line '%q ' "$@"
	_KT_STOP_CMDS+=("$line")
	if [[ -n $KT_ENV_DIR && -d $KT_ENV_DIR ]]; then
		printf '%s\n' "$line" >>"$KT_ENV_DIR/.kt-stop"
	fi
}

# stop_all: stop everything registered (newest first), then remove the temp
# dir. Safe to call twice and safe from an EXIT trap under `set -e`.
stop_all() {
	local - # keep the caller's shell options
	set +e
	local i
	for ((i = ${#_KT_STOP_CMDS[@]} - 1; i >= 0; i--)); do
		eval "${_KT_STOP_CMDS[i]}" || _kt_log "stop failed: ${_KT_STOP_CMDS[i]}"
	done
	_KT_STOP_CMDS=()
	if [[ -n $KT_ENV_DIR && -d $KT_ENV_DIR ]]; then
		# --one-file-system: never delete through a mount a service left behind.
		rm -rf --one-file-system "$KT_ENV_DIR"
	fi
	KT_ENV_DIR=
	return 0
}

# ---------------------------------------------------------------- temp dir

# Where temp dirs go: $KONTENA_TEST_TMPDIR if set, else /dev/shm when it is a
# writable tmpfs, else /tmp. Why tmpfs: everything in it is throwaway, and
# PostgreSQL creates ~1000 small files per cluster and ~300 per CREATE
# DATABASE; on this machine's ext4 /tmp that is ~1 ms per file (initdb 1.5 s,
# createdb 0.2 s) versus 0.55 s / 0.03 s on tmpfs.
_kt_tmp_base() {
	if [[ -n ${KONTENA_TEST_TMPDIR:-} ]]; then
		echo "$KONTENA_TEST_TMPDIR"
	elif [[ -d /dev/shm && -w /dev/shm ]] &&
		[[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]] &&
		(($(df -Pk /dev/shm | awk 'NR==2 {print $4}') > 1024 * 1024)); then
		echo /dev/shm
	else
		echo /tmp
	fi
}

# make_env_dir: create this run's temp dir, export KT_ENV_DIR. 755 so the
# postgres OS user can traverse it. Records our pid for reap_stale_envs.
make_env_dir() {
	KT_ENV_DIR=$(mktemp -d "$(_kt_tmp_base)/kontena-test.XXXXXX") || return 1
	chmod 755 "$KT_ENV_DIR" || return 1
	echo "$$" >"$KT_ENV_DIR/owner.pid"
	export KT_ENV_DIR
}

# reap_stale_envs: stop services and remove temp dirs of earlier runs whose
# owning script no longer exists (killed with SIGKILL, machine reboot, ...).
# Conservative: a dir whose owner pid is alive (even if reused) is left alone.
reap_stale_envs() {
	local - dir owner line
	set +e
	for dir in /tmp/kontena-test.* /dev/shm/kontena-test.* \
		${KONTENA_TEST_TMPDIR:+"$KONTENA_TEST_TMPDIR"/kontena-test.*}; do
		[[ -d $dir && -f $dir/owner.pid && $dir != "$KT_ENV_DIR" ]] || continue
		owner=$(cat "$dir/owner.pid")
		[[ $owner =~ ^[0-9]+$ ]] || continue
		! _kt_pid_gone "$owner" && continue # a zombie owner counts as gone
		_kt_log "cleaning up stale test env $dir (owner pid $owner is gone)"
		if [[ -f $dir/.kt-stop ]]; then
			while IFS= read -r line; do
				eval "$line"
			done < <(tac "$dir/.kt-stop")
		fi
		rm -rf --one-file-system "$dir"
	done
	_kt_reap_orphan_bridges
	return 0
}

# A dockerd bridge (kt-brN, ifalias = its daemon's DIR/NAME) whose run dir is
# gone (e.g. /dev/shm wiped while the machine stayed up) belongs to no one.
_kt_reap_orphan_bridges() {
	local link alias
	for link in /sys/class/net/kt-br*; do
		[[ -e $link ]] || continue
		alias=$(cat "$link/ifalias" 2>/dev/null)
		# An empty alias is a bridge being claimed right now by another run.
		[[ $alias == */kontena-test.*/* && ! -e ${alias%/*} ]] || continue
		_kt_log "removing orphan bridge ${link##*/} of $alias"
		ip link del "${link##*/}" 2>/dev/null
	done
	return 0
}

# ---------------------------------------------------------------- tools

# ensure_debs PKG...: install the Debian packages that are missing. Fast no-op
# when all are present. A temporary policy-rc.d (exit 101) stops Debian's
# maintainer scripts from auto-starting the services we install; we start
# private instances ourselves.
ensure_debs() {
	local pkg status missing=()
	for pkg in "$@"; do
		status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) || status="" # unknown package
		[[ $status == "install ok installed" ]] || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0

	local sudo=()
	if ((EUID != 0)); then
		if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			_kt_log "missing packages: ${missing[*]} (run as root or install them)"
			return 1
		fi
	fi

	_kt_log "installing: ${missing[*]}"
	local policy=${_KT_POLICY_RC:-/usr/sbin/policy-rc.d} own_policy=0 rc=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# temporary, from kontena tests/env/lib.sh\nexit 101\n' |
			"${sudo[@]}" tee "$policy" >/dev/null && "${sudo[@]}" chmod 755 "$policy" &&
			own_policy=1
	fi
	local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive
		apt-get -q -o DPkg::Lock::Timeout=300)
	if ((!_KT_APT_UPDATED)); then
		"${apt[@]}" update </dev/null >&2 && _KT_APT_UPDATED=1 || rc=$?
	fi
	if ((rc == 0)); then
		"${apt[@]}" install -y --no-install-recommends "${missing[@]}" </dev/null >&2 || rc=$?
	fi
	((own_policy)) && "${sudo[@]}" rm -f "$policy"
	return "$rc"
}

# ensure_uv: put `uv` on PATH. If absent, install it from PyPI into a private
# venv (only PyPI and Debian mirrors are reachable: no curl|sh installers).
ensure_uv() {
	command -v uv >/dev/null && return 0
	local venv=${XDG_CACHE_HOME:-$HOME/.cache}/kontena-tools
	if [[ ! -x $venv/bin/uv ]]; then
		# Debian's own python3: its venv/ensurepip need python3-venv (+ pip).
		ensure_debs python3 python3-venv python3-pip || return 1
		_kt_log "installing uv into $venv"
		/usr/bin/python3 -m venv "$venv" &&
			"$venv/bin/pip" install --quiet --disable-pip-version-check uv ||
			return 1
	fi
	export PATH="$venv/bin:$PATH"
}

# free_ports [N]: N distinct TCP ports on 127.0.0.1 that are free right now,
# one per line. All sockets stay open until all are picked, so the kernel
# cannot hand out the same port twice. Prefers Debian's python3: a pyenv shim
# costs ~0.3 s per call here.
free_ports() {
	local py=python3
	[[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
	"$py" - "${1:-1}" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
PY
}

# ---------------------------------------------------------------- PostgreSQL

# Newest installed server version's bin dir (e.g. /usr/lib/postgresql/15/bin).
_kt_pg_bin() {
	local d best=
	for d in /usr/lib/postgresql/*/bin; do
		[[ -x $d/pg_ctl && -x $d/initdb ]] || continue
		if [[ -z $best ]] || [[ $(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n1) == "$d" ]]; then
			best=$d
		fi
	done
	[[ -n $best ]] || { _kt_log "no PostgreSQL server found under /usr/lib/postgresql"; return 1; }
	echo "$best"
}

# PostgreSQL refuses to run as root: as root, run its tools as the postgres
# OS user. Run from DIR so a cwd the postgres user cannot read does not matter.
_kt_as_pg() {
	local dir=$1
	shift
	(cd "$dir" && "${_KT_PG_USER[@]}" "$@")
}
_KT_PG_USER=()
if ((EUID == 0)); then _KT_PG_USER=(runuser -u postgres --); fi

# start_postgres DIR PORT: private cluster in DIR/pg, listening on
# 127.0.0.1:PORT with its unix socket in DIR/pg-run (never /var/run/postgresql,
# so it cannot collide with the machine's server). Trust auth, user postgres,
# durability off (tests do not need it, and it is much faster).
# Exports KT_PG_BIN. Logs: DIR/pg.log (server), DIR/pg-setup.log (tools).
start_postgres() {
	local dir=$1 port=$2
	KT_PG_BIN=$(_kt_pg_bin) || return 1
	export KT_PG_BIN
	local data=$dir/pg sock=$dir/pg-run setup_log=$dir/pg-setup.log
	mkdir -p "$data" "$sock" || return 1
	chmod 700 "$data" || return 1
	: >"$setup_log" && : >>"$dir/pg.log" || return 1
	# The server (postgres user) writes its data dir, socket dir and log.
	if ((EUID == 0)); then
		chown postgres:postgres "$data" "$sock" "$dir/pg.log" || return 1
	fi

	if [[ ! -s $data/PG_VERSION ]]; then
		if ! _kt_as_pg "$dir" "$KT_PG_BIN/initdb" --no-sync --no-instructions \
			-A trust -U postgres -E UTF8 --locale=C.UTF-8 -D "$data" \
			>>"$setup_log" 2>&1; then
			_kt_log "initdb failed:"; cat "$setup_log" >&2; return 1
		fi
	fi

	# Register the stop before starting: a half-started server is still stopped.
	kt_on_stop _kt_stop_postgres "$dir"
	# pg_ctl -w returns once the server accepts connections (or fails).
	if ! (cd "$dir" && _kt_detached "${_KT_PG_USER[@]}" "$KT_PG_BIN/pg_ctl" start \
		-w -t 60 -D "$data" -l "$dir/pg.log" \
		-o "-k $sock -p $port -h 127.0.0.1 -F -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
		>>"$setup_log" 2>&1); then
		_kt_log "PostgreSQL failed to start:"; cat "$setup_log" "$dir/pg.log" >&2 2>/dev/null
		return 1
	fi
	_kt_wait_until 30 "PostgreSQL on 127.0.0.1:$port" _kt_pg_ready "$port"
}
# pg_isready exits 2 for "no response yet": map everything but 0 to "not yet".
_kt_pg_ready() {
	"$KT_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres || return 1
}

# Immediate stop: no checkpoint, the data dir is thrown away anyway. If
# pg_ctl cannot do it, kill the postmaster by its pid file.
_kt_stop_postgres() {
	local dir=$1 bin
	[[ -f $dir/pg/postmaster.pid ]] || return 0
	bin=${KT_PG_BIN:-$(_kt_pg_bin)}
	_kt_as_pg "$dir" "$bin/pg_ctl" stop -D "$dir/pg" -m immediate -w -t 30 >/dev/null 2>&1 ||
		_kt_kill_pidfile "$dir/pg/postmaster.pid" postgres
}

# ---------------------------------------------------------------- Redis

# start_redis DIR PORT: private, non-persistent Redis on 127.0.0.1:PORT.
# Redis daemonizes itself; we stop it by its pid file.
start_redis() {
	local dir=$1 port=$2
	mkdir -p "$dir" || return 1
	kt_on_stop _kt_kill_pidfile "$dir/redis.pid" redis-server
	if ! _kt_detached redis-server --port "$port" --bind 127.0.0.1 \
		--save "" --appendonly no --daemonize yes \
		--pidfile "$dir/redis.pid" --dir "$dir" --logfile "$dir/redis.log" \
		>>"$dir/redis-setup.log" 2>&1; then
		_kt_log "redis-server failed to start:"; cat "$dir/redis-setup.log" "$dir/redis.log" >&2 2>/dev/null
		return 1
	fi
	if ! _kt_wait_until 30 "Redis on 127.0.0.1:$port" _kt_redis_ready "$port" "$dir/redis.pid"; then
		cat "$dir/redis.log" >&2 2>/dev/null
		return 1
	fi
}
# Ready = answers on PORT *and* is our process (not another server that won
# a race for the port): its process_id matches our pid file. Returns 2 once
# our server has logged that it is aborting (e.g. port already in use).
_kt_redis_ready() {
	local pid info
	grep -q 'aborting' "${2%/*}/redis.log" 2>/dev/null && return 2
	[[ -s $2 ]] || return 1
	pid=$(head -n1 "$2")
	info=$(redis-cli -h 127.0.0.1 -p "$1" info server 2>/dev/null) || return 1
	[[ $info == *$'\n'"process_id:$pid"$'\r'* ]]
}

# ---------------------------------------------------------------- Docker Engine

# Private Docker daemons act as the test nodes. Each one lives in DIR/NAME:
#   docker.sock  daemon.json  dockerd.pid  dockerd.log  data/  exec/
# and has its own bridge kt-br<SLOT> (10.99.<SLOT>.1/24), its own address
# pool for user networks (10.<100+SLOT>.0.0/16) and its own cgroup parent
# (<run dir name>-<NAME>), so several daemons, and several test runs on one
# machine, never share anything. SLOT starts at INDEX and moves up to the
# first bridge name nobody holds: `ip link add` is the atomic claim. The
# bridge's ifalias records DIR/NAME, so a stop only ever deletes its own.
#
# Why the cgroup parent: a daemon killed with SIGKILL leaves its containers
# and their containerd shims running (containerd and docker-proxy die with
# it); the containers' processes are then found by cgroup, not by pid file.

# The CLI that matches the engine (docker.io's /usr/bin/docker), not a newer
# client that may sit earlier on PATH (e.g. /usr/local/bin/docker 28.x).
_kt_docker_cli() {
	if [[ -x /usr/bin/docker ]]; then echo /usr/bin/docker; else command -v docker; fi
}
# _kt_docker ROOT ARGS...: the CLI against the daemon in ROOT (= DIR/NAME).
_kt_docker() {
	local root=$1
	shift
	DOCKER_CONFIG=$root/cli "$(_kt_docker_cli)" -H "unix://$root/docker.sock" "$@"
}

# _kt_dockerd_net_free SLOT: neither the bridge subnet nor the address pool of
# SLOT overlaps a route the machine already has (inside or around it).
_kt_dockerd_net_free() {
	local net
	for net in "10.99.$1.0/24" "10.$((100 + $1)).0.0/16"; do
		[[ -z $(ip -4 -o route show table all root "$net") ]] || return 1
		! ip -4 -o route show table all match "$net" | grep -qv '^default ' || return 1
	done
}

# dockerd_launch DIR NAME INDEX: claim a bridge, register the stop and start
# dockerd in the background; does not wait (see dockerd_wait), so several
# daemons boot in parallel while the stop registry stays in this shell.
dockerd_launch() {
	local dir=$1 name=$2 index=$3
	local root=$dir/$name slot bridge=
	mkdir -p "$root/data" "$root/exec" "$root/cli" || return 1
	# Unix socket paths are limited to 108 bytes; containerd nests deepest.
	if ((${#root} > 60)); then
		_kt_log "dockerd dir $root is too long for unix sockets (set KONTENA_TEST_TMPDIR)"
		return 1
	fi
	for ((slot = index; slot <= 99; slot++)); do
		ip link add "kt-br$slot" type bridge 2>/dev/null || continue
		if ! ip link set dev "kt-br$slot" alias "$root" || ! _kt_dockerd_net_free "$slot"; then
			ip link del "kt-br$slot" 2>/dev/null
			continue
		fi
		bridge=kt-br$slot
		break
	done
	if [[ -z $bridge ]]; then
		_kt_log "no free bridge slot for dockerd $name (kt-br$index..kt-br99 taken or their subnets in use)"
		return 1
	fi
	local cgroup="${dir##*/}-$name"
	echo "$bridge" >"$root/bridge"
	# Registered before anything else can fail: a half-started daemon is
	# still torn down (and so is the bridge).
	kt_on_stop _kt_stop_dockerd "$root" "$bridge" "$cgroup"
	ip addr add "10.99.$slot.1/24" dev "$bridge" && ip link set dev "$bridge" up || return 1

	cat >"$root/daemon.json" <<-JSON || return 1
		{
		  "exec-opts": ["native.cgroupdriver=cgroupfs"],
		  "cgroup-parent": "$cgroup",
		  "shutdown-timeout": 3,
		  "log-opts": {"max-size": "1m", "max-file": "2"}
		}
	JSON
	# What _kt_detached does, inline: `_kt_detached ... &` would leave a
	# forked copy of this shell (with its fds) waiting on dockerd. This way
	# the background subshell execs into dockerd, so $! is dockerd itself.
	(
		_kt_close_fds
		exec setsid dockerd \
			--host "unix://$root/docker.sock" \
			--data-root "$root/data" --exec-root "$root/exec" \
			--pidfile "$root/dockerd.pid" --config-file "$root/daemon.json" \
			--iptables=false --ip-masq=false \
			--bridge "$bridge" \
			--default-address-pool "base=10.$((100 + slot)).0.0/16,size=24" \
			--label "kontena.test.node=$name" \
			</dev/null >>"$root/dockerd.log" 2>&1
	) &
	echo "$!" >"$root/dockerd.launched.pid"
}

# dockerd_wait DIR NAME: wait until the daemon answers `docker info`.
dockerd_wait() {
	local root=$1/$2
	if ! _kt_wait_until 60 "dockerd $2" _kt_dockerd_ready "$root"; then
		_kt_log "dockerd $2 did not come up; last log lines:"
		tail -n 20 "$root/dockerd.log" >&2
		return 1
	fi
}
_kt_dockerd_ready() {
	_kt_pid_gone "$(cat "$1/dockerd.launched.pid")" && return 2
	_kt_docker "$1" info --format '{{.ID}}'
}

# start_dockerd DIR NAME INDEX: one daemon, started and ready.
start_dockerd() {
	dockerd_launch "$@" && dockerd_wait "$1" "$2"
}

# start_dockerds DIR NAME...: several daemons booting in parallel (launch all,
# then wait for each), bridge slots from 1 in argument order. Their shutdowns
# overlap too: see _kt_dockerd_shutdown_begin.
start_dockerds() {
	local dir=$1 slot=0 name roots=()
	shift
	for name; do
		dockerd_launch "$dir" "$name" $((++slot)) || return 1
		roots+=("$dir/$name")
	done
	# Registered after the per-daemon stops, so stop_all runs it first.
	kt_on_stop _kt_dockerd_shutdown_begin "${roots[@]}"
	for name; do
		dockerd_wait "$dir" "$name" || return 1
	done
}

# _kt_dockerd_shutdown_begin ROOT...: remove the containers of all these
# daemons (in parallel) and send each dockerd TERM without waiting. A dockerd
# takes ~1 s to exit here even when idle; this way those seconds overlap and
# each _kt_stop_dockerd then only waits for its own daemon.
_kt_dockerd_shutdown_begin() {
	local root pid pids=()
	for root; do
		_kt_dockerd_rm_containers "$root" &
		pids+=("$!")
	done
	for pid in "${pids[@]}"; do wait "$pid"; done
	for root; do
		pid=$(_kt_pidfile_pid "$root/dockerd.pid" dockerd) && kill -TERM "$pid" 2>/dev/null
	done
	return 0
}

# _kt_pidfile_pid PIDFILE NAME: the pid in PIDFILE if that process runs NAME.
_kt_pidfile_pid() {
	local pid comm
	[[ -s $1 ]] || return 1
	pid=$(head -n1 "$1")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	[[ $comm == "$2"* ]] && ! _kt_pid_gone "$pid" || return 1
	echo "$pid"
}

# _kt_dockerd_rm_containers ROOT: force-remove every container of the daemon
# in ROOT, if it still answers (killing them first makes its stop 22 s -> 3 s).
_kt_dockerd_rm_containers() {
	local root=$1 ids
	local cli=("$(_kt_docker_cli)" -H "unix://$root/docker.sock")
	[[ -S $root/docker.sock ]] || return 0
	ids=$(DOCKER_CONFIG=$root/cli timeout 5 "${cli[@]}" ps -aq 2>/dev/null) || return 0
	[[ -n $ids ]] || return 0
	# shellcheck disable=SC2086 # one id per word
	DOCKER_CONFIG=$root/cli timeout 30 "${cli[@]}" rm -f -v $ids >/dev/null 2>&1
	return 0
}

# _kt_stop_dockerd ROOT BRIDGE CGROUP: remove its containers while the daemon
# still answers (shutdown 22 s -> 3 s), stop dockerd by pid, kill whatever
# survived (containers, shims), unmount leftovers, delete its bridges and
# cgroups, remove ROOT. Also run by reap_stale_envs for a killed run, when
# the daemon is long gone: every step tolerates "already done".
_kt_stop_dockerd() {
	local root=$1 bridge=$2 cgroup=$3
	_kt_dockerd_rm_containers "$root"
	_kt_kill_pidfile "$root/dockerd.pid" dockerd
	_kt_dockerd_kill_leftovers "$root" "$cgroup"
	_kt_umount_under "$root"
	_kt_dockerd_del_links "$root" "$bridge"
	_kt_cgroup_remove "$cgroup"
	rm -rf --one-file-system "$root"
	return 0
}

# Processes that outlive a killed dockerd: container processes (found by our
# cgroup parent) and their containerd shims (found by our containerd socket).
_kt_dockerd_kill_leftovers() {
	local root=$1 cgroup=$2 procs pid args i dirs=()
	mapfile -t dirs < <(_kt_cgroup_dirs "$cgroup")
	for ((i = 0; i < 50; i++)); do
		procs=
		((${#dirs[@]})) &&
			procs=$(find "${dirs[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null)
		for pid in /proc/[0-9]*; do
			# mapfile, not $(tr ...): no fork per process.
			mapfile -d '' -t args 2>/dev/null <"$pid/cmdline" || continue
			[[ ${args[0]:-} == *containerd* && " ${args[*]:1} " == *" $root/exec/"* ]] &&
				procs+=" ${pid#/proc/}"
		done
		[[ -n ${procs// /} ]] || return 0
		# shellcheck disable=SC2086 # a list of pids
		kill -KILL $procs 2>/dev/null
		sleep 0.05
	done
	_kt_log "processes of dockerd $root survive SIGKILL: $procs"
}

# _kt_umount_under DIR: unmount everything mounted at or below DIR, deepest
# first (overlay layers, netns files, shm, the data-root bind mount).
_kt_umount_under() {
	local dir=$1 mnt _ mounts
	for _ in 1 2 3; do # a path can be mounted more than once
		mounts=$(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r)
		[[ -n $mounts ]] || return 0
		while read -r mnt; do
			umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
		done <<<"$mounts"
	done
	_kt_log "cannot unmount: $mounts"
}

# Delete our bridge (only if its alias says it is ours) and any user-network
# bridge holding an address from our pool (dockerd keeps those after stop).
_kt_dockerd_del_links() {
	local root=$1 bridge=$2 slot link
	[[ $(cat "/sys/class/net/$bridge/ifalias" 2>/dev/null) == "$root" ]] || return 0
	# Pool bridges first: once ours is gone, another run may claim the slot.
	slot=${bridge#kt-br}
	while read -r link; do
		[[ $link == br-* ]] && ip link del "$link"
	done < <(ip -4 -o addr show to "10.$((100 + slot)).0.0/16" | awk '{print $2}')
	ip link del "$bridge"
	return 0
}

# _kt_cgroup_dirs NAME: the cgroup dirs called NAME in every hierarchy (v1
# controllers, v2 unified). A relative --cgroup-parent lands below dockerd's
# own cgroup in each hierarchy, which differ (here: pids at the root, memory
# under /process_api/...), hence a search rather than fixed paths.
_kt_cgroup_dirs() {
	[[ -n $1 && $1 != */* ]] || return 0
	find /sys/fs/cgroup -maxdepth 8 -type d -name "$1" -prune 2>/dev/null
}

# _kt_cgroup_remove NAME: remove the (by now empty) cgroups NAME and their
# children, deepest first.
_kt_cgroup_remove() {
	local d
	while read -r d; do
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
	done < <(_kt_cgroup_dirs "$1")
	return 0
}

# ---------------------------------------------------------------- busybox image

# kt_busybox_tarball: a rootfs tarball with /bin/busybox and its applet
# symlinks, built once per run in $KT_ENV_DIR; prints its path. No image can
# be pulled here (no internet), so tests use this imported image. Written by
# one python3 process: ~300 `ln -s` forks took 1 s here.
kt_busybox_tarball() {
	local tar=$KT_ENV_DIR/busybox-rootfs.tar py=python3
	[[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
	if [[ ! -s $tar ]]; then
		[[ -x /bin/busybox ]] || { _kt_log "/bin/busybox missing (package busybox-static)"; return 1; }
		"$py" - /bin/busybox "$tar.part" <<-'PY' || return 1
			import subprocess, sys, tarfile
			busybox, out = sys.argv[1], sys.argv[2]
			applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
			with tarfile.open(out, "w") as tar:
			    for name, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777)):
			        info = tarfile.TarInfo(name)
			        info.type, info.mode = tarfile.DIRTYPE, mode
			        tar.addfile(info)
			    tar.add(busybox, "bin/busybox")
			    for applet in applets.stdout.split():
			        if applet != "busybox":
			            info = tarfile.TarInfo("bin/" + applet)
			            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
			            tar.addfile(info)
		PY
		mv "$tar.part" "$tar" || return 1
	fi
	echo "$tar"
}

# import_busybox ROOT IMAGE: import the busybox rootfs into the daemon in ROOT.
import_busybox() {
	local root=$1 image=$2 tar
	tar=$(kt_busybox_tarball) || return 1
	_kt_docker "$root" import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' "$tar" "$image" >/dev/null
}

# ---------------------------------------------------------------- Pebble (ACME)

# start_pebble DIR: Pebble (Let's Encrypt's test CA) plus pebble-challtestsrv as
# its DNS server, on free loopback ports. Debian's pebble ships no certificates:
# a CA and a `localhost` server certificate are generated into DIR first.
# Pebble's default nonce rejection (5 %) stays on; the random validation sleep
# is switched off and valid authorizations are always reused (as LE does). Exports the KONTENA_TEST_ACME_* / PEBBLE / CHALLTESTSRV
# / DNS_RESOLVER variables.
start_pebble() {
	local dir=$1 acme_port mgmt_port http_port tls_port dns_port cts_port
	mkdir -p "$dir" || return 1
	{ read -r acme_port && read -r mgmt_port && read -r http_port && read -r tls_port &&
		read -r dns_port && read -r cts_port; } < <(free_ports 6)
	_kt_pebble_certs "$dir" || { _kt_log "generating Pebble's certificates failed"; return 1; }
	cat >"$dir/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$acme_port",
  "managementListenAddress": "127.0.0.1:$mgmt_port",
  "certificate": "$dir/server.pem", "privateKey": "$dir/server.key",
  "httpPort": $http_port, "tlsPort": $tls_port, "ocspResponderURL": "",
  "externalAccountBindingRequired": false}}
JSON
	kt_on_stop _kt_kill_pidfile "$dir/challtestsrv.pid" pebble-challtes
	_kt_spawn "$dir/challtestsrv.pid" "$dir/challtestsrv.log" \
		pebble-challtestsrv -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv6 "" \
		-defaultIPv4 127.0.0.1 -dns01 "127.0.0.1:$dns_port" -management "127.0.0.1:$cts_port"
	kt_on_stop _kt_kill_pidfile "$dir/pebble.pid" pebble
	# AUTHZREUSE=100: reuse valid authorizations as Let's Encrypt does (Pebble: 50 %).
	_kt_spawn "$dir/pebble.pid" "$dir/pebble.log" \
		env PEBBLE_VA_NOSLEEP=1 PEBBLE_AUTHZREUSE=100 \
		pebble -config "$dir/pebble.json" -dnsserver "127.0.0.1:$dns_port"
	if ! _kt_wait_until 30 "pebble-challtestsrv on 127.0.0.1:$cts_port" \
		_kt_http_ready "$dir/challtestsrv.pid" -X POST -d '{"ip":"127.0.0.1"}' \
		"http://127.0.0.1:$cts_port/set-default-ipv4"; then
		cat "$dir/challtestsrv.log" >&2 2>/dev/null
		return 1
	fi
	if ! _kt_wait_until 30 "Pebble on 127.0.0.1:$acme_port" \
		_kt_http_ready "$dir/pebble.pid" --cacert "$dir/ca.pem" "https://127.0.0.1:$acme_port/dir"; then
		cat "$dir/pebble.log" >&2 2>/dev/null
		return 1
	fi
	export KONTENA_TEST_ACME_DIRECTORY="https://127.0.0.1:$acme_port/dir"
	export KONTENA_TEST_ACME_CA="$dir/ca.pem"
	export KONTENA_TEST_PEBBLE_MANAGEMENT="https://127.0.0.1:$mgmt_port"
	export KONTENA_TEST_CHALLTESTSRV="http://127.0.0.1:$cts_port"
	export KONTENA_TEST_DNS_RESOLVER="127.0.0.1:$dns_port"
	export KONTENA_TEST_ACME_HTTP_PORT=$http_port
}
# _kt_http_ready PIDFILE CURL_ARGS...: 2 once the daemon died, else curl's result.
_kt_http_ready() {
	local pid
	pid=$(head -n1 "$1" 2>/dev/null)
	shift
	[[ -n $pid ]] && ! _kt_pid_gone "$pid" || return 2
	curl -sSf -o /dev/null --max-time 2 "$@"
}
# _kt_pebble_certs DIR: ca.pem, server.pem (CN/SAN localhost + 127.0.0.1), server.key.
_kt_pebble_certs() {
	local py=python3
	[[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
	# uv's project python has cryptography even when the system python does not.
	"$py" -c 'import cryptography' 2>/dev/null || py=(uv run --frozen python)
	"${py[@]}" - "$1" <<'PY'
import datetime, ipaddress, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

out = Path(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)
def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
ca_key = ec.generate_private_key(ec.SECP256R1())
ca = (x509.CertificateBuilder().subject_name(name("kontena test pebble CA"))
      .issuer_name(name("kontena test pebble CA")).public_key(ca_key.public_key())
      .serial_number(x509.random_serial_number())
      .not_valid_before(now - datetime.timedelta(hours=1))
      .not_valid_after(now + datetime.timedelta(days=7))
      .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
      .sign(ca_key, hashes.SHA256()))
key = ec.generate_private_key(ec.SECP256R1())
cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256()))
pem = serialization.Encoding.PEM
(out / "ca.pem").write_bytes(ca.public_bytes(pem))
(out / "server.pem").write_bytes(cert.public_bytes(pem))
(out / "server.key").write_bytes(key.private_bytes(
    pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
PY
}
