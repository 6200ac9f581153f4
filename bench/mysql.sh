#!/usr/bin/env bash
# bench/mysql.sh - the connector on MariaDB, side by side with a plain C client and mariadb-dump.
#
# Starts a throwaway MariaDB with tests/support/mariadb.sh (stopped and removed on exit), then:
#
# 1. Point query. Creates bench_items (BENCH_MY_GROUPS groups x 20 rows, index on group_id) so
#    that  SELECT * FROM bench_items WHERE group_id = $1  returns 20 rows. For each client count
#    N in BENCH_CLIENTS ("1 4 16"), BENCH_DURATION (10) seconds each, in the same run:
#      connector  with a mysql source (pool.size = N), driven by bench/.bin/loadgen (run_query
#                 with that query, a random group per request)
#      my_loop    bench/.bin/my_loop: N threads, each with its own connection, the query
#                 prepared once and executed with a random group, every row fetched
#    and prints requests/s, p50/p99 for both, the ratio, the connector's CPU per request and
#    RSS, and the MariaDB server's CPU per query under each. Then my_loop's variants mode runs
#    the query BENCH_VARIANTS_N (3000) times on one connection in each way the driver could send
#    it, and prints the client's and the server's CPU per query for each: where the time goes.
# 2. Introspection. Creates a second database with BENCH_MY_TABLES (1000) tables x 20 columns,
#    foreign keys between some, comments, indexes, and times `interactor-connector introspect`
#    against `mariadb-dump --no-data` on it (best of 3 each).
#
# Exit 0 when it ran, 1 when it could not. Environment: BENCH_DURATION (10), BENCH_WARMUP (1),
# BENCH_CLIENTS ("1 4 16"), BENCH_MY_GROUPS (5000), BENCH_MY_TABLES (1000), BENCH_IDLE (3),
# BENCH_VARIANTS_N (3000), and those of bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-1}
clients_list=${BENCH_CLIENTS:-1 4 16}
groups=${BENCH_MY_GROUPS:-5000}
ntables=${BENCH_MY_TABLES:-1000}
idle=${BENCH_IDLE:-3}
my_support=$repo/tests/support/mariadb.sh
# shellcheck disable=SC2016 # $1 is the connector's placeholder
query='SELECT * FROM bench_items WHERE group_id = $1'
plain_query='SELECT * FROM bench_items WHERE group_id = ?'

for tool in mariadb mariadb-dump python3 curl; do
	command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install mariadb-server mariadb-client)"
done
bench_build_connector "$build_dir" -DCN_DRIVER_MYSQL=ON
bench_build_tools
[ -x "$bench_dir/.bin/my_loop" ] || die "bench/.bin/my_loop was not built (apt-get install libmariadb-dev)"
driver_dir=$build_dir/drivers
bench_workdir

mydir=$work/my
stop_my() { bash "$my_support" stop "$mydir" >/dev/null 2>&1 || true; }
bench_cleanup_hook=stop_my
bash "$my_support" start "$mydir" >/dev/null || die "tests/support/mariadb.sh start failed"
# shellcheck disable=SC1091
. "$mydir/mysql.env"
admin() { mariadb --no-defaults -h 127.0.0.1 -P "$CN_TEST_MYSQL_PORT" -u connector_admin \
	-p"$CN_TEST_MYSQL_ADMIN_PASSWORD" "$@"; }
server_pid=$(cat "$CN_TEST_MYSQL_BASE_DIR/mariadbd.pid")

echo "== bench/mysql.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $(uname -r)"
echo "   $(admin -N -e 'SELECT VERSION()'), port $CN_TEST_MYSQL_PORT; duration=${duration}s" \
	"warmup=${warmup}s (connector) clients: $clients_list"

# ---- 1. the point query ---------------------------------------------------------------

rows=$((groups * 20))
echo "loading bench_items: $rows rows, $groups groups of 20 ..." >&2
admin connector_test <<SQL
CREATE TABLE bench_items (
	id BIGINT PRIMARY KEY,
	group_id INT NOT NULL,
	name VARCHAR(64) NOT NULL,
	price DECIMAL(10,2) NOT NULL,
	in_stock BOOLEAN NOT NULL,
	created_at DATETIME NOT NULL,
	note VARCHAR(40),
	KEY bench_items_group_id_idx (group_id)
) COMMENT 'Benchmark rows: 20 per group_id';
INSERT INTO bench_items
SELECT seq, (seq % $groups) + 1, CONCAT('item ', seq), (seq % 10000) / 100, seq % 7 <> 0,
       '2024-01-01' + INTERVAL seq MINUTE, MD5(seq)
FROM seq_0_to_$((rows - 1));
ANALYZE TABLE bench_items;
SQL
check=$(admin -N connector_test -e "SELECT COUNT(*) FROM bench_items WHERE group_id = 1")
[ "$check" = 20 ] || die "bench_items: group 1 has $check rows, expected 20"

