#!/usr/bin/env bash
# bench/refresh.sh - what schema refresh costs, and search_schema on a large schema.
#
# Starts a throwaway PostgreSQL with tests/support/pg.sh (stopped and removed on exit), creates
# database bench_schema with BENCH_PG_TABLES (1000) tables x 20 columns (bench_pg_schema_sql of
# bench/lib.sh, as bench/pg.sh) and bench_rows (10,000 rows), and starts the connector on it
# (pool.size 4, refresh off: only on demand). Then:
#
# 1. Refresh time: `interactor-connector refresh` BENCH_REFRESHES (5) times through the daemon.
#    For each, the daemon's own figure from its log (introspection, mappings, diff, drift,
#    search index, compact index, publish, snapshot) and the command's wall time.
# 2. What refreshing costs concurrent queries: loadgen runs run_query
#    (SELECT * FROM bench_rows WHERE id = $1, a random id) with BENCH_CLIENTS (4) clients for
#    BENCH_DURATION (10) s, once without refreshes and once with refreshes back to back (a
#    SIGUSR1 every 50 ms; signals that arrive during a refresh fold into the next one), and
#    that BENCH_ROUNDS (3) times, interleaved. It prints p50 and p99 of both and the p99
#    difference per round, and the refreshes done during each loaded window.
# 3. search_schema on a generated SQLite schema of BENCH_SEARCH_TABLES (5000) tables x 6
#    columns (names alone over 64 KB): latency at 1 and 4 clients for BENCH_SEARCH_DURATION (5)
#    s each, and describe_schema's first index page.
#
# Needs the postgres driver (build-bench/drivers/postgres.so, or BENCH_DRIVER_DIR) for parts 1
# and 2; part 3 needs only SQLite. Exit 0 when it ran, 1 when it could not.
#
# Environment: BENCH_PG_TABLES, BENCH_REFRESHES, BENCH_CLIENTS, BENCH_DURATION, BENCH_ROUNDS,
# BENCH_SEARCH_TABLES, BENCH_SEARCH_DURATION, BENCH_LOG_LEVEL (info), and those of bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

ntables=${BENCH_PG_TABLES:-1000}
refreshes=${BENCH_REFRESHES:-5}
clients=${BENCH_CLIENTS:-4}
duration=${BENCH_DURATION:-10}
rounds=${BENCH_ROUNDS:-3}
search_tables=${BENCH_SEARCH_TABLES:-5000}
search_duration=${BENCH_SEARCH_DURATION:-5}
log_level=${BENCH_LOG_LEVEL:-info}

for tool in psql python3 curl; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
bench_build_connector "$build_dir"
bench_build_tools
driver_dir=${BENCH_DRIVER_DIR:-$build_dir/drivers}
[ -f "$driver_dir/postgres.so" ] || die "$driver_dir/postgres.so is not built (needs libpq-dev and libpg-query-dev)"
bench_workdir
BENCH_SECRET=$(bench_secret)
export BENCH_SECRET

