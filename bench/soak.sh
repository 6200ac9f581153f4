#!/usr/bin/env bash
# bench/soak.sh - the connector's RSS over a long steady load of point queries mixed with
# queries cut by max_rows, on every driver. Memory that a long-running daemon keeps taking
# shows here as a slope; the verdict is "flat" when RSS grew less than 2 MiB from the end of
# the warm-up to the end of the run (BENCH_SOAK_LIMIT_KB).
#
# For each driver in BENCH_SOAK_DRIVERS ("sqlite postgres mysql mongodb"):
#   1. its server, started by tests/support/ like the tests do (pg.sh, mariadb.sh, mongo.sh;
#      SQLite needs none), stopped and removed on exit;
#   2. soak_rows: BENCH_SOAK_ROWS (100000) rows of an id and a 192-character payload
#      (BENCH_SOAK_MONGO_DOCS, 2000, documents on the MongoDB test server, a Python program
#      that reads every document of a find);
#   3. the connector with one source on it (pool.size BENCH_SOAK_POOL, 4; log.level info);
#   4. bench/soakmix.py for BENCH_SOAK_WARMUP (30) + BENCH_SOAK_SECONDS (180) seconds at
#      BENCH_SOAK_RATE (100) requests/s from 16 keep-alive clients, half of them
#        SELECT * FROM soak_rows WHERE id = $1        a random id, one row
#      and half
#        SELECT * FROM soak_rows                      with max_rows 1..50: cut at the cap
#      (MongoDB: the same as find commands);
#   5. the daemon's VmRSS every BENCH_SOAK_SAMPLE (10) seconds.
# Prints the samples, then per driver: RSS at the end of the warm-up, at the last sample under
# load, the highest after the warm-up, the growth (last minus warm-up), the least-squares slope
# after the warm-up in KiB/min, the statuses, and the verdict. A final line per driver is for scripts: "soak driver=... ".
#
# BENCH_BUILD_DIR (build-bench) is the build under test: point it at a build of another commit
# to compare. Exit 0 when it ran, whatever the figures (BENCH_STRICT=1: exit 3 when a driver
# grew past the limit or answered other statuses than 200); 1 when it could not run.
# shellcheck disable=SC2317 # the prepare_* functions are called as "prepare_$drv"
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

drivers=${BENCH_SOAK_DRIVERS:-sqlite postgres mysql mongodb}
seconds=${BENCH_SOAK_SECONDS:-180}
warmup=${BENCH_SOAK_WARMUP:-30}
rate=${BENCH_SOAK_RATE:-100}
sample=${BENCH_SOAK_SAMPLE:-10}
nrows=${BENCH_SOAK_ROWS:-100000}
ndocs=${BENCH_SOAK_MONGO_DOCS:-2000}
pool=${BENCH_SOAK_POOL:-4}
limit_kb=${BENCH_SOAK_LIMIT_KB:-2048}
support=$repo/tests/support

for tool in python3 curl sqlite3; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
bench_build_connector "$build_dir"
driver_dir=${BENCH_DRIVER_DIR:-$build_dir/drivers}
driver_dir=$(cd "$driver_dir" && pwd)
bench_workdir

# Servers this script started, stopped on exit.
started=()
stop_servers() {
	local s
	for s in "${started[@]}"; do
		bash "$support/${s%%:*}" stop "${s#*:}" >/dev/null 2>&1 || true
	done
}
bench_cleanup_hook=stop_servers

BENCH_SECRET=$(bench_secret)
export BENCH_SECRET

# ---- per driver: server, data, source block and the two queries ------------------------

# Each prepare_* sets src_block (the source's YAML, indented for sources:) and writes
# $work/<driver>.spec.json for soakmix.py.
spec() { # DRIVER POINT-QUERY-JSON CAPPED-QUERY-JSON IDS
	cat >"$work/$1.spec.json" <<-JSON
		{"source": "soak", "capped_share": 0.5,
		 "point": {"query": $2, "ids": [1, $4]},
		 "capped": {"query": $3, "max_rows": [1, 50]}}
	JSON
}
sql_spec() { # DRIVER
	# shellcheck disable=SC2016 # $1 is the connector's placeholder
	spec "$1" '"SELECT * FROM soak_rows WHERE id = $1"' '"SELECT * FROM soak_rows"' "$nrows"
}

