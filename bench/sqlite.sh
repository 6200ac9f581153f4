#!/usr/bin/env bash
# bench/sqlite.sh - the demo path: the connector on the bundled SQLite demo database.
#
# Builds the connector (build-bench/) and the bench tools (bench/.bin/), writes a config
# for build-bench/demo.db in a temporary directory, starts the daemon on a free port of
# 127.0.0.1, then measures, all in the same run:
#   - idle RSS (after start, and after BENCH_IDLE seconds of idling)
#   - for each client count (BENCH_CLIENTS, default "1 4 16"), BENCH_DURATION s each:
#       GET /healthz                       the HTTP floor (no signature, no JSON, no database)
#       run_query   an indexed point query SELECT * FROM orders WHERE customer_id = $1
#       describe_schema                    the whole demo schema
#     requests/s, p50/p99/max latency, the daemon's CPU per request, RSS and peak RSS;
#     at the first client count also, to split the cost of a callback:
#       signed_401   the same run_query signed with a wrong secret (HTTP + HMAC + 401)
#       replay       the same run_query under one fixed execution_id (HTTP + HMAC + JSON
#                    + execution-store lookup, no query, no store write)
#   - the baseline: the same SELECT in a tight loop through sqlite3 prepared statements
#   - RSS after the load and after idling again, state-database and log bytes per request,
#     and the exit status after SIGTERM
# and prints a table. Exit 0 when it ran (whatever the figures), 1 when it could not.
#
# Environment: BENCH_DURATION (10), BENCH_WARMUP (1), BENCH_CLIENTS ("1 4 16"),
# BENCH_IDLE (5), BENCH_POOL (pool.size, 4), BENCH_LOG_LEVEL (info, as in conf/demo.yaml), and those of bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-1}
clients_list=${BENCH_CLIENTS:-1 4 16}
idle=${BENCH_IDLE:-5}
pool=${BENCH_POOL:-4}
log_level=${BENCH_LOG_LEVEL:-info}
# shellcheck disable=SC2016 # $1 is the SQL placeholder
query='SELECT * FROM orders WHERE customer_id = $1'
query_param=3

bench_build_connector "$build_dir"
bench_build_tools
demo_db=$build_dir/demo.db
[ -f "$demo_db" ] || die "$demo_db is missing (the build makes it from conf/demo.sql with sqlite3)"
bench_workdir

BENCH_SECRET=$(bench_secret)
export BENCH_SECRET
bench_demo_config "$work/connector.yaml" "$work" "$demo_db" "$pool" "$log_level"

echo "== bench/sqlite.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $(uname -r)"
echo "   pool=$pool log=$log_level duration=${duration}s warmup=${warmup}s"
bench_start_daemon "$work/connector.yaml" "$work/connector.log"
pid=$daemon_pid
port=$daemon_port
rss_start=$(bench_rss "$pid")
sleep "$idle"
rss_idle=$(bench_rss "$pid")
echo "idle RSS: ${rss_start} KiB after start, ${rss_idle} KiB after ${idle} s idle"

params_query=$(printf '{"source":"demo","query":"%s","parameters":[%s]}' "$query" "$query_param")
params_describe='{"source":"demo"}'

declare -A line
run_one() { # name clients loadgen-args...
	local name=$1 c=$2
	shift 2
	local out
	out=$("$loadgen" --url "127.0.0.1:$port" --clients "$c" --duration "$duration" \
		--warmup "$warmup" --pid "$pid" --label "$name" "$@") ||
		die "loadgen failed for $name at $c clients"
	line[$name,$c]=$(grep '^loadgen ' <<<"$out")
	grep '^# ' <<<"$out"
}

BENCH_WRONG_SECRET=$(bench_secret)
export BENCH_WRONG_SECRET
first_c=${clients_list%% *}
workloads=(healthz signed_401 replay run_query describe_schema)
total_posts=0
stored=0
for c in $clients_list; do
	run_one healthz "$c" --get /healthz
	if [ "$c" = "$first_c" ]; then
		run_one signed_401 "$c" --tool run_query --params "$params_query" \
			--secret-env BENCH_WRONG_SECRET --expect 401
		run_one replay "$c" --tool run_query --params "$params_query" \
			--secret-env BENCH_SECRET --exec-id "exec_bench_replay_$$_$RANDOM"
	fi
	run_one run_query "$c" --tool run_query --params "$params_query" --secret-env BENCH_SECRET
	run_one describe_schema "$c" --tool describe_schema --params "$params_describe" \
		--secret-env BENCH_SECRET
	for w in "${workloads[@]}"; do
		if [ "$w" = healthz ] || [ -z "${line[$w,$c]:-}" ]; then continue; fi
		n=$(($(kv "${line[$w,$c]}" requests) + $(kv "${line[$w,$c]}" warmup_requests)))
		total_posts=$((total_posts + n))
		case $w in run_query | describe_schema) stored=$((stored + n)) ;; esac
	done