bench_start_pg
psql_super() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== bench/refresh.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $(uname -r)"
echo "creating $ntables tables x 20 columns in database bench_schema ..." >&2
psql_super -d "$CN_TEST_PG_SUPER_DSN" -c "CREATE DATABASE bench_schema"
schema_super_dsn=${CN_TEST_PG_SUPER_DSN/dbname=connector_test/dbname=bench_schema}
BENCH_PG_SCHEMA_DSN=${CN_TEST_PG_DSN/dbname=connector_test/dbname=bench_schema}
export BENCH_PG_SCHEMA_DSN
bench_pg_schema_sql "$ntables" | psql_super -d "$schema_super_dsn"
psql_super -d "$schema_super_dsn" <<SQL
CREATE TABLE bench_rows (id integer PRIMARY KEY, name text NOT NULL, amount numeric(10,2));
INSERT INTO bench_rows SELECT g, 'row ' || g, g % 1000 FROM generate_series(1, 10000) g;
GRANT SELECT ON bench_rows TO connector_ro;
ANALYZE bench_rows;
SQL
tab_n=$(psql -X -tA -d "$BENCH_PG_SCHEMA_DSN" -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
col_n=$(psql -X -tA -d "$BENCH_PG_SCHEMA_DSN" -c "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'")
echo "bench_schema: $tab_n tables, $col_n columns"

cfg=$work/refresh.yaml
cat >"$cfg" <<YAML
server: { listen: "127.0.0.1:8080" }
auth: { callback_secrets: ["\${BENCH_SECRET}"], timestamp_tolerance: 300 }
state: { path: "$work/state.db" }
drivers: { dir: "$driver_dir" }
log: { level: $log_level, format: text }
refresh: "off"
sources:
  - name: big
    driver: postgres
    dsn: "\${BENCH_PG_SCHEMA_DSN}"
    pool: { size: 4 }
    limits: { max_rows: 1000, max_result_bytes: 60000, timeout_ms: 10000 }
YAML
log=$work/connector.log
t0=$(date +%s%N)
bench_start_daemon "$cfg" "$log"
startup_ms=$((($(date +%s%N) - t0) / 1000000))
pid=$daemon_pid

# ---- 1. refresh time ---------------------------------------------------------------------

daemon_ms() { # the figures of "schema refreshed in N ms" lines after line $1 of the log
	tail -n +"$1" "$log" | sed -n "s/.*source 'big': schema refreshed in \([0-9]*\) ms.*/\1/p"
}
stats() { # numbers on stdin -> "min median max"
	sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "- - -"; exit }
		print v[1], v[int((NR + 1) / 2)], v[NR] }'
}
from=$(($(wc -l <"$log") + 1))
walls=()
for _ in $(seq 1 "$refreshes"); do
	t0=$(date +%s%N)
	"$bin" refresh --config "$cfg" big >"$work/refresh.out" || die "refresh failed: $(cat "$work/refresh.out")"
	walls+=($((($(date +%s%N) - t0) / 1000000)))
done
read -r d_min d_med d_max < <(daemon_ms "$from" | stats)
read -r w_min w_med w_max < <(printf '%s\n' "${walls[@]}" | stats)
rss_after=$(bench_rss "$pid")

# ---- 2. run_query latency with and without refreshes ---------------------------------------

params='{"source":"big","query":"SELECT * FROM bench_rows WHERE id = $1","parameters":[@RAND@]}'
run_load() { # prints loadgen's key=value line
	"$loadgen" --url "127.0.0.1:$daemon_port" --clients "$clients" --duration "$duration" --warmup 1 \
		--tool run_query --params "$params" --rand 1:10000 --secret-env BENCH_SECRET | grep '^loadgen '
}
declare -a base_lines load_lines load_refreshes
for round in $(seq 1 "$rounds"); do
	base_lines[round]=$(run_load) || die "loadgen failed"
	from=$(($(wc -l <"$log") + 1))
	(while kill -USR1 "$pid" 2>/dev/null; do sleep 0.05; done) &
	killer=$!
	load_lines[round]=$(run_load) || { kill "$killer"; die "loadgen failed"; }
	kill "$killer" 2>/dev/null || true
	wait "$killer" 2>/dev/null || true
	sleep 1 # the refresh that runs ends
	load_refreshes[round]=$(daemon_ms "$from" | wc -l)
done

# ---- 3. search_schema on 5,000 tables ------------------------------------------------------

bench_stop_daemon "$pid" 60
echo "generating a SQLite schema of $search_tables tables ..." >&2
python3 - "$work/big.db" "$search_tables" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
words = ["inventory", "shipment", "invoice", "customer", "supplier", "warehouse", "payment", "refund"]
with db:
    for i in range(int(sys.argv[2])):
        w = words[i % len(words)]
        db.execute(f"CREATE TABLE {w}_snapshot_archive_{i:05d} (id INTEGER PRIMARY KEY, {w}_code TEXT,"
                   f" quantity INTEGER, amount REAL, created_at TEXT, note TEXT)")
db.close()
PY
cfg2=$work/search.yaml
cat >"$cfg2" <<YAML
auth: { callback_secrets: ["\${BENCH_SECRET}"], timestamp_tolerance: 300 }
state: { path: "$work/state2.db" }
drivers: { dir: "$driver_dir" }
log: { level: $log_level, format: text }
refresh: "off"
sources:
  - { name: huge, driver: sqlite, dsn: "$work/big.db" }
