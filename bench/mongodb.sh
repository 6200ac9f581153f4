#!/usr/bin/env bash
# bench/mongodb.sh - the connector on MongoDB, side by side with libmongoc called directly.
#
# Starts the MongoDB wire-protocol test server with tests/support/mongo.sh (stopped and removed
# on exit; no mongod installs here, see docs/mongodb.md), loads bench_items: BENCH_MONGO_GROUPS
# groups x 20 documents with an index on group_id, then for each client count N in
# BENCH_CLIENTS ("1 4 16"), BENCH_DURATION (10) seconds each, in the same run:
#   connector   started with a mongodb source (pool.size = N), driven by bench/.bin/loadgen:
#               run_query {"find": "bench_items", "filter": {"group_id": {"$param": 1}}}, a
#               random group per request (20 documents back)
#   mongo_loop  bench/.bin/mongo_loop: the same find through a mongoc_client_pool_t of N, N
#               threads in a closed loop, every document read
# and prints requests/s, p50/p99 for both, the connector/mongo_loop ratios, the connector's CPU
# per request, the test server's CPU per request under each (it is a Python program: it is the
# bottleneck, and the ratio says what the connector adds on top of the same server), and the
# connector's RSS idle and at the largest client count.
#
# Environment: BENCH_DURATION (10), BENCH_WARMUP (1), BENCH_CLIENTS ("1 4 16"),
# BENCH_MONGO_GROUPS (250), BENCH_IDLE (3), BENCH_LOG_LEVEL (info), and those of bench/lib.sh.
# Exit 0 when it ran, 1 when it could not.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-1}
clients_list=${BENCH_CLIENTS:-1 4 16}
groups=${BENCH_MONGO_GROUPS:-250}
idle=${BENCH_IDLE:-3}
log_level=${BENCH_LOG_LEVEL:-info}
mongo_support=$repo/tests/support/mongo.sh

for tool in python3 curl; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
/usr/bin/python3 -c 'import pymongo, mongomock' 2>/dev/null ||
	die "the test server needs python3-pymongo and python3-mongomock (scripts/install-deps.sh --test)"
bench_build_connector "$build_dir" -DCN_DRIVER_MONGODB=ON
bench_build_tools
driver_dir=${BENCH_DRIVER_DIR:-$build_dir/drivers}
[ -f "$driver_dir/mongodb.so" ] || die "$driver_dir/mongodb.so is not built (libmongoc-dev missing?)"
[ -x "$bench_dir/.bin/mongo_loop" ] || die "bench/.bin/mongo_loop is not built (libmongoc-dev missing?)"
bench_workdir

mdir=$work/mongo # mongo.sh stop removes this directory
stop_mongo() { bash "$mongo_support" stop "$mdir" >/dev/null 2>&1 || true; }
bench_cleanup_hook=stop_mongo
bash "$mongo_support" start "$mdir" >/dev/null || die "tests/support/mongo.sh start failed"
# shellcheck disable=SC1091
. "$mdir/mongo.env"
: "${CN_TEST_MONGO_URI:?mongo.env did not set CN_TEST_MONGO_URI}"

echo "== bench/mongodb.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $(uname -r)"
echo "   MongoDB wire-protocol test server (mongomock), port $CN_TEST_MONGO_PORT;" \
	"duration=${duration}s warmup=${warmup}s clients: $clients_list"

echo "loading bench_items: $((groups * 20)) documents, $groups groups of 20 ..." >&2
/usr/bin/python3 - "$CN_TEST_MONGO_URI" "$groups" <<'PY' || die "loading bench_items failed"
import datetime, decimal, sys
import pymongo
from bson.decimal128 import Decimal128
uri, groups = sys.argv[1], int(sys.argv[2])
coll = pymongo.MongoClient(uri).get_default_database()["bench_items"]
coll.drop()
docs = [{"_id": i, "group_id": i % groups + 1, "name": "item %d" % i,
         "price": Decimal128(decimal.Decimal(i % 10000) / 100), "in_stock": i % 7 != 0,
         "created_at": datetime.datetime(2024, 1, 1) + datetime.timedelta(minutes=i),
         "tags": ["t%d" % (i % 5), "t%d" % (i % 3)], "dims": {"w": i % 50, "h": i % 30}}
        for i in range(groups * 20)]
coll.insert_many(docs)
coll.create_index("group_id")
n = coll.count_documents({"group_id": 1})
if n != 20:
    sys.exit("group 1 has %d documents, expected 20" % n)
PY

# CPU clock ticks of the test server process (user + system).
server_ticks() {
	local pid f
	pid=$(cat "$CN_TEST_MONGO_PID_FILE" 2>/dev/null) || { echo -; return; }
	read -r -a f < <(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || { echo -; return; }
	echo $((f[11] + f[12]))
}
clk_tck=$(getconf CLK_TCK)
server_us_per_req() { # TICKS0 TICKS1 REQUESTS
	awk -v a="$1" -v b="$2" -v n="$3" -v hz="$clk_tck" 'BEGIN {
		if (a == "-" || b == "-" || n + 0 == 0) print "-"; else printf "%.0f", (b - a) * 1e6 / hz / n }'
}

