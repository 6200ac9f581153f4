#!/usr/bin/env bash
# bench/opscost.sh - what /metrics and the audit log cost the request path, in one run.
#
# Builds the connector (build-bench/) and the bench tools, starts a throwaway PostgreSQL
# (tests/support/pg.sh, as bench/pg.sh does) with a table of 20-row groups, and starts six
# daemons side by side, each with three sources (the SQLite demo, that PostgreSQL table, a
# second SQLite source that takes no load) and its own state file:
#   base         metrics.enabled false, audit.enabled false
#   metrics      metrics on, nobody scrapes
#   scrape5s     metrics on, GET /metrics every 5 s (Prometheus' default is every 15 s)
#   scrape100ms  metrics on, GET /metrics every 0.1 s (50 times the 5 s rate: to make it visible)
#   audit        audit on (metrics off)
#   both         metrics and audit on, a scrape every 5 s
# Then BENCH_ROUNDS (6) rounds: in each, every daemon in turn (each round starting at another)
# gets run_query on the SQLite source, then on the PostgreSQL one, at BENCH_CLIENTS (4) clients
# for BENCH_DURATION (4) s after BENCH_WARMUP (0.5) s. loadgen reports the daemon's CPU per
# request (all its threads: the audit writer and the scrapes included) and requests/s. The
# machine is shared and its load changes by the minute, so the runs are short and alternate,
# and each configuration is compared with the base run of the same round: the table shows the
# best of the rounds (lowest CPU, highest rate) and the median of the per-round ratios.
# Last, the scrape itself: GET /metrics in a closed loop on the `both` daemon, which has served
# both sources and some guard rejections (CPU per scrape, bytes per scrape, samples). First of
# all, bench/opscost_loop.c prices the same work in-process, where other tenants' load does
# not blur microseconds: a callback's store calls with and without its audit record, and the
# metrics calls with the registry off and on.
#
# Prints the raw loadgen lines, the table, and a summary line of key=value pairs.
# Exit 0 when it ran (whatever the figures), 1 when it could not.
#
# Environment: BENCH_DURATION (4), BENCH_WARMUP (0.5), BENCH_CLIENTS (4), BENCH_ROUNDS (6),
# BENCH_PG_GROUPS (1000), BENCH_LOG_LEVEL (info), BENCH_CONFIGS (the six above, base first),
# and those of bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

duration=${BENCH_DURATION:-4}
warmup=${BENCH_WARMUP:-0.5}
clients=${BENCH_CLIENTS:-4}
rounds=${BENCH_ROUNDS:-6}
groups=${BENCH_PG_GROUPS:-1000}
log_level=${BENCH_LOG_LEVEL:-info}
# shellcheck disable=SC2206 # a list of words on purpose
configs=(${BENCH_CONFIGS:-base metrics scrape5s scrape100ms audit both})
[ "${configs[0]}" = base ] || die "BENCH_CONFIGS must start with base"
sources=(sqlite pg)

for tool in psql python3 curl; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
bench_build_connector "$build_dir"
bench_build_tools
demo_db=$build_dir/demo.db
driver_dir=$build_dir/drivers
[ -f "$demo_db" ] || die "$demo_db is missing (the build makes it from conf/demo.sql with sqlite3)"
[ -f "$driver_dir/postgres.so" ] || die "$driver_dir/postgres.so is not built (libpq-dev, libpg-query-dev)"
# bench/opscost_loop.c against the library the connector was built from
# shellcheck disable=SC2046 # pkg-config prints a list of flags (every library cn_core links)
"${CC:-cc}" -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -I"$repo/src" -I"$repo/drivers/include" \
	-o "$bench_dir/.bin/opscost_loop" "$bench_dir/opscost_loop.c" "$build_dir/libcn_core.a" \
	$(pkg-config --libs libmicrohttpd libcjson yaml-0.1 sqlite3 libcrypto gnutls libcurl libpq) -lpthread -ldl -lm ||
	die "cannot build bench/opscost_loop.c"
bench_workdir

