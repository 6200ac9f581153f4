#!/usr/bin/env bash
# bench/pg.sh - the connector on PostgreSQL, side by side with pgbench and pg_dump.
#
# Starts a throwaway PostgreSQL with tests/support/pg.sh (stopped and removed on exit), then:
#
# 1. Point query. Creates bench_items (BENCH_PG_GROUPS groups x 20 rows, index on group_id)
#    so that  SELECT * FROM bench_items WHERE group_id = $1  returns 20 rows. For each client
#    count N in BENCH_CLIENTS ("1 4 16"), BENCH_DURATION (10) seconds each, in the same run:
#      connector  started with a postgres source (pool.size = N), driven by
#                 bench/.bin/loadgen (run_query with that query, a random group per request)
#      pgbench    -n -M extended -c N -j N -T BENCH_DURATION, the same query with
#                 \set gid random(1, G), against the same server and database, as the same role
#    and prints requests/s, p50/p99 for both (pgbench's from its per-transaction log), the
#    connector/pgbench ratio, the connector's CPU per request, the PostgreSQL server's CPU per
#    query under each (postmaster and backends, from /proc), how busy the whole machine was,
#    the connector's idle RSS and its RSS at the largest client count. Then bench/.bin/pg_wrapper
#    runs the query BENCH_WRAPPER_N (5000) times on one connection, bare and inside the
#    driver's wrapper (BEGIN READ ONLY ...; query; ROLLBACK; DISCARD ALL; Sync), and prints
#    the client's and the server backend's CPU per query for each: what the wrapper costs.
# 2. Introspection. Creates a second database with BENCH_PG_TABLES (1000) tables x 20 columns,
#    foreign keys between some, comments on every table and some columns, and times
#    `interactor-connector introspect` against `pg_dump --schema-only` on it (best of 3 each).
#
# Needs the postgres driver (build-bench/drivers/postgres.so, from drivers/postgres/; or
# BENCH_DRIVER_DIR/postgres.so for a module built elsewhere). Without it the pgbench and pg_dump
# halves still run and the connector's figures read "-".
# Exit 0 when it ran, 1 when it could not (no PostgreSQL, no pgbench, build failure).
#
# Environment: BENCH_DURATION (10), BENCH_WARMUP (1), BENCH_CLIENTS ("1 4 16"),
# BENCH_PG_GROUPS (5000), BENCH_PG_TABLES (1000), BENCH_IDLE (5), BENCH_LOG_LEVEL (info), and
# those of bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-1}
clients_list=${BENCH_CLIENTS:-1 4 16}
groups=${BENCH_PG_GROUPS:-5000}
ntables=${BENCH_PG_TABLES:-1000}
idle=${BENCH_IDLE:-5}
log_level=${BENCH_LOG_LEVEL:-info}
pg_support=$repo/tests/support/pg.sh
# shellcheck disable=SC2016 # $1 is the SQL placeholder
query='SELECT * FROM bench_items WHERE group_id = $1'

for tool in pgbench pg_dump psql python3 curl; do
	command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install postgresql-15 postgresql-client-15)"
done
[ -x "$pg_support" ] || [ -f "$pg_support" ] || die "$pg_support is missing"
bench_build_connector "$build_dir"
bench_build_tools
driver_dir=${BENCH_DRIVER_DIR:-$build_dir/drivers}
driver_dir=$(cd "$driver_dir" 2>/dev/null && pwd || echo "$driver_dir")
have_driver=1
if [ ! -f "$driver_dir/postgres.so" ]; then
	have_driver=0
	echo "NOTE: $driver_dir/postgres.so is not built: running the pgbench and pg_dump" \
		"halves only; the connector's figures read '-'" >&2
fi
bench_workdir

bench_start_pg
psql_super() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== bench/pg.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $(uname -r)"
echo "   PostgreSQL $(psql -X -tA -d "$CN_TEST_PG_SUPER_DSN" -c 'SHOW server_version'), port" \
	"$CN_TEST_PG_PORT; duration=${duration}s warmup=${warmup}s (connector) clients: $clients_list"

# ---- 1. the point query ---------------------------------------------------------------

