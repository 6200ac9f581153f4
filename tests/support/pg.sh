#!/usr/bin/env bash
# tests/support/pg.sh - a throwaway PostgreSQL cluster for the integration tests.
#
#   pg.sh start DIR     initdb a cluster under /tmp, start it on a free port, create the
#                       fixture database and roles, load tests/fixtures/postgres/*.sql and
#                       write DIR/pg.env (source it before running the tests)
#   pg.sh stop DIR      stop the server (pg_ctl -m fast, by data directory) and remove it and DIR
#   pg.sh restart DIR   stop (if it runs) and start the server again on the same port
#
# The server loads pg_stat_statements (track = all, 10,000 entries) where the extension is
# installed, and the extension is created in the fixture database, in its own schema `pgss` that
# the read-only role cannot see (so it never shows in the connector's introspection): tests count
# what actually reached the database there (pgss.pg_stat_statements, any database's statements).
# pg.env says CN_TEST_PG_STAT_STATEMENTS=1 when it is there.
#
# Runs as root (initdb and pg_ctl through `runuser -u postgres --`) or as an ordinary user.
# Never stops anything by process name. PG_BINDIR overrides where initdb/pg_ctl are found.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fixtures=$(cd "$here/../fixtures/postgres" && pwd)
db=connector_test

die() { echo "pg.sh: $*" >&2; exit 1; }