bench_start_pg
rows=$((groups * 20))
PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -d "$CN_TEST_PG_SUPER_DSN" <<SQL
DROP TABLE IF EXISTS bench_items;
CREATE TABLE bench_items (id bigint PRIMARY KEY, group_id integer NOT NULL, name text NOT NULL,
	price numeric(10,2) NOT NULL, in_stock boolean NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO bench_items SELECT g, (g % $groups) + 1, 'item ' || g, (g % 10000) / 100.0, g % 7 <> 0,
	timestamptz '2024-01-01' + g * interval '1 minute' FROM generate_series(0, $rows - 1) AS g;
CREATE INDEX ON bench_items (group_id);
GRANT SELECT ON bench_items TO connector_ro;
VACUUM ANALYZE bench_items;
SQL

BENCH_SECRET=$(bench_secret)
export BENCH_SECRET
export BENCH_PG_DSN=$CN_TEST_PG_DSN
write_config() { # FILE METRICS AUDIT STATE
	cat >"$1" <<-YAML
		server: { listen: "127.0.0.1:8080", max_connections: 64 }
		auth: { callback_secrets: ["\${BENCH_SECRET}"], timestamp_tolerance: 300 }
		state: { path: "$4" }
		drivers: { dir: "$driver_dir" }
		log: { level: $log_level, format: json }
		metrics: { enabled: $2 }
		audit: { enabled: $3 }
		refresh: "off"
		sources:
		  - name: demo
		    driver: sqlite
		    dsn: "$demo_db"
		    mappings: "$repo/conf/mappings/demo.yaml"
		    pool: { size: $clients }
		  - name: bench
		    driver: postgres
		    dsn: "\${BENCH_PG_DSN}"
		    pool: { size: $clients }
		  - name: archive
		    driver: sqlite
		    dsn: "$demo_db"
	YAML
}
metrics_of() { case $1 in base | audit) echo false ;; *) echo true ;; esac; }
audit_of() { case $1 in audit | both) echo true ;; *) echo false ;; esac; }
interval_of() { case $1 in scrape5s | both) echo 5 ;; scrape100ms) echo 0.1 ;; *) echo 0 ;; esac; }

# sqlite.sh's point query and pg.sh's
# shellcheck disable=SC2016 # $1 is the SQL placeholder
params_sqlite='{"source":"demo","query":"SELECT * FROM orders WHERE customer_id = $1","parameters":[3]}'
# shellcheck disable=SC2016
params_pg='{"source":"bench","query":"SELECT * FROM bench_items WHERE group_id = $1","parameters":[@RAND@]}'

# A scraper with one keep-alive connection, every INTERVAL s, until SIGTERM; it writes how many
# scrapes it made and their bytes to FILE. usage: scraper PORT INTERVAL FILE &
scraper() {
	exec python3 - "$@" <<-'PY'
		import http.client, signal, sys, time
		port, interval, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
		n = nbytes = 0
		def done(*_):
		    with open(out, "w") as f:
		        f.write("scrapes=%d scrape_bytes=%d\n" % (n, nbytes))
		    sys.exit(0)
		signal.signal(signal.SIGTERM, done)
		c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
		next_at = time.monotonic()
		while True:
		    c.request("GET", "/metrics")
		    r = c.getresponse()
		    body = r.read()
		    if r.status != 200:
		        sys.exit("GET /metrics: %d" % r.status)
		    n += 1
		    nbytes += len(body)
		    next_at += interval
		    time.sleep(max(0.0, next_at - time.monotonic()))
	PY
}

echo "== bench/opscost.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $(uname -r)"
echo "   PostgreSQL $(psql -X -tA -d "$CN_TEST_PG_SUPER_DSN" -c 'SHOW server_version'); $clients clients," \
	"${duration} s per run (+${warmup} s warm-up), $rounds rounds, log level $log_level"

echo "in-process, one thread, ${BENCH_LOOP_N:-100000} calls per mode, best of 3 (bench/opscost_loop.c):" >&2
loop=$("$bench_dir/.bin/opscost_loop" "$work" "${BENCH_LOOP_N:-100000}") || die "opscost_loop failed"
echo "$loop" >&2