rows=$((groups * 20))
echo "loading bench_items: $rows rows, $groups groups of 20 ..." >&2
psql_super -d "$CN_TEST_PG_SUPER_DSN" <<SQL
DROP TABLE IF EXISTS bench_items;
CREATE TABLE bench_items (
	id bigint PRIMARY KEY,
	group_id integer NOT NULL,
	name text NOT NULL,
	price numeric(10,2) NOT NULL,
	in_stock boolean NOT NULL,
	created_at timestamptz NOT NULL,
	note text
);
INSERT INTO bench_items
SELECT g, (g % $groups) + 1, 'item ' || g, (g % 10000) / 100.0, g % 7 <> 0,
       timestamptz '2024-01-01' + g * interval '1 minute', md5(g::text)
FROM generate_series(0, $rows - 1) AS g;
CREATE INDEX bench_items_group_id_idx ON bench_items (group_id);
COMMENT ON TABLE bench_items IS 'Benchmark rows: 20 per group_id';
GRANT SELECT ON bench_items TO connector_ro;
VACUUM ANALYZE bench_items;
SQL
check=$(psql -X -tA -d "$CN_TEST_PG_DSN" -c "SELECT count(*) FROM bench_items WHERE group_id = 1")
[ "$check" = 20 ] || die "bench_items: group 1 has $check rows, expected 20"

cat >"$work/pgbench.sql" <<SQL
\\set gid random(1, $groups)
SELECT * FROM bench_items WHERE group_id = :gid;
SQL

BENCH_SECRET=$(bench_secret)
export BENCH_SECRET
write_config() { # FILE POOL SOURCE-NAME DSN-VAR
	cat >"$1" <<-YAML
		server: { listen: "127.0.0.1:8080" }
		auth: { callback_secrets: ["\${BENCH_SECRET}"], timestamp_tolerance: 300 }
		state: { path: "$work/state-$3.db" }
		drivers: { dir: "$driver_dir" }
		log: { level: $log_level, format: json }
		sources:
		  - name: $3
		    driver: postgres
		    dsn: "\${$4}"
		    description: "Benchmark database"
		    pool: { size: $2 }
		    limits: { max_rows: 1000, max_result_bytes: 60000, timeout_ms: 10000 }
	YAML
}

# Percentiles of the latency column (3rd, microseconds) of pgbench's -l logs.
pgbench_percentiles() { # PREFIX -> "p50 p99 max"
	cat "$1".* | awk '{print $3}' | sort -n | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "- - -"; exit }
			i50 = int(0.50 * (NR - 1) + 0.5) + 1; i99 = int(0.99 * (NR - 1) + 0.5) + 1
			print v[i50], v[i99], v[NR]
		}'
}

# CPU clock ticks the PostgreSQL server has used: the postmaster, its live children, and the
# children it has reaped (the postmaster's cutime and cstime). "-" when it cannot be read.
pg_server_ticks() {
	local pm p total f
	pm=$(head -n 1 "$CN_TEST_PG_DATA_DIR/postmaster.pid" 2>/dev/null) || { echo -; return; }
	read -r -a f < <(sed 's/^.*) //' "/proc/$pm/stat" 2>/dev/null) || { echo -; return; }
	total=$((f[11] + f[12] + f[13] + f[14]))
	for p in $(ps -o pid= --ppid "$pm"); do
		if read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null); then
			total=$((total + f[11] + f[12]))
		fi
	done
	echo "$total"
}
# "busy total" clock ticks of the whole machine, all cores (from /proc/stat).
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
clk_tck=$(getconf CLK_TCK)
cpu_sample() { cpu_pg0=$(pg_server_ticks); read -r cpu_busy0 cpu_total0 < <(machine_ticks); }
# usage: cpu_report REQUESTS -> "pg_cpu_us_per_req=... machine_busy_pct=..."
cpu_report() {
	local pg1 busy1 total1
	pg1=$(pg_server_ticks)
	read -r busy1 total1 < <(machine_ticks)
	awk -v a="$cpu_pg0" -v b="$pg1" -v n="$1" -v hz="$clk_tck" -v b0="$cpu_busy0" -v b1="$busy1" \
		-v t0="$cpu_total0" -v t1="$total1" 'BEGIN {
			pg = (a == "-" || b == "-" || n + 0 == 0) ? "-" : sprintf("%.1f", (b - a) * 1e6 / hz / n)
			busy = (t1 > t0) ? sprintf("%.0f", 100 * (b1 - b0) / (t1 - t0)) : "-"
			printf "pg_cpu_us_per_req=%s machine_busy_pct=%s", pg, busy
		}'
}

