#!/usr/bin/env bash
# tests/support/mongo.sh - the MongoDB wire-protocol test server (mongo_server.py) for the tests.
#
#   mongo.sh start DIR     start the server on a free port of 127.0.0.1 with the fixtures of
#                          tests/fixtures/mongodb loaded, pid file and log under a fresh
#                          /tmp/cn-mongo.XXXXXX, and write DIR/mongo.env (source it)
#   mongo.sh stop DIR      stop the server (by PID) and remove its temp dir and DIR
#   mongo.sh pause DIR     stop the server but keep DIR/mongo.env and the port
#   mongo.sh resume DIR    start it again on the same port, fixtures reloaded
#   mongo.sh restart DIR   pause (if it runs) + resume
#
# DIR/mongo.env exports CN_TEST_MONGO_URI (mongodb://127.0.0.1:PORT/connector_test),
# CN_TEST_MONGO_PORT, CN_TEST_MONGO_PID_FILE, CN_TEST_MONGO_LOG, CN_TEST_MONGO_BASE_DIR and
# CN_TEST_MONGO_DIR. The server needs Debian's python3-mongomock and python3-pymongo, so it runs
# with /usr/bin/python3 (CN_TEST_MONGO_PYTHON overrides). Never stops anything by process name.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
server=$here/mongo_server.py
fixtures=$(cd "$here/../fixtures/mongodb" && pwd)
db=connector_test
py=${CN_TEST_MONGO_PYTHON:-/usr/bin/python3}
wait_tenths=${CN_TEST_MONGO_START_TIMEOUT_TENTHS:-150}

die() { echo "mongo.sh: $*" >&2; exit 1; }

# shellcheck source=lib.sh
. "$here/lib.sh"

# Alive and not a zombie (an exited daemon can linger as Z for a second or two).
alive() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st#Z}" = "$st" ]
}

# Our server, not a recycled PID: its command line names mongo_server.py and our port.
is_our_server() {
	local pid=$1 port=$2 cmdline
	[ -r "/proc/$pid/cmdline" ] || return 1
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
	case "$cmdline" in
	*mongo_server.py*"--port $port "*) return 0 ;;
	*) return 1 ;;
	esac
}

log_tail() {
	echo "mongo.sh: last lines of $M_LOG:" >&2
	tail -n 20 "$M_LOG" >&2 || true
}

# Start the server on $M_PORT and wait (bounded) until it answers ping.
# Returns 0 when up, 2 when the port was taken, 1 on any other failure.
server_start() {
	[ -x "$py" ] || die "$py not found (the server needs Debian's python3 with python3-mongomock)"
	rm -f "$M_PID"
	echo "--- mongo.sh: starting on port $M_PORT at $(date -u +%FT%TZ)" >>"$M_LOG"
	"$py" "$server" --port "$M_PORT" --fixtures "$fixtures" --db "$db" --pid-file "$M_PID" \
		</dev/null >>"$M_LOG" 2>&1 &
	local pid=$! i
	echo "$pid" >"$M_PID"
	for ((i = 0; i < wait_tenths; i++)); do
		if ! alive "$pid"; then
			wait "$pid" 2>/dev/null || true
			rm -f "$M_PID"
			if tail -n 5 "$M_LOG" | grep -q 'cannot listen'; then return 2; fi
			return 1
		fi
		if "$py" "$server" --ping "$M_PORT" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$M_PID"
	echo "mongo.sh: the server did not answer ping within $((wait_tenths / 10)) s" >&2
	return 1
}

# Stop the server whose PID is in $M_PID (TERM, then KILL after 5 s).
server_stop() {
	[ -f "$M_PID" ] || return 0
	local pid i
	pid=$(cat "$M_PID")
	if [ -n "$pid" ] && alive "$pid" && is_our_server "$pid" "$M_PORT"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			echo "mongo.sh: server $pid ignored SIGTERM; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 20; i++)); do
				alive "$pid" || break
				sleep 0.1
			done
		fi
	fi
	rm -f "$M_PID"
}

