#!/usr/bin/env bash
# bench/leakcheck.sh - memory leaks and memory growth over 1,000 mixed requests.
#
# Modes (BENCH_LEAK_MODES, default "rss valgrind asan"):
#   rss       the normal RelWithDebInfo build (build-bench/): idle RSS after start and after a
#             few idle seconds, then RSS after each of three rounds of the mix (growth check)
#   valgrind  the same binary under valgrind --leak-check=full (definite and indirect leaks
#             count as errors, --error-exitcode=99)
#   asan      an ASan+UBSan build (build-bench-asan/, -DCN_SANITIZE=ON) with LeakSanitizer on
# In each mode the daemon gets BENCH_LEAK_REQUESTS (1000) requests from bench/leakmix.py,
# 4 clients: run_query accepted / rejected by the guard / refused by the database / with
# invalid parameters, describe_schema, list_data_sources, replays, bad signatures, stale
# timestamps, missing headers, malformed JSON, an unknown tool, oversize bodies, /healthz;
# then SIGTERM, and the report: valgrind's or LeakSanitizer's summary and the exit status.
#
# Exit 0 when every mode ran, whatever it found (BENCH_STRICT=1: exit 3 when a mode found
# leaks or errors or did not exit 0); 1 when a mode could not run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

modes=${BENCH_LEAK_MODES:-rss valgrind asan}
nreq=${BENCH_LEAK_REQUESTS:-1000}
asan_dir=${BENCH_ASAN_BUILD_DIR:-$repo/build-bench-asan}

bench_build_connector "$build_dir"
case " $modes " in *" asan "*) bench_build_connector "$asan_dir" -DCN_SANITIZE=ON ;; esac
case " $modes " in *" valgrind "*) command -v valgrind >/dev/null || die "valgrind is not installed" ;; esac
demo_db=$build_dir/demo.db
[ -f "$demo_db" ] || die "$demo_db is missing"
bench_workdir

BENCH_SECRET=$(bench_secret)
export BENCH_SECRET

write_config() { # DIR
	bench_demo_config "$1/connector.yaml" "$1" "$demo_db"
}

mix() { # PORT RUN -> prints the leakmix lines
	python3 "$bench_dir/leakmix.py" --port "$1" --run "$2" --requests "$nreq" --workers 4 \
		--secret-env BENCH_SECRET || die "leakmix could not reach the connector"
}

declare -A summary
strict_fail=0

