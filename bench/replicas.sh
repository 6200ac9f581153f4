#!/usr/bin/env bash
# bench/replicas.sh - one replica with the SQLite state store against three replicas behind
# HAProxy sharing the PostgreSQL state store (state.backend: postgres), on the same machine,
# the same source and the same load, in the same run.
#
# Starts a throwaway PostgreSQL with tests/support/pg.sh (it loads pg_stat_statements) and in it
# an empty state database; then, side by side for the whole run:
#   one     one connector, state.backend sqlite (the default), the SQLite demo as its source
#   one_pg  one connector, state.backend postgres on that database (state.pool
#           BENCH_STATE_POOL), the same source: what the shared store costs by itself
#   three   three connectors like one_pg, HAProxy in front (roundrobin, health check
#           GET /readyz); the three start together on the empty database (they migrate it)
# For each client count in BENCH_CLIENTS, BENCH_ROUNDS times, one, one_pg, three in turn, bench/.bin/loadgen
# sends run_query  SELECT * FROM orders WHERE customer_id = $1  (a random customer) for
# BENCH_DURATION seconds, every request under a fresh execution_id (so every one is claimed,
# run and stored, never replayed), and the script prints requests/s, p50/p99 and the CPU each
# request cost: the connector processes, HAProxy, the PostgreSQL server (postmaster and
# backends, from /proc), and the whole machine's busy share. Then, for the three-replica runs,
# what the shared store costs per execution, from pg_stat_statements of the state database:
# statements (each a round trip unless pipelined) and transactions per execution, the server's
# execution time per execution, and the statements that make it up. Ratios: three / one (what
# the issue asks), one_pg / one (the store) and three / one_pg (three processes and HAProxy).
#
# The machine has few cores: three replicas, HAProxy, PostgreSQL and the load generator share
# them, so "three" measures the cost of the shared store and the balancer, not scaling.
# Exit 0 when it ran, 1 when it could not (no haproxy, no PostgreSQL, build failure, a build
# without state.backend).
#
# Environment: BENCH_DURATION (10), BENCH_WARMUP (1), BENCH_CLIENTS ("4 16"), BENCH_ROUNDS (2),
# BENCH_POOL (source pool.size, 4), BENCH_STATE_POOL (4), BENCH_LOG_LEVEL (info), and those of
# bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-1}
clients_list=${BENCH_CLIENTS:-4 16}
rounds=${BENCH_ROUNDS:-2}
pool=${BENCH_POOL:-4}
state_pool=${BENCH_STATE_POOL:-4}
log_level=${BENCH_LOG_LEVEL:-info}
# shellcheck disable=SC2016 # $1 is the SQL placeholder
query='SELECT * FROM orders WHERE customer_id = $1'

for tool in haproxy psql curl python3; do
	command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install haproxy postgresql-15)"
done
bench_build_connector "$build_dir"
bench_build_tools
demo_db=$build_dir/demo.db
[ -f "$demo_db" ] || die "$demo_db is missing (the build makes it from conf/demo.sql with sqlite3)"
bench_workdir

haproxy_pid=
stop_all() {
	if [ -n "$haproxy_pid" ]; then kill -TERM "$haproxy_pid" 2>/dev/null || true; fi
	bench_stop_pg
}
bench_start_pg
bench_cleanup_hook=stop_all
[ "${CN_TEST_PG_STAT_STATEMENTS:-0}" = 1 ] ||
	die "the throwaway PostgreSQL has no pg_stat_statements (postgresql-15 ships it)"
psql_super() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -tA -v ON_ERROR_STOP=1 -d "$CN_TEST_PG_SUPER_DSN" "$@"; }
psql_super -c "CREATE DATABASE cn_state"
BENCH_STATE_DSN=${CN_TEST_PG_SUPER_DSN/dbname=connector_test/dbname=cn_state}
[ "$BENCH_STATE_DSN" != "$CN_TEST_PG_SUPER_DSN" ] || die "cannot derive the state DSN from CN_TEST_PG_SUPER_DSN"
export BENCH_STATE_DSN
state_oid=$(psql_super -c "SELECT oid FROM pg_database WHERE datname = 'cn_state'")