find_bindir() {
	if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
	if [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then echo /usr/lib/postgresql/15/bin; return; fi
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	[ -n "$d" ] && [ -x "$d/pg_ctl" ] ||
		die "no PostgreSQL server binaries found: apt-get install postgresql-15"
	echo "$d"
}

# Run a server program as the cluster owner.
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

owner() { if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi; }

# shellcheck source=lib.sh
. "$here/lib.sh"

# pg_ctl start with the cluster's options; -w waits (bounded by -t) for readiness.
server_start() {
	local opts="-p $PG_PORT -k $PG_SOCK -c listen_addresses=127.0.0.1 -c max_connections=60"
	opts="$opts -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
	if [ -n "$PG_PRELOAD" ]; then
		opts="$opts -c shared_preload_libraries=$PG_PRELOAD -c pg_stat_statements.track=all"
		opts="$opts -c pg_stat_statements.max=10000"
	fi
	as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 30 -o "$opts" start >/dev/null
}

psql_admin() {
	as_owner "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U "$(owner)" "$@"
}

load_env() {
	local dir=$1
	[ -f "$dir/pg.env" ] || die "$dir/pg.env not found: was 'pg.sh start $dir' run?"
	# shellcheck disable=SC1091
	. "$dir/pg.env"
	PG_BIN=$(dirname "$CN_TEST_PG_CTL")
	PG_DATA=$CN_TEST_PG_DATA_DIR
	PG_SOCK=$CN_TEST_PG_SOCKET_DIR
	PG_PORT=$CN_TEST_PG_PORT
	PG_BASE=$CN_TEST_PG_BASE_DIR
	PG_LOG=$PG_BASE/postgres.log
	PG_PRELOAD=
	if [ "${CN_TEST_PG_STAT_STATEMENTS:-0}" = 1 ]; then PG_PRELOAD=pg_stat_statements; fi
}

# pg_stat_statements where the server has it (postgresql-15 ships it; a PG_BINDIR build may not).
find_preload() {
	local libdir
	libdir=$(dirname "$PG_BIN")/lib
	if [ -f "$libdir/pg_stat_statements.so" ]; then echo pg_stat_statements; fi
}

# Undo a half-done start: stop the server if it runs, remove the cluster.
start_failed() {
	if [ -f "$PG_DATA/postmaster.pid" ]; then
		as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
	fi
	rm -rf "$PG_BASE"
}

cmd_start() {
	local dir=$1
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[ -f "$dir/pg.env" ] && die "$dir/pg.env exists: stop that cluster first (pg.sh stop $dir)"
	PG_BIN=$(find_bindir)
	PG_PRELOAD=$(find_preload)
	# The data directory's parents must be traversable by the postgres user.
	PG_BASE=$(mktemp -d /tmp/cn-pg.XXXXXX)
	chmod 711 "$PG_BASE"
	PG_DATA=$PG_BASE/data
	PG_SOCK=$PG_BASE/sock
	PG_LOG=$PG_BASE/postgres.log
	trap start_failed EXIT
	mkdir -p "$PG_SOCK" "$PG_DATA"
	touch "$PG_LOG"
	if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PG_SOCK" "$PG_DATA" "$PG_LOG"; fi
	chmod 700 "$PG_SOCK" "$PG_DATA"
	as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U "$(owner)" -E UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host=scram-sha-256 >"$PG_BASE/initdb.log" 2>&1 ||
		{ cat "$PG_BASE/initdb.log" >&2; die "initdb failed"; }

	local tries=0
	while :; do
		PG_PORT=$(pick_port)
		if server_start; then break; fi
		tries=$((tries + 1))
		[ "$tries" -lt 3 ] || { tail -n 20 "$PG_LOG" >&2; die "the server did not start"; }
	done

	local ro_pw admin_pw
	ro_pw=$(random_secret)
	admin_pw=$(random_secret)
	psql_admin -d postgres <<-SQL
		CREATE ROLE connector_admin LOGIN SUPERUSER PASSWORD '$admin_pw';
		CREATE ROLE connector_ro LOGIN PASSWORD '$ro_pw';
		ALTER ROLE connector_ro SET default_transaction_read_only = on;
		CREATE DATABASE $db;
	SQL
	local f
	for f in "$fixtures"/*.sql; do
		psql_admin -d "$db" -f - <"$f" >/dev/null || die "loading $f failed"
	done
	if [ -n "$PG_PRELOAD" ]; then
		# after the fixtures' grants: connector_ro gets no USAGE on pgss
		psql_admin -d "$db" -c "CREATE SCHEMA pgss" \
			-c "CREATE EXTENSION pg_stat_statements WITH SCHEMA pgss" >/dev/null ||
			die "creating pg_stat_statements failed"
	fi
	local tcp="host=127.0.0.1 port=$PG_PORT dbname=$db"
	umask 077
	{
		echo "# written by tests/support/pg.sh; source it before the integration tests"
		printf 'export CN_TEST_PG_DSN=%q\n' "$tcp user=connector_ro password=$ro_pw"
		printf 'export CN_TEST_PG_SUPER_DSN=%q\n' "$tcp user=connector_admin password=$admin_pw"
		printf 'export CN_TEST_PG_PORT=%q\n' "$PG_PORT"
		printf 'export CN_TEST_PG_SOCKET_DIR=%q\n' "$PG_SOCK"
		printf 'export CN_TEST_PG_DATA_DIR=%q\n' "$PG_DATA"
		printf 'export CN_TEST_PG_BASE_DIR=%q\n' "$PG_BASE"
		printf 'export CN_TEST_PG_CTL=%q\n' "$PG_BIN/pg_ctl"
		printf 'export CN_TEST_PG_DIR=%q\n' "$dir"
		printf 'export CN_TEST_PG_STAT_STATEMENTS=%q\n' "$([ -n "$PG_PRELOAD" ] && echo 1 || echo 0)"
	} >"$dir/pg.env"
	trap - EXIT
	echo "pg.sh: PostgreSQL on 127.0.0.1:$PG_PORT (data $PG_DATA); env in $dir/pg.env"
}

cmd_stop() {
	local dir=$1
	if [ ! -f "$dir/pg.env" ]; then
		rm -rf "$dir"
		return 0
	fi
	load_env "$dir"
	if [ -f "$PG_DATA/postmaster.pid" ]; then
		as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null ||
			echo "pg.sh: pg_ctl stop failed (see $PG_LOG)" >&2
	fi
	case "$PG_BASE" in
	/tmp/cn-pg.*) rm -rf "$PG_BASE" ;;
	*) echo "pg.sh: not removing unexpected base dir $PG_BASE" >&2 ;;
	esac
	rm -rf "$dir"
}

cmd_restart() {
	load_env "$1"
	# a test may have stopped the server on purpose: then this only starts it
	if [ -f "$PG_DATA/postmaster.pid" ]; then
		as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null
	fi
	server_start || { tail -n 20 "$PG_LOG" >&2; die "the server did not start again"; }
}

[ $# -eq 2 ] || die "usage: pg.sh start|stop|restart DIR"
case "$1" in
start) cmd_start "$2" ;;
stop) cmd_stop "$2" ;;
restart) cmd_restart "$2" ;;
*) die "usage: pg.sh start|stop|restart DIR" ;;
esac