# One pgbench run; prints its key=value line. usage: run_pgbench CLIENTS SCRIPT LABEL
run_pgbench() {
	local c=$1 script=$2 label=$3 prefix=$work/pgbench-log out tps done_n failed cpu p50 p99 pmax
	cpu_sample
	out=$(pgbench -n -M extended -c "$c" -j "$c" -T "$duration" -f "$script" \
		-l --log-prefix="$prefix" "$CN_TEST_PG_DSN" 2>&1) || { echo "$out" >&2; die "pgbench failed ($label, $c clients)"; }
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -n 1 | awk '{printf "%.1f", $1}')
	done_n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
	sleep 0.2 # let the postmaster reap pgbench's backends
	cpu=$(cpu_report "${done_n:-0}")
	read -r p50 p99 pmax < <(pgbench_percentiles "$prefix")
	rm -f "$prefix".*
	echo "$label clients=$c rps=${tps:--} requests=${done_n:--} failed=${failed:-0} p50_us=$p50" \
		"p99_us=$p99 max_us=$pmax $cpu"
}

declare -A cn pgb
idle_rss=-
params=$(printf '{"source":"bench","query":"%s","parameters":[@RAND@]}' "$query")
for c in $clients_list; do
	if [ "$have_driver" = 1 ]; then
		cfg=$work/connector-$c.yaml
		write_config "$cfg" "$c" bench CN_TEST_PG_DSN
		bench_start_daemon "$cfg" "$work/connector-$c.log"
		if [ "$idle_rss" = - ]; then
			sleep "$idle"
			idle_rss=$(bench_rss "$daemon_pid")
			echo "connector idle RSS: $idle_rss KiB ($idle s after start, pool.size $c)"
		fi
		cpu_sample
		out=$("$loadgen" --url "127.0.0.1:$daemon_port" --clients "$c" --duration "$duration" \
			--warmup "$warmup" --pid "$daemon_pid" --label "connector" --tool run_query \
			--params "$params" --rand "1:$groups" --secret-env BENCH_SECRET) ||
			die "loadgen failed at $c clients"
		cn[$c]=$(grep '^loadgen ' <<<"$out")
		# PostgreSQL's CPU over the whole loadgen run, warmup included
		cn[$c]="${cn[$c]} $(cpu_report $(($(kv "${cn[$c]}" requests) + $(kv "${cn[$c]}" warmup_requests))))"
		grep '^# ' <<<"$out"
		bench_stop_daemon "$daemon_pid" 60
		[ "$daemon_rc" = 0 ] || echo "connector exited $daemon_rc after SIGTERM (log: $work/connector-$c.log)"
	fi
	pgb[$c]=$(run_pgbench "$c" "$work/pgbench.sql" pgbench)
	echo "${pgb[$c]}"
done

# What the driver's wrapper around each query costs, client and server, on one connection
# (bench/pg_wrapper.c: the same variants as drivers/postgres/pg_exec.c sends, and the bare query).
first_c=${clients_list%% *}
wrapper_lines=
if [ -x "$bench_dir/.bin/pg_wrapper" ]; then
	wrapper_lines=$("$bench_dir/.bin/pg_wrapper" "$CN_TEST_PG_DSN" "$query" "$groups" \
		"${BENCH_WRAPPER_N:-5000}") || die "pg_wrapper failed"
	echo "$wrapper_lines"
fi

# ---- 2. introspection of a large schema ----------------------------------------------