BENCH_SECRET=$(bench_secret)
export BENCH_SECRET
write_config() { # FILE STATE-DIR [postgres]
	local state="path: \"$2/state.db\""
	if [ "${3:-}" = postgres ]; then
		state="backend: postgres, dsn: \"\${BENCH_STATE_DSN}\", pool: $state_pool, $state"
	fi
	cat >"$1" <<-YAML
		server: { listen: "127.0.0.1:8080", max_connections_per_address: 256 }
		auth: { callback_secrets: ["\${BENCH_SECRET}"], timestamp_tolerance: 300 }
		state: { $state }
		log: { level: $log_level, format: json }
		sources:
		  - name: demo
		    driver: sqlite
		    dsn: "$demo_db"
		    pool: { size: $pool }
		    limits: { max_rows: 1000, max_result_bytes: 60000, timeout_ms: 10000 }
	YAML
}

echo "== bench/replicas.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $(uname -r);" \
	"load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   PostgreSQL $(psql_super -c 'SHOW server_version'), $(haproxy -v | head -n 1 | cut -d' ' -f1-3);" \
	"duration=${duration}s warmup=${warmup}s clients: $clients_list rounds: $rounds;" \
	"source pool $pool, state.pool $state_pool, log $log_level"

mkdir -p "$work/one"
write_config "$work/one/connector.yaml" "$work/one"
bench_start_daemon "$work/one/connector.yaml" "$work/one/connector.log"
one_pid=$daemon_pid
one_port=$daemon_port

# the three start at once on the empty state database: they migrate it together
three_pids=()
three_ports=()
for i in 0 1 2; do
	mkdir -p "$work/r$i"
	write_config "$work/r$i/connector.yaml" "$work/r$i" postgres
done
for i in 0 1 2; do
	port=$(bench_free_port)
	"$bin" serve --config "$work/r$i/connector.yaml" --listen "127.0.0.1:$port" \
		>>"$work/r$i/connector.log" 2>&1 &
	three_pids+=("$!")
	bench_pids+=("$!")
	three_ports+=("$port")
done
for i in 0 1 2; do
	for _ in $(seq 1 600); do
		if ! kill -0 "${three_pids[$i]}" 2>/dev/null; then
			tail -n 20 "$work/r$i/connector.log" >&2
			grep -q 'state.backend' "$work/r$i/connector.log" &&
				die "this build has no state.backend (the PostgreSQL state store)"
			die "replica $i exited"
		fi
		curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:${three_ports[$i]}/readyz" && break
		sleep 0.1
	done
done

# after the three: one_pg finds the tables migrated
mkdir -p "$work/one_pg"
write_config "$work/one_pg/connector.yaml" "$work/one_pg" postgres
bench_start_daemon "$work/one_pg/connector.yaml" "$work/one_pg/connector.log"
one_pg_pid=$daemon_pid
one_pg_port=$daemon_port

lb_port=$(bench_free_port)
cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 10s
    retries 3
    option redispatch
frontend callbacks
    bind 127.0.0.1:$lb_port
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 2s fall 2 rise 2
    server r0 127.0.0.1:${three_ports[0]}
    server r1 127.0.0.1:${three_ports[1]}
    server r2 127.0.0.1:${three_ports[2]}
CFG
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
for _ in $(seq 1 100); do
	curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$lb_port/readyz" && break
	sleep 0.1
done
curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$lb_port/readyz" ||
	{ cat "$work/haproxy.log" >&2; die "haproxy does not answer"; }
schema_versions=$(psql -X -tA -d "$BENCH_STATE_DSN" -c "SELECT string_agg(table_name, ',') FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND (table_name LIKE '%version%' OR table_name LIKE '%migration%')")
echo "three replicas on ports ${three_ports[*]} behind haproxy on $lb_port; one on $one_port; one_pg on $one_pg_port"

