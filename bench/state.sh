#!/usr/bin/env bash
# bench/state.sh - what the execution store costs a callback: the SQLite state file against
# the shared PostgreSQL store (state.backend: postgres), in-process with bench/state_loop.c
# (claim + finish of a 700-byte answer under fresh execution_ids, then replays), with 1 and
# 4 threads. The PostgreSQL is a throwaway one of tests/support/pg.sh on loopback (fsync off:
# the figures are the store's round trips and CPU, not a disk's).
#   BENCH_STATE_N   executions per run (default 20000)
# Prints one line per backend, phase and thread count (see bench/state_loop.c).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
n=${BENCH_STATE_N:-20000}

command -v psql >/dev/null || die "psql is not installed"
bench_build_connector "$build_dir"
mkdir -p "$bench_dir/.bin"
# shellcheck disable=SC2046 # pkg-config prints a list of flags
"${CC:-cc}" -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -I"$repo/src" -I"$repo/drivers/include" \
	$(pkg-config --cflags libpq) -o "$bench_dir/.bin/state_loop" "$bench_dir/state_loop.c" \
	"$build_dir/libcn_core.a" \
	$(pkg-config --libs libmicrohttpd libcjson yaml-0.1 sqlite3 libcrypto libpq gnutls libcurl) -lpthread -ldl -lm ||
	die "cannot build bench/state_loop.c"
bench_workdir
bench_start_pg
psql -X -q -v ON_ERROR_STOP=1 -d "$CN_TEST_PG_SUPER_DSN" -c "CREATE DATABASE bench_state" >/dev/null
dsn="$CN_TEST_PG_SUPER_DSN dbname=bench_state"
echo "cpus: $(nproc); executions per run: $n" >&2
for threads in 1 4; do
	"$bench_dir/.bin/state_loop" sqlite "$work" "$n" "$threads"
	rm -f "$work"/state_loop.db*
	"$bench_dir/.bin/state_loop" postgres "$dsn" "$n" "$threads"
done