prepare_sqlite() {
	local db=$work/soak.db
	sqlite3 -bail "$db" <<-SQL
		CREATE TABLE soak_rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);
		WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < $nrows)
		INSERT INTO soak_rows SELECT x, hex(randomblob(96)) FROM g;
	SQL
	chmod 444 "$db"
	src_block="    driver: sqlite
    dsn: \"$db\""
	sql_spec sqlite
}

prepare_postgres() {
	command -v psql >/dev/null || die "psql is not installed (apt-get install postgresql-15)"
	[ -f "$driver_dir/postgres.so" ] || die "$driver_dir/postgres.so is not built"
	local d=$work/pg
	bash "$support/pg.sh" start "$d" >/dev/null || die "tests/support/pg.sh start failed"
	started+=("pg.sh:$d")
	# shellcheck disable=SC1091
	. "$d/pg.env"
	PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 \
		-d "$CN_TEST_PG_SUPER_DSN" <<-SQL || die "loading soak_rows into PostgreSQL failed"
		CREATE TABLE public.soak_rows AS
		  SELECT g AS id, repeat(md5(g::text), 6) AS payload FROM generate_series(1, $nrows) g;
		ALTER TABLE public.soak_rows ADD PRIMARY KEY (id);
		GRANT SELECT ON public.soak_rows TO connector_ro;
		ANALYZE public.soak_rows;
	SQL
	src_block="    driver: postgres
    dsn: \"\${CN_TEST_PG_DSN}\""
	sql_spec postgres
}

prepare_mysql() {
	command -v mariadb >/dev/null || die "mariadb is not installed (apt-get install mariadb-client)"
	[ -f "$driver_dir/mysql.so" ] || die "$driver_dir/mysql.so is not built"
	local d=$work/my
	bash "$support/mariadb.sh" start "$d" >/dev/null || die "tests/support/mariadb.sh start failed"
	started+=("mariadb.sh:$d")
	# shellcheck disable=SC1091
	. "$d/mysql.env"
	mariadb --no-defaults -h 127.0.0.1 -P "$CN_TEST_MYSQL_PORT" -u connector_admin \
		-p"$CN_TEST_MYSQL_ADMIN_PASSWORD" connector_test >/dev/null <<-SQL || die "loading soak_rows into MariaDB failed"
		CREATE TABLE soak_rows (id BIGINT PRIMARY KEY, payload VARCHAR(200) NOT NULL);
		INSERT INTO soak_rows SELECT seq, REPEAT(MD5(seq), 6) FROM seq_1_to_$nrows;
		ANALYZE TABLE soak_rows;
	SQL
	src_block="    driver: mysql
    dsn: \"\${CN_TEST_MYSQL_DSN}\""
	sql_spec mysql
}

prepare_mongodb() {
	/usr/bin/python3 -c 'import pymongo, mongomock' 2>/dev/null ||
		die "the MongoDB test server needs python3-pymongo and python3-mongomock"
	[ -f "$driver_dir/mongodb.so" ] || die "$driver_dir/mongodb.so is not built"
	local d=$work/mongo
	bash "$support/mongo.sh" start "$d" >/dev/null || die "tests/support/mongo.sh start failed"
	started+=("mongo.sh:$d")
	# shellcheck disable=SC1091
	. "$d/mongo.env"
	/usr/bin/python3 - "$CN_TEST_MONGO_URI" "$ndocs" <<-'PY' || die "loading soak_rows into the MongoDB test server failed"
		import hashlib, sys
		import pymongo
		uri, n = sys.argv[1], int(sys.argv[2])
		coll = pymongo.MongoClient(uri).get_default_database()["soak_rows"]
		coll.drop()
		coll.insert_many([{"_id": i, "payload": hashlib.md5(str(i).encode()).hexdigest() * 6}
		                  for i in range(1, n + 1)])
	PY
	src_block="    driver: mongodb
    dsn: \"\${CN_TEST_MONGO_URI}\"
    options: { sample_size: 100 }"
	# shellcheck disable=SC2016 # $param is the connector's placeholder
	spec mongodb '{"find": "soak_rows", "filter": {"_id": {"$param": 1}}}' \
		'{"find": "soak_rows"}' "$ndocs"
}

# ---- the soak ---------------------------------------------------------------------------