declare -A raw best_cpu best_rps pid_of port_of scraper_of
for cfg in "${configs[@]}"; do
	write_config "$work/$cfg.yaml" "$(metrics_of "$cfg")" "$(audit_of "$cfg")" "$work/state-$cfg.db"
	bench_start_daemon "$work/$cfg.yaml" "$work/connector-$cfg.log"
	pid_of[$cfg]=$daemon_pid
	port_of[$cfg]=$daemon_port
	interval=$(interval_of "$cfg")
	if [ "$interval" != 0 ]; then
		scraper "$daemon_port" "$interval" "$work/scrapes-$cfg" &
		scraper_of[$cfg]=$!
		bench_pids+=("$!")
	fi
done

run_one() { # CONFIG SOURCE ROUND
	local cfg=$1 src=$2 round=$3 params=$params_sqlite rand=() out cpu rps errors
	if [ "$src" = pg ]; then params=$params_pg rand=(--rand "1:$groups"); fi
	out=$("$loadgen" --url "127.0.0.1:${port_of[$cfg]}" --clients "$clients" --duration "$duration" \
		--warmup "$warmup" --pid "${pid_of[$cfg]}" --label "$cfg/$src/r$round" --tool run_query \
		--params "$params" "${rand[@]}" --secret-env BENCH_SECRET) || die "loadgen failed ($cfg, $src)"
	out=$(grep '^loadgen ' <<<"$out")
	cpu=$(kv "$out" srv_cpu_us_per_req) rps=$(kv "$out" rps) errors=$(kv "$out" errors)
	[ "$errors" = 0 ] || echo "WARNING: $errors errors in $cfg/$src round $round" >&2
	raw[$cfg,$src,$round]=$out
	if [ -z "${best_cpu[$cfg,$src]:-}" ] || awk -v a="$cpu" -v b="${best_cpu[$cfg,$src]}" 'BEGIN { exit !(a < b) }'; then
		best_cpu[$cfg,$src]=$cpu
	fi
	if [ -z "${best_rps[$cfg,$src]:-}" ] || awk -v a="$rps" -v b="${best_rps[$cfg,$src]}" 'BEGIN { exit !(a > b) }'; then
		best_rps[$cfg,$src]=$rps
	fi
	printf '  round %s %-12s %-6s %9s req/s %8s us CPU/req\n' "$round" "$cfg" "$src" "$rps" "$cpu" >&2
}

