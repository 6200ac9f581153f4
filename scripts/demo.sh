#!/usr/bin/env bash
# Command 1 of the README: build the connector, start it on the bundled SQLite
# demo with a generated callback secret, and send it signed tool callbacks
# (describe_schema, the curated tool db_top_customers of conf/demo.yaml, and
# run_query) the way Interactor does.
#
# The connector is left running in the background (its pid, log and secret are
# in .demo/); run `./scripts/demo.sh stop` to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
state=$root/.demo
port=${DEMO_PORT:-8080}
bin=$root/build/interactor-connector

stop_demo() {
  if [ -f "$state/connector.pid" ]; then
    pid=$(cat "$state/connector.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "demo: stopped the connector (pid $pid)"
    fi
    rm -f "$state/connector.pid"
  fi
}

if [ "${1:-}" = "stop" ]; then stop_demo; exit 0; fi

./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCN_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

mkdir -p "$state"
chmod 700 "$state"
if [ ! -f conf/demo.db ] || [ conf/demo.sql -nt conf/demo.db ]; then
  rm -f conf/demo.db
  sqlite3 -bail conf/demo.db < conf/demo.sql
fi
if [ -z "${INTERACTOR_CALLBACK_SECRET:-}" ]; then
  [ -s "$state/secret" ] || (umask 077; openssl rand -hex 32 > "$state/secret")
  INTERACTOR_CALLBACK_SECRET=$(cat "$state/secret")
fi
export INTERACTOR_CALLBACK_SECRET

stop_demo
"$bin" check-config --quiet --config conf/demo.yaml
nohup "$bin" serve --config conf/demo.yaml --listen "127.0.0.1:$port" >"$state/connector.log" 2>&1 &
echo $! > "$state/connector.pid"
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$(cat "$state/connector.pid")" 2>/dev/null || { cat "$state/connector.log"; exit 1; }
  sleep 0.1
done

# One signed callback, as Interactor sends it: HMAC-SHA256 of the raw body.
call() {
  local tool=$1 params=$2 exec_id="exec_demo_$(date +%s%N)"
  local body="{\"tool_name\":\"$tool\",\"parameters\":$params,\"execution_id\":\"$exec_id\",\"room_id\":\"room_demo\",\"assistant_id\":\"asst_demo\",\"timestamp\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}"
  echo
  echo "\$ POST /v1/tools/$tool  $params"
  printf '%s' "$body" | "$bin" sign > "$state/headers"
  curl -sS -X POST "http://127.0.0.1:$port/v1/tools/$tool" -H 'Content-Type: application/json' \
    -H @"$state/headers" --data-binary "$body" -w '\n[HTTP %{http_code}]\n' | python3 -c '
import json, sys
text = sys.stdin.read()
body, _, status = text.rpartition("\n[")
try:
    print(json.dumps(json.loads(body), indent=2)[:6000])
except ValueError:
    print(body)
print("[" + status.strip())'
}

call describe_schema '{"source":"demo","tables":["customers","orders"]}'
call db_top_customers '{"country":"DE","limit":3}'
call run_query '{"source":"demo","query":"SELECT c.name, c.country, count(o.id) AS orders, round(sum(t.total), 2) AS revenue FROM customers c JOIN orders o ON o.customer_id = c.id JOIN order_totals t ON t.order_id = o.id WHERE c.country = $1 GROUP BY c.id ORDER BY revenue DESC LIMIT $2","parameters":["DE",5]}'

cat <<TXT

The connector is still running on http://127.0.0.1:$port (pid $(cat "$state/connector.pid")).
  log:     $state/connector.log
  secret:  $state/secret (export INTERACTOR_CALLBACK_SECRET=\$(cat .demo/secret) to sign your own calls)
  stop:    ./scripts/demo.sh stop
TXT
