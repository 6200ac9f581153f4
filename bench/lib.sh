# bench/lib.sh - shared pieces of the benchmark scripts (sourced, not run).
#
# Variables the scripts honour:
#   BENCH_BUILD_DIR  CMake build directory (default: <repo>/build-bench)
#   BENCH_NO_BUILD=1 use the binary already in BENCH_BUILD_DIR, do not run CMake
#   BENCH_KEEP=1     keep the temporary work directory (configs, logs, raw figures)
# shellcheck shell=bash

# The variables below are used by the scripts that source this file.
# shellcheck disable=SC2034
bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$bench_dir/.." && pwd)
build_dir=${BENCH_BUILD_DIR:-$repo/build-bench}
bin=$build_dir/interactor-connector
# shellcheck disable=SC2034
loadgen=$bench_dir/.bin/loadgen
# shellcheck disable=SC2034
sqlite_loop=$bench_dir/.bin/sqlite_loop

# PIDs of daemons this script started; stopped (by pid) on exit.
bench_pids=()
work=

die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

# A temporary work directory, removed on exit unless BENCH_KEEP=1.
bench_workdir() {
	work=$(mktemp -d /tmp/cn-bench.XXXXXX)
	chmod 700 "$work"
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	local pid
	for pid in "${bench_pids[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	if [ -n "${bench_cleanup_hook:-}" ]; then "$bench_cleanup_hook" || true; fi
	if [ -n "$work" ] && [ -d "$work" ]; then
		if [ "${BENCH_KEEP:-0}" = 1 ]; then
			echo "work directory kept: $work" >&2
		else
			rm -rf "$work"
		fi
	fi
}

# Configures and builds the connector (RelWithDebInfo, no tests) into DIR.
# usage: bench_build_connector [DIR [extra cmake args...]]
bench_build_connector() {
	local dir=${1:-$build_dir}
	shift || true
	if [ "${BENCH_NO_BUILD:-0}" = 1 ] && [ "$dir" = "$build_dir" ]; then
		[ -x "$dir/interactor-connector" ] || die "BENCH_NO_BUILD=1 but $dir/interactor-connector is missing"
		return 0
	fi
	echo "building the connector in $dir ..." >&2
	cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCN_TESTS=OFF "$@" \
		>"$dir.cmake.log" 2>&1 || { tail -n 30 "$dir.cmake.log" >&2; die "cmake configure failed"; }
	cmake --build "$dir" -j"$(nproc)" >>"$dir.cmake.log" 2>&1 ||
		{ grep -E 'error|Error' "$dir.cmake.log" | head -n 20 >&2; die "the build failed (log: $dir.cmake.log)"; }
	rm -f "$dir.cmake.log"
}

bench_build_tools() {
	"$bench_dir/build.sh" || die "bench/build.sh failed"
}

bench_secret() {
	od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

bench_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts `$BIN serve` with CONFIG on a free port, waits for /healthz.
# Sets daemon_pid and daemon_port. usage: bench_start_daemon CONFIG LOG [BIN [WRAPPER...]]
bench_start_daemon() {
	local config=$1 log=$2 b=${3:-$bin}
	shift 3 2>/dev/null || shift $#
	local attempt
	for attempt in 1 2 3; do
		daemon_port=$(bench_free_port)
		"$@" "$b" serve --config "$config" --listen "127.0.0.1:$daemon_port" >>"$log" 2>&1 &
		daemon_pid=$!
		bench_pids+=("$daemon_pid")
		for _ in $(seq 1 1200); do # up to 120 s: valgrind starts slowly
			if ! kill -0 "$daemon_pid" 2>/dev/null; then break; fi
			if curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$daemon_port/healthz"; then
				return 0
			fi
			sleep 0.1
		done
		if kill -0 "$daemon_pid" 2>/dev/null; then
			tail -n 20 "$log" >&2
			die "the connector did not answer /healthz within 120 s"
		fi
		# Exited: maybe the port was taken in between; try another one.
		echo "connector exited at start (attempt $attempt):" >&2
		tail -n 5 "$log" >&2
	done
	die "the connector did not start (log: $log)"
}

# SIGTERM, wait up to SECONDS (default 60); sets daemon_rc to the exit status.
# Call it directly, not in $(...): only this shell can wait for its child.
bench_stop_daemon() {
	local pid=$1 secs=${2:-60}
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 $((secs * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "the connector did not stop within ${secs} s of SIGTERM; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	# shellcheck disable=SC2034 # read by the caller
	daemon_rc=0
	wait "$pid" 2>/dev/null || daemon_rc=$?
}

# Starts a throwaway PostgreSQL (tests/support/pg.sh) under $work/pg, stopped on exit, and
# sources its pg.env (CN_TEST_PG_DSN, CN_TEST_PG_SUPER_DSN, CN_TEST_PG_PORT, ...). Call it
# after bench_workdir. usage: bench_start_pg
bench_start_pg() {
	pgdir=$work/pg # pg.sh stop removes this directory
	bench_cleanup_hook=bench_stop_pg
	bash "$repo/tests/support/pg.sh" start "$pgdir" >/dev/null || die "tests/support/pg.sh start failed"
	# shellcheck disable=SC1091
	. "$pgdir/pg.env"
	: "${CN_TEST_PG_DSN:?pg.env did not set CN_TEST_PG_DSN}"
	: "${CN_TEST_PG_SUPER_DSN:?pg.env did not set CN_TEST_PG_SUPER_DSN}"
}
bench_stop_pg() { bash "$repo/tests/support/pg.sh" stop "$pgdir" >/dev/null 2>&1 || true; }

# VmRSS / VmHWM of PID in KiB.
bench_rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
bench_hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# The value of KEY in a "key=value ..." line. usage: kv LINE KEY
kv() {
	local w
	for w in $1; do
		case "$w" in "$2="*) echo "${w#*=}"; return ;; esac
	done
	echo "-"
}

# The best wall time in ms of COMMAND, run 3 times; its output goes to $out_file.
# usage: out_file=FILE; ms=$(bench_best_of_3 COMMAND...)
bench_best_of_3() {
	local best=- t0 t1 ms_
	for _ in 1 2 3; do
		t0=$(date +%s%N)
		"$@" >"$out_file" 2>"$out_file.err" || { cat "$out_file.err" >&2; return 1; }
		t1=$(date +%s%N)
		ms_=$(((t1 - t0) / 1000000))
		if [ "$best" = - ] || [ "$ms_" -lt "$best" ]; then best=$ms_; fi
	done
	echo "$best"
}

# Floating-point helpers (awk): ratio A B -> A/B with 2 decimals, or "-".
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'
}
ms() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else printf "%.2f", a / 1000 }'; }

