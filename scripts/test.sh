#!/usr/bin/env bash
# Command 2 of the README: install what is missing, build, and run every test
# through ctest, three times over:
#   build/       the normal build (unit, integration, end-to-end, packaging: the man page,
#                cmake --install, the systemd unit, the .deb, the Docker files)
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer on)
#   build-tsan/  ThreadSanitizer: the schema refresh swap and configuration generation tests
#   build-fuzz/  clang-14 libFuzzer targets, each a short run over its seeds
# Services the tests need (PostgreSQL, the MongoDB test server) are started in
# the background by tests/support/ and stopped when the tests end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

./scripts/install-deps.sh --test

step() { printf '\n=== %s ===\n' "$*"; }

# The servers the integration and end-to-end tests need, each started once for the whole run
# (side by side) and stopped on any exit: a throwaway PostgreSQL 15, a MariaDB 10.11 and the
# MongoDB wire-protocol test server.
step "services"
pg_dir=$(mktemp -u /tmp/cn-pg-env.XXXXXX)
my_dir=$(mktemp -u /tmp/cn-my-env.XXXXXX)
mongo_dir=$(mktemp -u /tmp/cn-mongo-env.XXXXXX)
cleanup() {
  tests/support/pg.sh stop "$pg_dir" >/dev/null 2>&1 || true
  tests/support/mariadb.sh stop "$my_dir" >/dev/null 2>&1 || true
  tests/support/mongo.sh stop "$mongo_dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
tests/support/mariadb.sh start "$my_dir" &
my_pid=$!
tests/support/mongo.sh start "$mongo_dir" &
mongo_pid=$!
tests/support/pg.sh start "$pg_dir"
wait "$my_pid" || { echo "test.sh: MariaDB did not start" >&2; exit 1; }
wait "$mongo_pid" || { echo "test.sh: the MongoDB test server did not start" >&2; exit 1; }
. "$pg_dir/pg.env"
. "$my_dir/mysql.env"
. "$mongo_dir/mongo.env"

step "build (RelWithDebInfo)"
# prefix /usr: the tests labelled package build the Debian package from this tree
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCN_TESTS=ON -DCN_DRIVER_POSTGRES=ON \
  -DCN_DRIVER_MYSQL=ON -DCN_DRIVER_MONGODB=ON -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
cmake --build build -j"$jobs"
step "tests"
ctest --test-dir build --output-on-failure -j"$jobs"

step "build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCN_SANITIZE=ON -DCN_TESTS=ON \
  -DCN_DRIVER_POSTGRES=ON -DCN_DRIVER_MYSQL=ON -DCN_DRIVER_MONGODB=ON >/dev/null
cmake --build build-asan -j"$jobs"
step "tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

# The refresh swap test again, under ThreadSanitizer: a schema refreshed over and over while
# requests read it. Only that test and the SQLite driver are built (about a minute).
step "build (ThreadSanitizer, the refresh swap test)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCN_TSAN=ON -DCN_TESTS=ON -DCN_DRIVER_POSTGRES=OFF >/dev/null
cmake --build build-tsan -j"$jobs" --target test_refresh_swap test_runtime cn_driver_sqlite demo_db
step "refresh swap and configuration generations under ThreadSanitizer"
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build-tsan/tests/test_refresh_swap
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build-tsan/tests/test_runtime

if command -v clang-14 >/dev/null; then
  step "build (libFuzzer, clang-14)"
  CC=clang-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCN_TESTS=ON -DCN_FUZZ=ON \
    -DCN_DRIVER_MONGODB=ON >/dev/null
  cmake --build build-fuzz -j"$jobs"
  step "fuzz smoke runs"
  ctest --test-dir build-fuzz --output-on-failure -L fuzz
fi
step "all tests passed"