echo "creating $ntables tables x 20 columns in database bench_schema ..." >&2
psql_super -d "$CN_TEST_PG_SUPER_DSN" -c "DROP DATABASE IF EXISTS bench_schema" -c "CREATE DATABASE bench_schema"
schema_super_dsn=${CN_TEST_PG_SUPER_DSN/dbname=connector_test/dbname=bench_schema}
BENCH_PG_SCHEMA_DSN=${CN_TEST_PG_DSN/dbname=connector_test/dbname=bench_schema}
export BENCH_PG_SCHEMA_DSN
[ "$BENCH_PG_SCHEMA_DSN" != "$CN_TEST_PG_DSN" ] || die "cannot derive the bench_schema DSN from CN_TEST_PG_DSN"
bench_pg_schema_sql "$ntables" | psql_super -d "$schema_super_dsn"
fk_n=$(psql -X -tA -d "$BENCH_PG_SCHEMA_DSN" -c "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = 'public'")
tab_n=$(psql -X -tA -d "$BENCH_PG_SCHEMA_DSN" -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
echo "bench_schema: $tab_n tables, $fk_n foreign keys"


out_file=$work/pg_dump.out
dump_ms=$(bench_best_of_3 pg_dump --schema-only --no-owner --no-privileges -d "$BENCH_PG_SCHEMA_DSN") ||
	die "pg_dump --schema-only failed"
dump_bytes=$(stat -c %s "$out_file")
intro_ms=- intro_bytes=- startup_ms=- schema_rss=- describe_all='' describe_two=''
if [ "$have_driver" = 1 ]; then
	write_config "$work/introspect.yaml" 1 schema BENCH_PG_SCHEMA_DSN
	out_file=$work/introspect.out
	intro_ms=$(bench_best_of_3 "$bin" introspect --config "$work/introspect.yaml" schema) || intro_ms=failed
	intro_bytes=$(stat -c %s "$out_file" 2>/dev/null || echo -)
	if [ "$intro_ms" = failed ]; then intro_bytes=-; fi

	# The same schema through the daemon: start-up (it introspects every source) and
	# describe_schema answered to the assistant, whole and for two tables.
	t0=$(date +%s%N)
	bench_start_daemon "$work/introspect.yaml" "$work/connector-schema.log"
	startup_ms=$((($(date +%s%N) - t0) / 1000000))
	describe_all=$("$loadgen" --url "127.0.0.1:$daemon_port" --requests 5 --warmup 0 \
		--tool describe_schema --params '{"source":"schema"}' --secret-env BENCH_SECRET |
		grep '^loadgen ') || die "loadgen failed (describe_schema)"
	describe_two=$("$loadgen" --url "127.0.0.1:$daemon_port" --requests 50 --warmup 0 \
		--tool describe_schema --params '{"source":"schema","tables":["t0001","t0002"]}' \
		--secret-env BENCH_SECRET | grep '^loadgen ') || die "loadgen failed (describe_schema)"
	schema_rss=$(bench_rss "$daemon_pid")
	bench_stop_daemon "$daemon_pid" 60
fi
answer_bytes() { # LINE -> mean bytes per answer, headers included
	awk -v b="$(kv "$1" bytes_in)" -v n="$(kv "$1" requests)" \
		'BEGIN { if (b == "-" || n + 0 == 0) print "-"; else printf "%.0f", b / n }'
}
statuses() { # LINE -> "200 x5" or the statuses seen
	local w out=""
	for w in $1; do
		case $w in status_*=* | transport_*=*) out="$out ${w}" ;; esac
	done
	echo "$(kv "$1" ok) x $(kv "$1" expect)${out}"
}

# ---- report ------------------------------------------------------------------------------

echo
echo "raw figures:"
for c in $clients_list; do
	[ -n "${cn[$c]:-}" ] && echo "${cn[$c]}"
	echo "${pgb[$c]}"
done
[ -z "$wrapper_lines" ] || echo "$wrapper_lines"
echo
echo "point query, 20 rows: SELECT * FROM bench_items WHERE group_id = \$1 (random group of $groups)"
printf '%7s | %9s %7s %7s | %9s %7s %7s | %6s %6s | %8s | %8s %8s | %7s | %7s\n' clients \
	'cn req/s' 'cn p50' 'cn p99' 'pgb tps' 'pgb p50' 'pgb p99' 'rps' 'p50' 'cn CPU' \
	'PG cn' 'PG pgb' 'busy %' errors
printf '%7s | %9s %7s %7s | %9s %7s %7s | %6s %6s | %8s | %8s %8s | %7s | %7s\n' '' '' ms ms \
	'' ms ms ratio ratio 'us/req' 'us/req' 'us/req' 'cn/pgb' 'cn/pgb'
