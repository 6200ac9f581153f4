#!/usr/bin/env bash
# bench/expiry.sh - how long expiring old answers from the execution store holds up callbacks.
#
# The connector deletes answers older than the TTL (7 days) when it starts and every hour.
# This script lets the connector create its state database, stops it, fills the executions
# table with BENCH_EXPIRE_ROWS (100000) answers dated 8 days ago (one in three 6.2 KB, like a
# describe_schema answer, the others 430 bytes, like a small run_query answer), starts it
# again and times the first signed callback sent as soon as /healthz answers. The baseline in
# the same run is the same first callback after a start with an empty store.
#
# Prints both latencies, their ratio and the connector's own log line about the expiry.
# Exit 0 when it ran, 1 when it could not.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

rows=${BENCH_EXPIRE_ROWS:-100000}
command -v sqlite3 >/dev/null || die "the sqlite3 command-line tool is not installed"
bench_build_connector "$build_dir"
bench_build_tools
demo_db=$build_dir/demo.db
[ -f "$demo_db" ] || die "$demo_db is missing"
bench_workdir

BENCH_SECRET=$(bench_secret)
export BENCH_SECRET
cat >"$work/connector.yaml" <<YAML
server: { listen: "127.0.0.1:8080" }
auth: { callback_secrets: ["\${BENCH_SECRET}"] }
state: { path: "$work/state.db" }
log: { level: info, format: json }
sources:
  - { name: demo, driver: sqlite, dsn: "$demo_db" }
YAML

# Starts the daemon and times one run_query sent right after /healthz answers; sets
# callback_ms. Not called in $(...), so that the exit trap still stops the daemon on failure.
first_callback() {
	bench_start_daemon "$work/connector.yaml" "$work/connector.log"
	local out
	out=$("$loadgen" --url "127.0.0.1:$daemon_port" --tool run_query --requests 1 --warmup 0 \
		--params '{"source":"demo","query":"SELECT 1 AS one"}' --secret-env BENCH_SECRET) ||
		die "loadgen failed"
	out=$(grep '^loadgen ' <<<"$out")
	[ "$(kv "$out" ok)" = 1 ] || die "the callback failed: $out"
	bench_stop_daemon "$daemon_pid" 120
	[ "$daemon_rc" = 0 ] || die "the connector exited $daemon_rc (log: $work/connector.log)"
	callback_ms=$(ms "$(kv "$out" max_us)")
}

echo "== bench/expiry.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $rows expired answers"
first_callback
base_ms=$callback_ms
echo "first callback after a start with an empty store: $base_ms ms"

echo "filling the store with $rows answers dated 8 days ago ..." >&2
old=$(($(date +%s) - 8 * 86400))
sqlite3 -bail "$work/state.db" >/dev/null <<SQL
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $rows)
INSERT INTO executions (id, state, status, body, created_at, updated_at)
SELECT 'exec_expired_' || n, 1, 200,
       randomblob(CASE WHEN n % 3 = 0 THEN 6200 ELSE 430 END), $old, $old
FROM g;
PRAGMA wal_checkpoint(TRUNCATE);
SQL

size=$(du -cb "$work"/state.db* | awk 'END {print $1}')
echo "state database: $size bytes"

first_callback
full_ms=$callback_ms
echo "first callback after a start with $rows expired answers: $full_ms ms" \
	"($(ratio "$full_ms" "$base_ms") x the empty-store start)"
grep -o '"msg":"execution store: [^"]*"' "$work/connector.log" | tail -n 1 || true
echo "summary key=value: rows=$rows state_bytes=$size empty_ms=$base_ms expired_ms=$full_ms"
