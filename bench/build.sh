#!/usr/bin/env bash
# Builds the benchmark tools into bench/.bin/ (gitignored):
#   loadgen      the signed-callback HTTP load generator (OpenSSL, pthreads)
#   sqlite_loop  the baseline: one SELECT in a tight loop through sqlite3 prepared statements
#   pg_wrapper   what the PostgreSQL driver's wrapper costs per query, client and server
#                (built only where libpq-dev is installed)
#   my_loop      the MySQL/MariaDB baseline (prepared statement in a loop, N threads) and what
#                the mysql driver's way of sending a query costs (built where libmariadb-dev is)
#   mongo_loop   the baseline of bench/mongodb.sh: a find in a closed loop through libmongoc
#                (built only where libmongoc-dev is installed)
# Usage: bench/build.sh            (CC and CFLAGS are honoured)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/.bin
mkdir -p "$out"
cc=${CC:-cc}
flags=(-std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2)
# shellcheck disable=SC2206 # CFLAGS is a list of words on purpose
extra=(${CFLAGS:-})
"$cc" "${flags[@]}" "${extra[@]}" -o "$out/loadgen" "$here/loadgen.c" -lcrypto -lpthread
"$cc" "${flags[@]}" "${extra[@]}" -o "$out/sqlite_loop" "$here/sqlite_loop.c" -lsqlite3
if pkg-config --exists libpq 2>/dev/null; then
	# shellcheck disable=SC2046 # pkg-config prints a list of flags
	"$cc" "${flags[@]}" "${extra[@]}" $(pkg-config --cflags libpq) -o "$out/pg_wrapper" \
		"$here/pg_wrapper.c" $(pkg-config --libs libpq)
fi
if pkg-config --exists libmariadb 2>/dev/null; then
	# shellcheck disable=SC2046 # pkg-config prints a list of flags
	"$cc" "${flags[@]}" "${extra[@]}" $(pkg-config --cflags libmariadb) -o "$out/my_loop" \
		"$here/my_loop.c" $(pkg-config --libs libmariadb) -lpthread
fi
if pkg-config --exists libmongoc-1.0 2>/dev/null; then
	# shellcheck disable=SC2046 # pkg-config prints a list of flags
	"$cc" "${flags[@]}" "${extra[@]}" $(pkg-config --cflags libmongoc-1.0) -o "$out/mongo_loop" \
		"$here/mongo_loop.c" $(pkg-config --libs libmongoc-1.0) -lpthread
fi