YAML
t0=$(date +%s%N)
bench_start_daemon "$cfg2" "$work/connector2.log"
search_startup_ms=$((($(date +%s%N) - t0) / 1000000))
search_ms=$(sed -n "s/.*source 'huge': schema read in \([0-9]*\) ms.*/\1/p" "$work/connector2.log" | head -n 1)
search_line() { # CLIENTS PARAMS TOOL
	"$loadgen" --url "127.0.0.1:$daemon_port" --clients "$1" --duration "$search_duration" --warmup 1 \
		--tool "$3" --params "$2" --secret-env BENCH_SECRET --pid "$daemon_pid" | grep '^loadgen '
}
sq='{"query":"refund amount archive 04242","limit":10}'
s1=$(search_line 1 "$sq" search_schema) || die "loadgen failed (search_schema)"
s4=$(search_line 4 "$sq" search_schema) || die "loadgen failed (search_schema)"
dx=$(search_line 1 '{"source":"huge"}' describe_schema) || die "loadgen failed (describe_schema)"
dp=$(search_line 1 '{"source":"huge","page":5}' describe_schema) || die "loadgen failed (describe_schema)"
search_rss=$(bench_rss "$daemon_pid")
bench_stop_daemon "$daemon_pid" 60

# ---- report ------------------------------------------------------------------------------

echo
echo "refresh of $tab_n tables, $col_n columns on PostgreSQL $(psql -X -tA -d "$CN_TEST_PG_SUPER_DSN" -c 'SHOW server_version'), $refreshes times:"
echo "  the daemon's figure (introspect .. snapshot): min $d_min ms, median $d_med ms, max $d_max ms"
echo "  interactor-connector refresh, wall:          min $w_min ms, median $w_med ms, max $w_max ms"
echo "  daemon start-up with the first read of it:  $startup_ms ms; RSS after the refreshes $rss_after KiB"
echo
echo "run_query (a point query) at $clients clients, ${duration} s per run, without and with refreshes back to back:"
printf '  %5s | %9s %8s %8s | %9s %8s %8s | %9s | %9s\n' round 'rps' 'p50 ms' 'p99 ms' 'rps' 'p50 ms' 'p99 ms' \
	'p99 +ms' refreshes
for round in $(seq 1 "$rounds"); do
	b=${base_lines[round]} l=${load_lines[round]}
	printf '  %5s | %9s %8s %8s | %9s %8s %8s | %9s | %9s\n' "$round" "$(kv "$b" rps)" \
		"$(ms "$(kv "$b" p50_us)")" "$(ms "$(kv "$b" p99_us)")" "$(kv "$l" rps)" \
		"$(ms "$(kv "$l" p50_us)")" "$(ms "$(kv "$l" p99_us)")" \
		"$(awk -v a="$(kv "$l" p99_us)" -v b="$(kv "$b" p99_us)" 'BEGIN { printf "%.2f", (a - b) / 1000 }')" \
		"${load_refreshes[round]}"
done
echo "  (errors: $(for r in $(seq 1 "$rounds"); do printf '%s/%s ' "$(kv "${base_lines[r]}" errors)" "$(kv "${load_lines[r]}" errors)"; done))"
echo
echo "search_schema on $search_tables SQLite tables x 6 columns (first read $search_ms ms, start-up $search_startup_ms ms, RSS $search_rss KiB):"
echo "  search_schema, 1 client:   p50 $(ms "$(kv "$s1" p50_us)") ms, p99 $(ms "$(kv "$s1" p99_us)") ms, $(kv "$s1" rps) req/s, errors $(kv "$s1" errors)"
echo "  search_schema, 4 clients:  p50 $(ms "$(kv "$s4" p50_us)") ms, p99 $(ms "$(kv "$s4" p99_us)") ms, $(kv "$s4" rps) req/s, errors $(kv "$s4" errors)"
echo "  describe_schema, index p1: p50 $(ms "$(kv "$dx" p50_us)") ms, p99 $(ms "$(kv "$dx" p99_us)") ms"
echo "  describe_schema, index p5: p50 $(ms "$(kv "$dp" p50_us)") ms, p99 $(ms "$(kv "$dp" p99_us)") ms"
echo "summary key=value: refresh_tables=$tab_n refresh_median_ms=$d_med refresh_cli_median_ms=$w_med" \
	"search_p50_ms=$(ms "$(kv "$s1" p50_us)") search_p99_ms=$(ms "$(kv "$s1" p99_us)")"