# bench_demo_config FILE STATE_DIR DEMO_DB [POOL [LOG_LEVEL]]: the connector's config
# for the SQLite demo with its mappings, signed with $BENCH_SECRET.
bench_demo_config() {
	cat >"$1" <<-YAML
		server: { listen: "127.0.0.1:8080" }
		auth: { callback_secrets: ["\${BENCH_SECRET}"], timestamp_tolerance: 300 }
		state: { path: "$2/state.db" }
		log: { level: ${5:-info}, format: json }
		sources:
		  - name: demo
		    driver: sqlite
		    dsn: "$3"
		    description: "Demo sales database"
		    mappings: "$repo/conf/mappings/demo.yaml"
		    pool: { size: ${4:-4} }
		    limits: { max_rows: 1000, max_result_bytes: 60000, timeout_ms: 10000 }
	YAML
}

# bench_pg_schema_sql N: SQL that creates N tables t0001.. of 20 columns each in schema public
# (types cycling through ten, every fourth NOT NULL, a foreign key to the table before in every
# third, to the tenth before in every fifth, comments on every table and on columns 4, 8, ..,
# an index on every second), then lets connector_ro read them. bench/pg.sh and bench/refresh.sh.
bench_pg_schema_sql() {
	cat <<SQL
DO \$gen\$
DECLARE
	types text[] := ARRAY['integer', 'bigint', 'text', 'varchar(64)', 'numeric(12,2)',
	                      'timestamptz', 'date', 'boolean', 'jsonb', 'uuid'];
	i integer;
	j integer;
	t text;
	cols text;
BEGIN
	FOR i IN 1..$1 LOOP
		t := format('t%s', lpad(i::text, 4, '0'));
		cols := 'id bigint PRIMARY KEY';
		FOR j IN 2..20 LOOP
			IF j = 2 AND i > 1 AND i % 3 = 0 THEN
				cols := cols || format(', parent_id bigint REFERENCES t%s (id)', lpad((i - 1)::text, 4, '0'));
			ELSIF j = 3 AND i > 10 AND i % 5 = 0 THEN
				cols := cols || format(', ref_id bigint REFERENCES t%s (id)', lpad((i - 10)::text, 4, '0'));
			ELSE
				cols := cols || format(', c%s %s%s', j, types[1 + (i + j) % 10],
				                       CASE WHEN j % 4 = 0 THEN ' NOT NULL' ELSE '' END);
			END IF;
		END LOOP;
		EXECUTE format('CREATE TABLE %I (%s)', t, cols);
		EXECUTE format('COMMENT ON TABLE %I IS %L', t, format('Generated table %s of $1', i));
		FOR j IN 4..20 BY 4 LOOP
			EXECUTE format('COMMENT ON COLUMN %I.%I IS %L', t, 'c' || j, format('Column %s of %s', j, t));
		END LOOP;
		IF i % 2 = 0 THEN
			EXECUTE format('CREATE INDEX ON %I (c5)', t);
		END IF;
	END LOOP;
END
\$gen\$;
GRANT USAGE ON SCHEMA public TO connector_ro;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO connector_ro;
ANALYZE;
SQL
}