# Least squares over the samples after the warm-up: KiB per minute.
analyse() { # SAMPLES-FILE -> "warm end max growth slope"
	awk -v w="$warmup" '
		$1 >= w { if (!seen) { warm = $2; seen = 1 }
		          last = $2; if ($2 > max) max = $2
		          n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2 }
		END {
			slope = (n > 1 && n * sxx - sx * sx != 0) ? (n * sxy - sx * sy) / (n * sxx - sx * sx) * 60 : 0
			printf "%d %d %d %d %.1f\n", warm, last, max, last - warm, slope
		}' "$1"
}

declare -A result
strict_fail=0
echo "== bench/soak.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $(uname -r)"
echo "   $("$bin" version) from $build_dir;" \
	"drivers: $drivers; ${warmup}s warm-up + ${seconds}s at $rate requests/s, pool.size $pool," \
	"RSS every ${sample}s; flat means growth < $limit_kb KiB"
for drv in $drivers; do
	case $drv in
	sqlite | postgres | mysql | mongodb) ;;
	*) die "unknown driver '$drv' (sqlite, postgres, mysql, mongodb)" ;;
	esac
	echo
	echo "-- $drv: preparing" >&2
	"prepare_$drv"
	cfg=$work/$drv.yaml
	cat >"$cfg" <<-YAML
		server: { listen: "127.0.0.1:8080", max_connections: 64 }
		auth: { callback_secrets: ["\${BENCH_SECRET}"], timestamp_tolerance: 300 }
		state: { path: "$work/state-$drv.db" }
		drivers: { dir: "$driver_dir" }
		log: { level: info, format: json }
		sources:
		  - name: soak
		    pool: { size: $pool }
		    limits: { max_rows: 1000, max_result_bytes: 60000, timeout_ms: 10000 }
		$src_block
	YAML
	log=$work/$drv.log
	bench_start_daemon "$cfg" "$log"
	pid=$daemon_pid
	samples=$work/$drv.rss
	: >"$samples"
	python3 "$bench_dir/soakmix.py" --port "$daemon_port" --spec "$work/$drv.spec.json" \
		--rate "$rate" --duration "$((warmup + seconds))" --secret-env BENCH_SECRET \
		>"$work/$drv.mix" 2>&1 &
	mix_pid=$!
	t0=$(date +%s)
	echo "$drv: t_s rss_kb"
	while kill -0 "$mix_pid" 2>/dev/null; do
		t=$(($(date +%s) - t0))
		r=$(bench_rss "$pid")
		echo "$t $r" >>"$samples"
		echo "$drv: $t $r"
		for _ in $(seq 1 "$((sample * 10))"); do
			kill -0 "$mix_pid" 2>/dev/null || break
			sleep 0.1
		done
	done
	wait "$mix_pid" || die "soakmix failed on $drv: $(cat "$work/$drv.mix")"
	mix=$(grep '^soakmix ' "$work/$drv.mix" || echo "soakmix -")
	echo "$drv: $mix"
	hwm=$(bench_hwm "$pid")
	bench_stop_daemon "$pid" 60
	read -r warm end max growth slope < <(analyse "$samples")
	verdict=flat
	[ "$growth" -lt "$limit_kb" ] || verdict=GROWING
	others=$(tr ' ' '\n' <<<"$mix" | grep '^status_' | grep -v '^status_200=' | tr '\n' ' ' || true)
	if [ "$verdict" != flat ] || [ -n "$others" ] || [ "$daemon_rc" != 0 ]; then strict_fail=1; fi
	echo "$drv: RSS ${warm} KiB after the warm-up, ${end} KiB at the last sample under load" \
		"(highest $max, peak $hwm), growth $growth KiB, slope $slope KiB/min: $verdict;" \
		"exit status $daemon_rc"
	result[$drv]="soak driver=$drv rss_warm_kb=$warm rss_end_kb=$end rss_max_kb=$max growth_kb=$growth"
	result[$drv]+=" slope_kb_per_min=$slope verdict=$verdict exit=$daemon_rc $(cut -d' ' -f2- <<<"$mix")"
	stop_servers
	started=()
done
echo
for drv in $drivers; do echo "${result[$drv]}"; done
if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$strict_fail" = 1 ]; then exit 3; fi
exit 0