# CPU clock ticks (utime + stime) of the given processes; the PostgreSQL server's as in pg.sh:
# the postmaster, its live children and the children it has reaped.
proc_ticks() {
	local p f total=0
	for p in "$@"; do
		if read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null); then
			total=$((total + f[11] + f[12]))
		fi
	done
	echo "$total"
}
pg_ticks() {
	local pm f total
	pm=$(head -n 1 "$CN_TEST_PG_DATA_DIR/postmaster.pid")
	read -r -a f < <(sed 's/^.*) //' "/proc/$pm/stat")
	total=$((f[11] + f[12] + f[13] + f[14]))
	# shellcheck disable=SC2046 # a list of pids
	echo $((total + $(proc_ticks $(ps -o pid= --ppid "$pm"))))
}
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
clk_tck=$(getconf CLK_TCK)
per_req() { # TICKS0 TICKS1 N -> microseconds per request
	awk -v a="$1" -v b="$2" -v n="$3" -v hz="$clk_tck" \
		'BEGIN { if (n + 0 == 0) print "-"; else printf "%.1f", (b - a) * 1e6 / hz / n }'
}
# The state database's statements since the last reset: "calls exec_ms" summed.
state_stmts() {
	psql_super -c "SELECT coalesce(sum(calls), 0), coalesce(round(sum(total_exec_time)::numeric, 1), 0)
		FROM pgss.pg_stat_statements WHERE dbid = $state_oid" | tr '|' ' '
}
state_xacts() { psql_super -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'cn_state'"; }
replica_requests() { # PORT -> tool calls the replica has answered (its /metrics)
	curl -fs "http://127.0.0.1:$1/metrics" |
		awk '/^interactor_connector_tool_calls_total/ { s += $NF } END { printf "%d", s }'
}

params=$(printf '{"source":"demo","query":"%s","parameters":[@RAND@]}' "$query")
declare -A res
setups="one one_pg three"
run_one() { # SETUP CLIENTS ROUND
	local setup=$1 c=$2 r=$3 url pids out line n d0 d1 p0 p1 b0 t0 b1 t1 h0 h1 x0 x1 calls1 ms1
	case $setup in
	one) url=127.0.0.1:$one_port pids=("$one_pid") ;;
	one_pg) url=127.0.0.1:$one_pg_port pids=("$one_pg_pid") ;;
	three) url=127.0.0.1:$lb_port pids=("${three_pids[@]}") ;;
	esac
	sleep 0.5 # the last run's backends reaped, its answers written
	psql_super -c "SELECT pgss.pg_stat_statements_reset()" >/dev/null
	x0=$(state_xacts)
	d0=$(proc_ticks "${pids[@]}")
	h0=$(proc_ticks "$haproxy_pid")
	p0=$(pg_ticks)
	read -r b0 t0 < <(machine_ticks)
	out=$("$loadgen" --url "$url" --clients "$c" --duration "$duration" --warmup "$warmup" \
		--label "$setup" --tool run_query --params "$params" --rand 1:50 \
		--secret-env BENCH_SECRET) || die "loadgen failed ($setup, $c clients)"
	sleep 0.2
	d1=$(proc_ticks "${pids[@]}")
	h1=$(proc_ticks "$haproxy_pid")
	p1=$(pg_ticks)
	read -r b1 t1 < <(machine_ticks)
	x1=$(state_xacts)
	read -r calls1 ms1 < <(state_stmts)
	line=$(grep '^loadgen ' <<<"$out")
	n=$(($(kv "$line" requests) + $(kv "$line" warmup_requests)))
	[ "$setup" = three ] || { h0=0; h1=0; }
	[ "$setup" != one ] || { calls1=-; ms1=-; x0=0; x1=0; }
	line="$line n=$n daemon_us=$(per_req "$d0" "$d1" "$n") haproxy_us=$(per_req "$h0" "$h1" "$n")"
	line="$line pg_us=$(per_req "$p0" "$p1" "$n") machine_us=$(per_req "$b0" "$b1" "$n")"
	line="$line busy_pct=$(awk -v a="$b0" -v b="$b1" -v c="$t0" -v d="$t1" 'BEGIN { printf "%.0f", 100 * (b - a) / (d - c) }')"
	line="$line stmts=$calls1 stmt_ms=$ms1 xacts=$((x1 - x0))"
	res[$setup,$c,$r]=$line
	echo "$line"
}

for c in $clients_list; do
	for r in $(seq 1 "$rounds"); do
		for s in $setups; do run_one "$s" "$c" "$r"; done
	done