load_env() {
	local dir=$1
	[ -f "$dir/mongo.env" ] || die "$dir/mongo.env not found: was 'mongo.sh start $dir' run?"
	# shellcheck disable=SC1091
	. "$dir/mongo.env"
	M_PORT=$CN_TEST_MONGO_PORT
	M_PID=$CN_TEST_MONGO_PID_FILE
	M_LOG=$CN_TEST_MONGO_LOG
	M_BASE=$CN_TEST_MONGO_BASE_DIR
}

start_failed() {
	server_stop
	rm -rf "$M_BASE"
}

cmd_start() {
	local dir=$1
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[ -f "$dir/mongo.env" ] && die "$dir/mongo.env exists: stop that server first (mongo.sh stop $dir)"
	M_BASE=$(mktemp -d /tmp/cn-mongo.XXXXXX)
	M_PID=$M_BASE/mongo.pid
	M_LOG=$M_BASE/mongo.log
	M_PORT=
	trap start_failed EXIT
	: >"$M_LOG"
	local tries=0 rc
	while :; do
		M_PORT=$(pick_port)
		rc=0
		server_start || rc=$?
		[ "$rc" -eq 0 ] && break
		tries=$((tries + 1))
		if [ "$rc" -ne 2 ] || [ "$tries" -ge 3 ]; then
			log_tail
			die "the server did not start"
		fi
	done
	umask 077
	{
		echo "# written by tests/support/mongo.sh; source it before the MongoDB tests"
		printf 'export CN_TEST_MONGO_URI=%q\n' "mongodb://127.0.0.1:$M_PORT/$db"
		printf 'export CN_TEST_MONGO_PORT=%q\n' "$M_PORT"
		printf 'export CN_TEST_MONGO_PID_FILE=%q\n' "$M_PID"
		printf 'export CN_TEST_MONGO_LOG=%q\n' "$M_LOG"
		printf 'export CN_TEST_MONGO_BASE_DIR=%q\n' "$M_BASE"
		printf 'export CN_TEST_MONGO_DIR=%q\n' "$dir"
	} >"$dir/mongo.env"
	trap - EXIT
	echo "mongo.sh: MongoDB test server on 127.0.0.1:$M_PORT (log $M_LOG); env in $dir/mongo.env"
}

cmd_stop() {
	local dir=$1
	if [ ! -f "$dir/mongo.env" ]; then
		rm -rf "$dir"
		return 0
	fi
	load_env "$dir"
	server_stop
	case "$M_BASE" in
	/tmp/cn-mongo.*) rm -rf "$M_BASE" ;;
	*) echo "mongo.sh: not removing unexpected base dir $M_BASE" >&2 ;;
	esac
	rm -rf "$dir"
}

cmd_pause() {
	load_env "$1"
	server_stop
}

cmd_resume() {
	load_env "$1"
	if [ -f "$M_PID" ] && alive "$(cat "$M_PID")"; then
		die "the server already runs (pid $(cat "$M_PID")); use restart"
	fi
	local rc=0
	server_start || rc=$?
	if [ "$rc" -ne 0 ]; then
		log_tail
		[ "$rc" -eq 2 ] && die "port $M_PORT is taken by another process: cannot resume on it"
		die "the server did not start again"
	fi
}

cmd_restart() {
	cmd_pause "$1"
	cmd_resume "$1"
}

usage="usage: mongo.sh start|stop|restart|pause|resume DIR"
[ $# -eq 2 ] || die "$usage"
case "$1" in
start) cmd_start "$2" ;;
stop) cmd_stop "$2" ;;
restart) cmd_restart "$2" ;;
pause) cmd_pause "$2" ;;
resume) cmd_resume "$2" ;;
*) die "$usage" ;;
esac