BENCH_SECRET=$(bench_secret)
export BENCH_SECRET
write_config() { # FILE POOL
	cat >"$1" <<-YAML
		server: { listen: "127.0.0.1:8080" }
		auth: { callback_secrets: ["\${BENCH_SECRET}"], timestamp_tolerance: 300 }
		state: { path: "$work/state-$2.db" }
		drivers: { dir: "$driver_dir" }
		log: { level: $log_level, format: json }
		sources:
		  - name: bench
		    driver: mongodb
		    dsn: "\${CN_TEST_MONGO_URI}"
		    description: "Benchmark documents"
		    pool: { size: $2 }
		    options: { sample_size: 100 }
		    limits: { max_rows: 1000, max_result_bytes: 60000, timeout_ms: 10000 }
	YAML
}

declare -A cn loop
idle_rss=-
params='{"source":"bench","query":{"find":"bench_items","filter":{"group_id":{"$param":1}}},"parameters":[@RAND@]}'
for c in $clients_list; do
	cfg=$work/connector-$c.yaml
	write_config "$cfg" "$c"
	bench_start_daemon "$cfg" "$work/connector-$c.log"
	if [ "$idle_rss" = - ]; then
		sleep "$idle"
		idle_rss=$(bench_rss "$daemon_pid")
		echo "connector idle RSS: $idle_rss KiB ($idle s after start, pool.size $c)"
	fi
	s0=$(server_ticks)
	out=$("$loadgen" --url "127.0.0.1:$daemon_port" --clients "$c" --duration "$duration" \
		--warmup "$warmup" --pid "$daemon_pid" --label "connector" --tool run_query \
		--params "$params" --rand "1:$groups" --secret-env BENCH_SECRET) ||
		die "loadgen failed at $c clients"
	s1=$(server_ticks)
	cn[$c]=$(grep '^loadgen ' <<<"$out")
	n=$(($(kv "${cn[$c]}" requests) + $(kv "${cn[$c]}" warmup_requests)))
	cn[$c]="${cn[$c]} server_us_per_req=$(server_us_per_req "$s0" "$s1" "$n")"
	grep '^# ' <<<"$out" || true
	bench_stop_daemon "$daemon_pid" 60
	[ "$daemon_rc" = 0 ] || echo "connector exited $daemon_rc after SIGTERM (log: $work/connector-$c.log)"

	s0=$(server_ticks)
	loop[$c]=$("$bench_dir/.bin/mongo_loop" "$CN_TEST_MONGO_URI" bench_items "$groups" "$c" \
		"$duration" "$warmup") || die "mongo_loop failed at $c clients"
	s1=$(server_ticks)
	loop[$c]="${loop[$c]} server_us_per_req=$(server_us_per_req "$s0" "$s1" "$(kv "${loop[$c]}" requests)")"
	echo "${loop[$c]}"
done

echo
echo "raw figures:"
for c in $clients_list; do
	echo "${cn[$c]}"
	echo "${loop[$c]}"
done
echo
echo "find by an indexed field, 20 documents: {\"find\": \"bench_items\", \"filter\": {\"group_id\": <random of $groups>}}"
printf '%7s | %9s %7s %7s | %9s %7s %7s | %6s %6s | %8s %8s | %9s %9s | %6s\n' clients \
	'cn req/s' 'cn p50' 'cn p99' 'lib req/s' 'lib p50' 'lib p99' 'rps' 'p50' 'cn CPU' 'lib CPU' \
	'srv cn' 'srv lib' errors
printf '%7s | %9s %7s %7s | %9s %7s %7s | %6s %6s | %8s %8s | %9s %9s | %6s\n' '' '' ms ms \
	'' ms ms ratio ratio 'us/req' 'us/req' 'us/req' 'us/req' ''
for c in $clients_list; do
	l=${cn[$c]}
	g=${loop[$c]}
	printf '%7s | %9s %7s %7s | %9s %7s %7s | %6s %6s | %8s %8s | %9s %9s | %6s\n' "$c" \
		"$(kv "$l" rps)" "$(ms "$(kv "$l" p50_us)")" "$(ms "$(kv "$l" p99_us)")" \
		"$(kv "$g" rps)" "$(ms "$(kv "$g" p50_us)")" "$(ms "$(kv "$g" p99_us)")" \
		"$(ratio "$(kv "$l" rps)" "$(kv "$g" rps)")" "$(ratio "$(kv "$l" p50_us)" "$(kv "$g" p50_us)")" \
		"$(kv "$l" srv_cpu_us_per_req)" "$(kv "$g" cpu_us_per_req)" \
		"$(kv "$l" server_us_per_req)" "$(kv "$g" server_us_per_req)" \
		"$(kv "$l" errors)/$(kv "$g" errors)"
done
echo "(ratios are connector / mongo_loop: the cost of HTTP, the signature, JSON, the guard, BSON to"
echo " cells and the execution store on top of the same find. cn CPU: the connector process; lib"
echo " CPU: mongo_loop's own; srv: the test server's CPU per request under each)"
last_c=${clients_list##* }
echo "connector RSS: idle $idle_rss KiB; at $last_c clients $(kv "${cn[$last_c]}" srv_rss_kb) KiB" \
	"(peak $(kv "${cn[$last_c]}" srv_hwm_kb) KiB)"
echo "summary key=value: idle_rss_kb=$idle_rss groups=$groups"