done
spread=()
for i in 0 1 2; do spread+=("r$i=$(replica_requests "${three_ports[$i]}")"); done
top=$(psql_super -c "SELECT calls, round(mean_exec_time::numeric, 3), regexp_replace(left(query, 90), '\s+', ' ', 'g')
	FROM pgss.pg_stat_statements WHERE dbid = $state_oid ORDER BY calls DESC LIMIT 8")
last_n=$(kv "${res[three,${clients_list##* },$rounds]}" n)

# ---- report ------------------------------------------------------------------------------
mean_of() { # SETUP CLIENTS KEY -> mean over the rounds
	local r v s=0 k=0
	for r in $(seq 1 "$rounds"); do
		v=$(kv "${res[$1,$2,$r]}" "$3")
		[ "$v" = - ] && continue
		s=$(awk -v s="$s" -v v="$v" 'BEGIN { print s + v }')
		k=$((k + 1))
	done
	awk -v s="$s" -v k="$k" 'BEGIN { if (k == 0) print "-"; else printf "%.1f", s / k }'
}
echo
echo "run_query, SQLite demo source, every request a new execution_id; $duration s per run"
printf '%7s %5s %6s | %8s %7s %7s %6s | %8s %8s %8s %8s | %6s\n' clients round setup req/s \
	'p50 ms' 'p99 ms' errors 'daemons' haproxy 'state PG' machine 'busy %'
printf '%7s %5s %6s | %8s %7s %7s %6s | %8s %8s %8s %8s | %6s\n' '' '' '' '' '' '' '' \
	'us/req' 'us/req' 'us/req' 'us/req' ''
for c in $clients_list; do
	for r in $(seq 1 "$rounds"); do
		for s in $setups; do
			l=${res[$s,$c,$r]}
			printf '%7s %5s %6s | %8s %7s %7s %6s | %8s %8s %8s %8s | %6s\n' "$c" "$r" "$s" \
				"$(kv "$l" rps)" "$(ms "$(kv "$l" p50_us)")" "$(ms "$(kv "$l" p99_us)")" \
				"$(kv "$l" errors)" "$(kv "$l" daemon_us)" "$(kv "$l" haproxy_us)" \
				"$(kv "$l" pg_us)" "$(kv "$l" machine_us)" "$(kv "$l" busy_pct)"
		done
	done
done
echo
cpu_of() { # SETUP CLIENTS -> daemons + haproxy + state PG, us per request
	awk -v a="$(mean_of "$1" "$2" daemon_us)" -v b="$(mean_of "$1" "$2" haproxy_us)" \
		-v p="$(mean_of "$1" "$2" pg_us)" 'BEGIN { print a + b + p }'
}
echo "ratios of the means over the rounds:"
printf '%7s %14s | %8s %8s %8s | %8s %8s\n' clients '' req/s p50 p99 'CPU/req' 'machine'
for c in $clients_list; do
	for pair in three/one one_pg/one three/one_pg; do
		a=${pair%/*} b=${pair#*/}
		printf '%7s %14s | %8s %8s %8s | %8s %8s\n' "$c" "$pair" \
			"$(ratio "$(mean_of "$a" "$c" rps)" "$(mean_of "$b" "$c" rps)")" \
			"$(ratio "$(mean_of "$a" "$c" p50_us)" "$(mean_of "$b" "$c" p50_us)")" \
			"$(ratio "$(mean_of "$a" "$c" p99_us)" "$(mean_of "$b" "$c" p99_us)")" \
			"$(ratio "$(cpu_of "$a" "$c")" "$(cpu_of "$b" "$c")")" \
			"$(ratio "$(mean_of "$a" "$c" machine_us)" "$(mean_of "$b" "$c" machine_us)")"
	done
done
echo "(CPU/req: the connector processes + haproxy + the state PostgreSQL per request; machine:"
echo " every process's CPU per request, the load generator and other users' load included)"
echo
echo "the shared store per execution (pg_stat_statements and pg_stat_database of the state database):"
for c in $clients_list; do
	for s in one_pg three; do
		for r in $(seq 1 "$rounds"); do
			l=${res[$s,$c,$r]}
			awk -v c="$c" -v s="$s" -v r="$r" -v n="$(kv "$l" n)" -v st="$(kv "$l" stmts)" \
				-v ms="$(kv "$l" stmt_ms)" -v x="$(kv "$l" xacts)" -v pg="$(kv "$l" pg_us)" 'BEGIN {
					if (n + 0 == 0) exit
					printf "  %3s clients, %-6s round %s: %.2f statements, %.2f transactions, %.0f us of " \
						"statement execution, %s us of server CPU per execution\n", c, s, r, st / n,
						x / n, ms * 1000 / n, pg }'
		done
	done
done
echo "  requests each replica answered over the run: ${spread[*]}"
echo "  schema version table(s): ${schema_versions:--}"
echo "  the state database's statements of the last run ($last_n executions), most called first:"
echo "    calls | mean ms | statement"
while IFS='|' read -r calls mean stmt; do
	printf '    %6s | %7s | %s\n' "$calls" "$mean" "$stmt"
done <<<"$top"
echo "summary key=value:$(for c in $clients_list; do
	for s in $setups; do
		printf ' %s_rps_%s=%s %s_p99_ms_%s=%s' "$s" "$c" "$(mean_of "$s" "$c" rps)" "$s" "$c" \
			"$(ms "$(mean_of "$s" "$c" p99_us)")"
	done
done)"