BENCH_SECRET=$(bench_secret)
export BENCH_SECRET
write_config() { # FILE POOL SOURCE-NAME DSN-VAR
	cat >"$1" <<-YAML
		server: { listen: "127.0.0.1:8080" }
		auth: { callback_secrets: ["\${BENCH_SECRET}"], timestamp_tolerance: 300 }
		state: { path: "$work/state-$3.db" }
		drivers: { dir: "$driver_dir" }
		log: { level: info, format: json }
		sources:
		  - name: $3
		    driver: mysql
		    dsn: "\${$4}"
		    description: "Benchmark database"
		    pool: { size: $2 }
		    limits: { max_rows: 1000, max_result_bytes: 60000, timeout_ms: 10000 }
	YAML
}

server_ticks() { # the mariadbd process's CPU clock ticks, all threads
	sed 's/^.*) //' "/proc/$server_pid/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo -
}
clk_tck=$(getconf CLK_TCK)
per_req_us() { # TICKS0 TICKS1 REQUESTS
	awk -v a="$1" -v b="$2" -v n="$3" -v hz="$clk_tck" \
		'BEGIN { if (a == "-" || b == "-" || n + 0 == 0) print "-"; else printf "%.1f", (b - a) * 1e6 / hz / n }'
}

declare -A cn plain
idle_rss=-
params=$(printf '{"source":"bench","query":"%s","parameters":[@RAND@]}' "$query")
for c in $clients_list; do
	cfg=$work/connector-$c.yaml
	write_config "$cfg" "$c" bench CN_TEST_MYSQL_DSN
	bench_start_daemon "$cfg" "$work/connector-$c.log"
	if [ "$idle_rss" = - ]; then
		sleep "$idle"
		idle_rss=$(bench_rss "$daemon_pid")
		echo "connector idle RSS: $idle_rss KiB ($idle s after start, pool.size $c)"
	fi
	t0=$(server_ticks)
	out=$("$loadgen" --url "127.0.0.1:$daemon_port" --clients "$c" --duration "$duration" \
		--warmup "$warmup" --pid "$daemon_pid" --label "connector" --tool run_query \
		--params "$params" --rand "1:$groups" --secret-env BENCH_SECRET) ||
		die "loadgen failed at $c clients"
	t1=$(server_ticks)
	cn[$c]=$(grep '^loadgen ' <<<"$out")
	n=$(($(kv "${cn[$c]}" requests) + $(kv "${cn[$c]}" warmup_requests)))
	cn[$c]="${cn[$c]} my_cpu_us_per_req=$(per_req_us "$t0" "$t1" "$n")"
	bench_stop_daemon "$daemon_pid" 60
	[ "$daemon_rc" = 0 ] || echo "connector exited $daemon_rc after SIGTERM (log: $work/connector-$c.log)"

	t0=$(server_ticks)
	out=$("$bench_dir/.bin/my_loop" loop 127.0.0.1 "$CN_TEST_MYSQL_PORT" connector_ro \
		env:CN_TEST_MYSQL_RO_PASSWORD connector_test "$plain_query" "$groups" "$c" "$duration") ||
		die "my_loop failed at $c clients"
	t1=$(server_ticks)
	plain[$c]="$out my_cpu_us_per_req=$(per_req_us "$t0" "$t1" "$(kv "$out" requests)")"
	echo "${cn[$c]}"
	echo "${plain[$c]}"
done

variants=$("$bench_dir/.bin/my_loop" variants 127.0.0.1 "$CN_TEST_MYSQL_PORT" connector_ro \
	env:CN_TEST_MYSQL_RO_PASSWORD connector_test "$plain_query" "$groups" \
	"${BENCH_VARIANTS_N:-3000}" "$server_pid") || die "my_loop variants failed"

# ---- 2. introspection of a large schema ----------------------------------------------

echo "creating $ntables tables x 20 columns in database bench_schema ..." >&2
python3 - "$ntables" >"$work/schema.sql" <<'PY'
import sys
n = int(sys.argv[1])
types = ["INT", "BIGINT", "TEXT", "VARCHAR(64)", "DECIMAL(12,2)", "DATETIME", "DATE",
         "BOOLEAN", "JSON", "CHAR(36)"]
print("SET foreign_key_checks = 0;")
for i in range(1, n + 1):
    cols = ["id BIGINT PRIMARY KEY"]
    for j in range(2, 21):
        if j == 2 and i > 1 and i % 3 == 0:
            cols.append("parent_id BIGINT, FOREIGN KEY (parent_id) REFERENCES t%04d (id)" % (i - 1))
        elif j == 3 and i > 10 and i % 5 == 0:
            cols.append("ref_id BIGINT, FOREIGN KEY (ref_id) REFERENCES t%04d (id)" % (i - 10))
        else:
            comment = " COMMENT 'Column %d of t%04d'" % (j, i) if j % 4 == 0 else ""
            cols.append("c%d %s%s%s" % (j, types[(i + j) % 10], " NOT NULL" if j % 4 == 0 else "", comment))
    if i % 2 == 0:
        cols.append("KEY (c5)")
    print("CREATE TABLE t%04d (%s) COMMENT 'Generated table %d of %d';" % (i, ", ".join(cols), i, n))
