# tests/support/lib.sh - what the scripts that start throwaway servers share (sourced).
# shellcheck shell=bash

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free TCP port on 127.0.0.1 (another process may take it before the server does:
# callers retry with a new one when the server does not start).
pick_port() {
	local p i
	for i in $(seq 1 50); do
		p=$((20000 + RANDOM % 40000))
		if port_free "$p"; then echo "$p"; return; fi
	done
	die "no free TCP port found"
}

random_secret() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