n=${#configs[@]}
for round in $(seq 1 "$rounds"); do
	for i in $(seq 0 $((n - 1))); do
		for src in "${sources[@]}"; do
			run_one "${configs[$(((i + round - 1) % n))]}" "$src" "$round"
		done
	done
done

# The median over the rounds of KEY(config) / KEY(base), for SOURCE. usage: median_ratio CFG SRC KEY
median_ratio() {
	local round
	for round in $(seq 1 "$rounds"); do
		ratio "$(kv "${raw[$1,$2,$round]}" "$3")" "$(kv "${raw[base,$2,$round]}" "$3")"
	done | sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
		else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ---- the scrape itself --------------------------------------------------------------------
# on the daemon with the most series: metrics and audit on, or else one with metrics on
scrape_cfg=
for cfg in both scrape5s metrics scrape100ms; do
	if [ -n "${pid_of[$cfg]:-}" ]; then scrape_cfg=$cfg; break; fi
done
scrape="scrape (no daemon with metrics on)" scrape_cpu=- scrape_bytes=- series=-
if [ -n "$scrape_cfg" ]; then
	port=${port_of[$scrape_cfg]}
	"$loadgen" --url "127.0.0.1:$port" --clients 1 --requests 50 --warmup 0 --tool run_query \
		--params '{"source":"demo","query":"DELETE FROM orders"}' --expect 400 --secret-env BENCH_SECRET \
		>/dev/null || die "loadgen failed (rejections)"
	series=$(curl -fs "http://127.0.0.1:$port/metrics" | grep -vc '^#')
	scrape=$("$loadgen" --url "127.0.0.1:$port" --clients 1 --duration 5 --warmup 1 \
		--pid "${pid_of[$scrape_cfg]}" --label "scrape/$scrape_cfg" --get /metrics | grep '^loadgen ') ||
		die "loadgen failed (/metrics)"
	scrape_cpu=$(kv "$scrape" srv_cpu_us_per_req)
	scrape_bytes=$(awk -v b="$(kv "$scrape" bytes_in)" -v n="$(kv "$scrape" requests)" \
		'BEGIN { if (n + 0 == 0) print "-"; else printf "%.0f", b / n }')
fi
for cfg in "${configs[@]}"; do
	if [ -n "${scraper_of[$cfg]:-}" ]; then
		kill -TERM "${scraper_of[$cfg]}" 2>/dev/null || true
		wait "${scraper_of[$cfg]}" 2>/dev/null || true
	fi
	bench_stop_daemon "${pid_of[$cfg]}" 60
	[ "$daemon_rc" = 0 ] || echo "WARNING: the connector exited $daemon_rc ($cfg)" >&2
done

# ---- report -------------------------------------------------------------------------------
echo
echo "raw figures:"
for round in $(seq 1 "$rounds"); do
	for cfg in "${configs[@]}"; do
		for src in "${sources[@]}"; do echo "${raw[$cfg,$src,$round]}"; done
	done
done
for cfg in "${configs[@]}"; do
	[ -z "${scraper_of[$cfg]:-}" ] || echo "scraper config=$cfg $(cat "$work/scrapes-$cfg" 2>/dev/null || echo scrapes=-)"
done
echo "$scrape"
echo "$loop"
echo
echo "run_query at $clients clients, $rounds rounds of ${duration} s; best: the lowest CPU and the highest"
echo "rate of the rounds, x: against base; median x: the median of the ratios to the same round's base"
printf '%-12s | %-44s | %-44s\n' '' 'sqlite' 'postgres'
printf '%-12s |' config
for src in "${sources[@]}"; do
	printf ' %8s %8s %5s %5s %6s %6s |' 'us CPU/r' 'req/s' 'CPU x' 'rps x' 'med Cx' 'med Rx'
done
echo
summary=
for cfg in "${configs[@]}"; do
	printf '%-12s |' "$cfg"
	for src in "${sources[@]}"; do
		c=${best_cpu[$cfg,$src]} r=${best_rps[$cfg,$src]}
		cx=$(ratio "$c" "${best_cpu[base,$src]}") rx=$(ratio "$r" "${best_rps[base,$src]}")
		mc=$(median_ratio "$cfg" "$src" srv_cpu_us_per_req) mr=$(median_ratio "$cfg" "$src" rps)
		printf ' %8s %8s %5s %5s %6s %6s |' "$c" "$r" "$cx" "$rx" "$mc" "$mr"
		summary="$summary ${cfg}_${src}_cpu_x=$cx ${cfg}_${src}_cpu_median_x=$mc"
	done
	echo
done
echo
echo "the scrape itself (${scrape_cfg:-none}), 3 sources, after traffic on two of them: $series samples, $scrape_bytes bytes," \
	"$scrape_cpu us CPU per scrape ($(kv "$scrape" rps) scrapes/s in a closed loop)"
for src in "${sources[@]}"; do
	echo "  so one scrape every 5 s at ${best_rps[base,$src]} req/s ($src) adds" \
		"$(awk -v c="$scrape_cpu" -v r="${best_rps[base,$src]}" \
			'BEGIN { if (c == "-" || r + 0 == 0) print "-"; else printf "%.4f", c / (5 * r) }') us CPU per request"
done
echo "in-process (opscost_loop): a callback's store work $(kv "$(grep 'mode=store ' <<<"$loop")" us_per_call) us" \
	"CPU; its audit record adds $(kv "$(tail -n 1 <<<"$loop")" audit_us_per_call) us (fingerprint, queue," \
	"the writer's INSERT); recording its metrics $(kv "$(tail -n 1 <<<"$loop")" metrics_us_per_call) us"
echo "summary key=value: $(tail -n 1 <<<"$loop" | cut -d' ' -f2-) scrape_cpu_us=$scrape_cpu scrape_bytes=$scrape_bytes scrape_samples=$series$summary"