mode_rss() {
	local d=$work/rss
	mkdir -p "$d"
	write_config "$d"
	bench_start_daemon "$d/connector.yaml" "$d/connector.log"
	local pid=$daemon_pid port=$daemon_port r0 r1 rounds="" out
	r0=$(bench_rss "$pid")
	sleep 3
	r1=$(bench_rss "$pid")
	echo "rss: idle RSS ${r0} KiB after start, ${r1} KiB after 3 s"
	for run in 1 2 3; do
		out=$(mix "$port" "$run")
		# shellcheck disable=SC2001 # prefix every line
		sed 's/^/rss: /' <<<"$out"
		rounds="$rounds $(bench_rss "$pid")"
	done
	echo "rss: RSS after each round of $nreq requests (KiB):$rounds; peak $(bench_hwm "$pid") KiB"
	bench_stop_daemon "$pid" 60
	echo "rss: exit status after SIGTERM: $daemon_rc"
	rounds=${rounds# }
	summary[rss]="idle_rss_kb=$r1 rss_rounds_kb=${rounds// /,} exit=$daemon_rc"
	[ "$daemon_rc" = 0 ] || strict_fail=1
}

mode_valgrind() {
	local d=$work/valgrind
	mkdir -p "$d"
	write_config "$d"
	local vlog=$d/valgrind.log
	bench_start_daemon "$d/connector.yaml" "$d/connector.log" "$bin" \
		valgrind --leak-check=full --show-leak-kinds=definite,indirect \
		--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=30 \
		--log-file="$vlog"
	local pid=$daemon_pid port=$daemon_port out
	out=$(mix "$port" 11)
	# shellcheck disable=SC2001 # prefix every line
	sed 's/^/valgrind: /' <<<"$out"
	bench_stop_daemon "$pid" 300
	local rc=$daemon_rc
	local def ind pos err
	def=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\1 bytes in \2 blocks/p' "$vlog" | tail -n 1)
	ind=$(sed -n 's/.*indirectly lost: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\1 bytes in \2 blocks/p' "$vlog" | tail -n 1)
	pos=$(sed -n 's/.*possibly lost: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\1 bytes in \2 blocks/p' "$vlog" | tail -n 1)
	err=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors from \([0-9,]*\) contexts.*/\1 errors from \2 contexts/p' "$vlog" | tail -n 1)
	if grep -q 'no leaks are possible' "$vlog"; then def="0 bytes (no leaks possible)"; ind=$def; pos=$def; fi
	echo "valgrind: definitely lost: ${def:-?}; indirectly lost: ${ind:-?}; possibly lost: ${pos:-?}"
	echo "valgrind: ERROR SUMMARY: ${err:-?}; exit status $rc (99 = valgrind found errors)"
	if [ "$rc" != 0 ] || ! grep -q 'ERROR SUMMARY: 0 errors' "$vlog"; then
		strict_fail=1
		echo "valgrind: first reports from $vlog:"
		grep -v '^==[0-9]*== *$' "$vlog" | grep -A 14 -E 'definitely lost in|indirectly lost in|Invalid (read|write)|uninitialised|Mismatched|Syscall param' |
			head -n 80 | sed 's/^/  /'
	fi
	summary[valgrind]="definitely_lost=\"${def:-?}\" indirectly_lost=\"${ind:-?}\" errors=\"${err:-?}\" exit=$rc"
	if [ "${BENCH_KEEP:-0}" != 1 ] && [ "$rc" != 0 ]; then
		cp "$vlog" "$bench_dir/.bin/valgrind-last.log" 2>/dev/null &&
			echo "valgrind: log copied to bench/.bin/valgrind-last.log"
	fi
}

mode_asan() {
	local d=$work/asan
	mkdir -p "$d"
	write_config "$d"
	local alog=$d/connector.log
	bench_start_daemon "$d/connector.yaml" "$alog" "$asan_dir/interactor-connector" \
		env ASAN_OPTIONS=detect_leaks=1:exitcode=98:halt_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	local pid=$daemon_pid port=$daemon_port out
	out=$(mix "$port" 21)
	# shellcheck disable=SC2001 # prefix every line
	sed 's/^/asan: /' <<<"$out"
	bench_stop_daemon "$pid" 120
	local rc=$daemon_rc leaked errors ub
	leaked=$(sed -n 's/.*SUMMARY: AddressSanitizer: \([0-9]*\) byte(s) leaked in \([0-9]*\) allocation(s).*/\1 bytes in \2 allocations/p' "$alog" | tail -n 1)
	errors=$(grep -c 'ERROR: AddressSanitizer' "$alog" || true)
	ub=$(grep -c 'runtime error:' "$alog" || true)
	echo "asan: leaked: ${leaked:-0 bytes}; AddressSanitizer errors: $errors; UBSan runtime errors: $ub;" \
		"exit status $rc (98 = LeakSanitizer/ASan report)"
	if [ "$rc" != 0 ] || [ -n "$leaked" ] || [ "$errors" != 0 ] || [ "$ub" != 0 ]; then
		strict_fail=1
		echo "asan: first reports from the log:"
		grep -A 20 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$alog" | head -n 80 | sed 's/^/  /'
	fi
	summary[asan]="leaked=\"${leaked:-0 bytes}\" asan_errors=$errors ubsan_errors=$ub exit=$rc"
}

echo "== bench/leakcheck.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; modes: $modes;" \
	"$nreq requests per round"
for m in $modes; do
	case $m in
	rss) mode_rss ;;
	valgrind) mode_valgrind ;;
	asan) mode_asan ;;
	*) die "unknown mode '$m' (rss, valgrind, asan)" ;;
	esac
done
echo
for m in $modes; do echo "leakcheck mode=$m ${summary[$m]}"; done
if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$strict_fail" = 1 ]; then exit 3; fi
exit 0
