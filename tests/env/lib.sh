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
		local fd
		for fd in /proc/"$BASHPID"/fd/*; do
			fd=${fd##*/}
			((fd > 2)) && exec {fd}>&-
		done
		exec setsid "$@" </dev/null
	)
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
		kill -0 "$owner" 2>/dev/null && continue
		_kt_log "cleaning up stale test env $dir (owner pid $owner is gone)"
		if [[ -f $dir/.kt-stop ]]; then
			while IFS= read -r line; do
				eval "$line"
			done < <(tac "$dir/.kt-stop")
		fi
		rm -rf --one-file-system "$dir"
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