done

rss_after=$(bench_rss "$pid")
hwm_after=$(bench_hwm "$pid")
sleep "$idle"
rss_after_idle=$(bench_rss "$pid")

echo
echo "baseline: the same SELECT through the sqlite3 C API, one thread, 3 s per mode"
base_out=$("$sqlite_loop" "$demo_db" "$query" "$query_param" 3) || die "sqlite_loop failed"
grep '^# ' <<<"$base_out"
base_reuse_us=$(kv "$(grep 'mode=reuse' <<<"$base_out")" us_per_query)
base_prep_us=$(kv "$(grep 'mode=prepare' <<<"$base_out")" us_per_query)

state_bytes=$(du -cb "$work"/state.db* 2>/dev/null | awk 'END {print $1}')
log_bytes=$(stat -c %s "$work/connector.log")
bench_stop_daemon "$pid" 60
stop_rc=$daemon_rc

echo
echo "raw figures:"
for c in $clients_list; do
	for w in "${workloads[@]}"; do
		[ -n "${line[$w,$c]:-}" ] && echo "${line[$w,$c]}"
	done
done
echo "$base_out" | grep '^sqlite_loop'

echo
printf '%-16s %7s %9s %8s %8s %8s %9s %8s %7s %9s %9s\n' workload clients 'req/s' \
	'x floor' 'p50 ms' 'p99 ms' 'max ms' 'CPU us/r' errors 'RSS KiB' 'peak KiB'
for c in $clients_list; do
	floor=$(kv "${line[healthz,$c]}" rps)
	for w in "${workloads[@]}"; do
		[ -n "${line[$w,$c]:-}" ] || continue
		l=${line[$w,$c]}
		printf '%-16s %7s %9s %8s %8s %8s %9s %8s %7s %9s %9s\n' "$w" "$c" "$(kv "$l" rps)" \
			"$(ratio "$(kv "$l" rps)" "$floor")" "$(ms "$(kv "$l" p50_us)")" \
			"$(ms "$(kv "$l" p99_us)")" "$(ms "$(kv "$l" max_us)")" \
			"$(kv "$l" srv_cpu_us_per_req)" "$(kv "$l" errors)" "$(kv "$l" srv_rss_kb)" \
			"$(kv "$l" srv_hwm_kb)"
	done
done

q1=${line[run_query,$first_c]}
h1=${line[healthz,$first_c]}
q_cpu=$(kv "$q1" srv_cpu_us_per_req)
h_cpu=$(kv "$h1" srv_cpu_us_per_req)
echo
echo "per request at $first_c client(s):"
echo "  sqlite3 C API, prepared once:      ${base_reuse_us} us/query"
echo "  sqlite3 C API, prepared each time: ${base_prep_us} us/query"
echo "  connector /healthz CPU:            ${h_cpu} us/request (the HTTP floor)"
echo "  connector 401 (wrong secret) CPU:  $(kv "${line[signed_401,$first_c]}" srv_cpu_us_per_req) us/request"
echo "  connector replay CPU:              $(kv "${line[replay,$first_c]}" srv_cpu_us_per_req) us/request"
echo "  connector run_query CPU:           ${q_cpu} us/request" \
	"= $(ratio "$q_cpu" "$base_prep_us") x the prepared-each-time query," \
	"$(ratio "$q_cpu" "$h_cpu") x the HTTP floor"
echo "  connector run_query p50 latency:   $(kv "$q1" p50_us) us" \
	"= $(ratio "$(kv "$q1" p50_us)" "$base_prep_us") x the prepared-each-time query"
echo "  added by the connector (CPU):      $(awk -v a="$q_cpu" -v b="$base_prep_us" \
	'BEGIN { if (a == "-") print "-"; else printf "%.1f", a - b }') us/request over the bare query"
echo
echo "memory: idle ${rss_start} -> ${rss_idle} KiB; after the load ${rss_after} KiB" \
	"(peak ${hwm_after}), after ${idle} s idle ${rss_after_idle} KiB"
echo "state database: $state_bytes bytes after $stored stored answers" \
	"($(awk -v a="$state_bytes" -v b="$stored" 'BEGIN { printf "%.0f", b ? a / b : 0 }') B each);" \
	"log: $log_bytes bytes ($(awk -v a="$log_bytes" -v b="$total_posts" \
	'BEGIN { printf "%.0f", b ? a / b : 0 }') B per POST, $total_posts POSTs)"
echo "exit status after SIGTERM: $stop_rc"
echo "summary key=value: idle_rss_kb=$rss_idle rss_after_load_kb=$rss_after hwm_kb=$hwm_after" \
	"rss_after_idle_kb=$rss_after_idle sqlite_reuse_us=$base_reuse_us sqlite_prepare_us=$base_prep_us" \
	"stop_rc=$stop_rc"