PY
admin -e "CREATE DATABASE bench_schema"
admin bench_schema <"$work/schema.sql"
admin -e "GRANT SELECT ON bench_schema.* TO 'connector_ro'@'%'"
BENCH_MY_SCHEMA_DSN=${CN_TEST_MYSQL_DSN%/connector_test}/bench_schema
export BENCH_MY_SCHEMA_DSN
tab_n=$(admin -N -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bench_schema'")
fk_n=$(admin -N -e "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = 'bench_schema'")
echo "bench_schema: $tab_n tables, $fk_n foreign keys"

out_file=$work/dump.out
dump_ms=$(bench_best_of_3 mariadb-dump --no-defaults -h 127.0.0.1 -P "$CN_TEST_MYSQL_PORT" -u connector_ro \
	-p"$CN_TEST_MYSQL_RO_PASSWORD" --no-data --skip-lock-tables bench_schema) || die "mariadb-dump failed"
dump_bytes=$(stat -c %s "$out_file")
write_config "$work/introspect.yaml" 1 schema BENCH_MY_SCHEMA_DSN
out_file=$work/introspect.out
intro_ms=$(bench_best_of_3 "$bin" introspect --config "$work/introspect.yaml" schema) || intro_ms=failed
intro_bytes=$(stat -c %s "$out_file" 2>/dev/null || echo -)

# ---- report ------------------------------------------------------------------------------

echo
echo "point query, 20 rows: SELECT * FROM bench_items WHERE group_id = \$1 (random group of $groups)"
printf '%7s | %9s %7s %7s | %9s %7s %7s | %6s %6s | %8s | %8s %8s | %6s\n' clients \
	'cn req/s' 'cn p50' 'cn p99' 'C req/s' 'C p50' 'C p99' 'rps' 'p50' 'cn CPU' \
	'DB cn' 'DB C' errors
printf '%7s | %9s %7s %7s | %9s %7s %7s | %6s %6s | %8s | %8s %8s | %6s\n' '' '' ms ms \
	'' ms ms ratio ratio 'us/req' 'us/req' 'us/req' 'cn/C'
for c in $clients_list; do
	l=${cn[$c]}
	g=${plain[$c]}
	printf '%7s | %9s %7s %7s | %9s %7s %7s | %6s %6s | %8s | %8s %8s | %6s\n' "$c" \
		"$(kv "$l" rps)" "$(ms "$(kv "$l" p50_us)")" "$(ms "$(kv "$l" p99_us)")" \
		"$(kv "$g" rps)" "$(ms "$(kv "$g" p50_us)")" "$(ms "$(kv "$g" p99_us)")" \
		"$(ratio "$(kv "$l" rps)" "$(kv "$g" rps)")" "$(ratio "$(kv "$l" p50_us)" "$(kv "$g" p50_us)")" \
		"$(kv "$l" srv_cpu_us_per_req)" "$(kv "$l" my_cpu_us_per_req)" "$(kv "$g" my_cpu_us_per_req)" \
		"$(kv "$l" errors)/$(kv "$g" errors)"
done
echo "(C: bench/.bin/my_loop, the query prepared once per connection; ratios are connector / C."
echo " cn CPU: the connector's CPU per request; DB cn / DB C: mariadbd's CPU per query under each)"
last_c=${clients_list##* }
echo "connector RSS: idle $idle_rss KiB; at $last_c clients $(kv "${cn[$last_c]}" srv_rss_kb) KiB" \
	"(peak $(kv "${cn[$last_c]}" srv_hwm_kb) KiB)"
echo
echo "one connection, ${BENCH_VARIANTS_N:-3000} queries per variant and round (my_loop variants):"
printf '  %-8s %5s | %9s %9s %9s\n' variant round 'wall us' 'client us' 'server us'
while read -r line; do
	printf '  %-8s %5s | %9s %9s %9s\n' "$(kv "$line" variant)" "$(kv "$line" round)" \
		"$(kv "$line" wall_us)" "$(kv "$line" client_cpu_us)" "$(kv "$line" server_cpu_us)"
done <<<"$variants"
echo "  (bare: prepared once, executed again; direct: prepare+execute in one round trip; driver:"
echo "   direct with the driver's SET STATEMENT ... FOR; txn: START TRANSACTION READ ONLY, direct,"
echo "   ROLLBACK; reset: driver, then COM_RESET_CONNECTION and the session settings)"
echo
echo "introspection of $tab_n tables x 20 columns ($fk_n foreign keys), best of 3:"
echo "  mariadb-dump --no-data:          $dump_ms ms ($dump_bytes bytes)"
echo "  interactor-connector introspect: $intro_ms ms ($intro_bytes bytes)"
echo "  ratio introspect / dump:         $(ratio "$intro_ms" "$dump_ms")"
echo "summary key=value: idle_rss_kb=$idle_rss introspect_ms=$intro_ms dump_ms=$dump_ms" \
	"rps_ratio_${last_c}=$(ratio "$(kv "${cn[$last_c]}" rps)" "$(kv "${plain[$last_c]}" rps)")" \
	"cpu_us_per_req_${last_c}=$(kv "${cn[$last_c]}" srv_cpu_us_per_req)"