for c in $clients_list; do
	l=${cn[$c]:-}
	g=${pgb[$c]}
	printf '%7s | %9s %7s %7s | %9s %7s %7s | %6s %6s | %8s | %8s %8s | %7s | %7s\n' "$c" \
		"$(kv "$l" rps)" "$(ms "$(kv "$l" p50_us)")" "$(ms "$(kv "$l" p99_us)")" \
		"$(kv "$g" rps)" "$(ms "$(kv "$g" p50_us)")" "$(ms "$(kv "$g" p99_us)")" \
		"$(ratio "$(kv "$l" rps)" "$(kv "$g" rps)")" "$(ratio "$(kv "$l" p50_us)" "$(kv "$g" p50_us)")" \
		"$(kv "$l" srv_cpu_us_per_req)" "$(kv "$l" pg_cpu_us_per_req)" "$(kv "$g" pg_cpu_us_per_req)" \
		"$(kv "$l" machine_busy_pct)/$(kv "$g" machine_busy_pct)" "$(kv "$l" errors)/$(kv "$g" failed)"
done
echo "(ratios are connector / pgbench: rps below 1 and p50 above 1 are the cost of HTTP, the"
echo " signature, JSON, the guard and the execution store on top of the same query. cn CPU: the"
echo " connector's CPU; PG cn / PG pgb: the PostgreSQL server's CPU per query under each; busy %:"
echo " the whole machine, all cores, during each run, other users' load included)"
last_c=${clients_list##* }
echo
echo "PostgreSQL's CPU per query at $first_c client(s): bare (pgbench) $(kv "${pgb[$first_c]}" pg_cpu_us_per_req) us," \
	"under the connector $(kv "${cn[$first_c]:-}" pg_cpu_us_per_req) us"
if [ -n "$wrapper_lines" ]; then
	echo "what the wrapper costs, one connection, ${BENCH_WRAPPER_N:-5000} queries per variant and round (pg_wrapper):"
	printf '  %-12s %5s | %9s %9s %9s\n' variant round 'wall us' 'client us' 'server us'
	while read -r line; do
		printf '  %-12s %5s | %9s %9s %9s\n' "$(kv "$line" variant)" "$(kv "$line" round)" \
			"$(kv "$line" wall_us)" "$(kv "$line" client_cpu_us)" "$(kv "$line" server_cpu_us)"
	done <<<"$wrapper_lines"
	echo "  (bare: the query alone; begin_rb: BEGIN READ ONLY, query, ROLLBACK; driver: the"
	echo "   driver's batch, with DISCARD ALL and one Sync; three_syncs: its earlier batch)"
fi
echo "connector RSS: idle $idle_rss KiB; at $last_c clients $(kv "${cn[$last_c]:-}" srv_rss_kb) KiB" \
	"(peak $(kv "${cn[$last_c]:-}" srv_hwm_kb) KiB)"
echo
echo "introspection of $tab_n tables x 20 columns ($fk_n foreign keys), best of 3:"
echo "  pg_dump --schema-only:        $dump_ms ms ($dump_bytes bytes)"
echo "  interactor-connector introspect: $intro_ms ms ($intro_bytes bytes)"
echo "  ratio introspect / pg_dump:   $(ratio "$intro_ms" "$dump_ms")"
if [ "$have_driver" = 1 ]; then
	echo "the same schema through the daemon:"
	echo "  start-up until /healthz answers: $startup_ms ms (0.1 s resolution); RSS then ${schema_rss} KiB"
	echo "  describe_schema, whole source:   p50 $(ms "$(kv "$describe_all" p50_us)") ms," \
		"$(answer_bytes "$describe_all") bytes per answer, statuses: $(statuses "$describe_all")"
	echo "  describe_schema, two tables:     p50 $(ms "$(kv "$describe_two" p50_us)") ms," \
		"$(answer_bytes "$describe_two") bytes per answer, statuses: $(statuses "$describe_two")"
fi
echo "summary key=value: idle_rss_kb=$idle_rss introspect_ms=$intro_ms pg_dump_ms=$dump_ms" \
	"startup_1000_tables_ms=${startup_ms:--}" \
	"driver=$([ "$have_driver" = 1 ] && echo yes || echo no)"
