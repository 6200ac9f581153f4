#!/usr/bin/env bash
# tests/support/fake_interactor.sh - the fake Interactor platform (fake_interactor.py) for the tests.
#
#   fake_interactor.sh start DIR   make a throwaway CA and a server certificate for 127.0.0.1 with
#                                  openssl, start the platform on a free port of 127.0.0.1 over TLS,
#                                  wait (bounded) until it answers, and write DIR/interactor.env
#   fake_interactor.sh stop DIR    stop it (by PID) and remove DIR
#
# DIR/interactor.env exports CN_TEST_INTERACTOR_URL (https://127.0.0.1:PORT/api/v1),
# CN_TEST_INTERACTOR_AUTH_URL, CN_TEST_INTERACTOR_CONTROL (https://127.0.0.1:PORT/_fake),
# CN_TEST_INTERACTOR_CA (the CA's PEM: the connector's interactor.ca_file),
# CN_TEST_INTERACTOR_CLIENT_ID, CN_TEST_INTERACTOR_CLIENT_SECRET (random per start),
# CN_TEST_INTERACTOR_PORT, CN_TEST_INTERACTOR_PID_FILE and CN_TEST_INTERACTOR_LOG.
# CN_TEST_INTERACTOR_TOKEN_TTL (seconds, default 900) sets how long its tokens live.
# The server is Python's standard library only, run with /usr/bin/python3
# (CN_TEST_INTERACTOR_PYTHON overrides). Never stops anything by process name.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
server=$here/fake_interactor.py
py=${CN_TEST_INTERACTOR_PYTHON:-/usr/bin/python3}
ttl=${CN_TEST_INTERACTOR_TOKEN_TTL:-900}

die() { echo "fake_interactor.sh: $*" >&2; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

alive() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st#Z}" = "$st" ]
}

make_certs() {
	local d=$1
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=interactor-connector test CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		>/dev/null 2>&1 || die "openssl could not make the test CA"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1 || die "openssl: server key"
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$d/server.ext"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
		-days 2 -extfile "$d/server.ext" -out "$d/server.pem" >/dev/null 2>&1 || die "openssl: server certificate"
	rm -f "$d/server.csr" "$d/ca.key" "$d/ca.srl"
}

start() {
	local dir=$1
	[ -x "$py" ] || die "$py not found"
	mkdir -p "$dir"
	chmod 700 "$dir"
	make_certs "$dir"
	local secret client_id=cn-test-client port pid i
	secret=$(openssl rand -hex 24)
	(umask 077; printf '%s\n' "$secret" >"$dir/client_secret")
	for i in $(seq 1 20); do
		port=$((20000 + RANDOM % 40000))
		port_free "$port" || continue
		"$py" "$server" --port "$port" --cert "$dir/server.pem" --key "$dir/server.key" \
			--client-id "$client_id" --client-secret-file "$dir/client_secret" --token-ttl "$ttl" \
			--pid-file "$dir/fake.pid" </dev/null >>"$dir/fake.log" 2>&1 &
		pid=$!
		echo "$pid" >"$dir/fake.pid"
		for ((t = 0; t < 100; t++)); do
			if ! alive "$pid"; then break; fi
			if "$py" - "$port" "$dir/ca.pem" <<'PY' 2>/dev/null; then
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=2)
c.request("GET", "/_fake/ping")
sys.exit(0 if c.getresponse().status == 200 else 1)
PY
				cat >"$dir/interactor.env" <<EOF
export CN_TEST_INTERACTOR_URL=https://127.0.0.1:$port/api/v1
export CN_TEST_INTERACTOR_AUTH_URL=https://127.0.0.1:$port/auth/api/v1/oauth/token
export CN_TEST_INTERACTOR_CONTROL=https://127.0.0.1:$port/_fake
export CN_TEST_INTERACTOR_CA=$dir/ca.pem
export CN_TEST_INTERACTOR_CLIENT_ID=$client_id
export CN_TEST_INTERACTOR_CLIENT_SECRET=$secret
export CN_TEST_INTERACTOR_PORT=$port
export CN_TEST_INTERACTOR_PID_FILE=$dir/fake.pid
export CN_TEST_INTERACTOR_LOG=$dir/fake.log
EOF
				return 0
			fi
			sleep 0.1
		done
		if alive "$pid"; then kill "$pid"; fi
		wait "$pid" 2>/dev/null || true
		grep -q 'cannot listen' "$dir/fake.log" || { tail -n 20 "$dir/fake.log" >&2; die "did not start"; }
	done
	die "no free port found"
}

stop() {
	local dir=$1 pid i
	[ -d "$dir" ] || return 0
	if [ -f "$dir/fake.pid" ]; then
		pid=$(cat "$dir/fake.pid")
		if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q fake_interactor.py; then
			kill "$pid"
			for i in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
			if alive "$pid"; then kill -9 "$pid"; fi
		fi
	fi
	rm -rf "$dir"
}

case "${1:-}" in
start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
*) die "usage: $0 start|stop DIR" ;;
esac
