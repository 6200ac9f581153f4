#!/usr/bin/env bash
# tests/support/mariadb.sh - a throwaway MariaDB server for the integration tests.
#
#   mariadb.sh start DIR     install a data directory under /tmp, start mariadbd on a free port,
#                            create the fixture database and users, load
#                            tests/fixtures/mysql/*.sql and write DIR/mysql.env (source it)
#   mariadb.sh stop DIR      stop the server (by its pid file) and remove it and DIR
#   mariadb.sh restart DIR   stop (if it runs) and start the server again on the same port
#   mariadb.sh pause DIR     stop the server, keep its data, port and DIR (a dead database)
#   mariadb.sh resume DIR    start a paused server again
#
# TLS: a CA and a certificate for localhost/127.0.0.1 made with openssl at each start; the
# user connector_tls (SELECT, same password as connector_ro) must connect over TLS.
# Users: connector_ro (SELECT on the fixture database, and on connector_other, a second
# database a source of connector_test must not reach) and
# connector_admin (ALL PRIVILEGES ON *.* WITH GRANT OPTION: as strong as root, so that the
# attack corpus shows the guard and the read-only session stop writes, not the grants).
# Runs as root (mariadbd --user=mysql) or as an ordinary user. Never stops anything by name.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fixtures=$(cd "$here/../fixtures/mysql" && pwd)
db=connector_test

die() { echo "mariadb.sh: $*" >&2; exit 1; }

need() { command -v "$1" >/dev/null || die "$1 not found: apt-get install mariadb-server mariadb-client"; }

# shellcheck source=lib.sh
. "$here/lib.sh"

user_opt() { if [ "$(id -u)" -eq 0 ]; then echo "--user=mysql"; fi; }

# mariadbd in the background; waits (bounded) until it answers, checking it is alive.
server_start() {
	# --no-defaults must come first, or the server reads /etc/mysql
	# shellcheck disable=SC2046
	/usr/sbin/mariadbd --no-defaults $(user_opt) --datadir="$MY_DATA" --socket="$MY_SOCK" \
		--pid-file="$MY_PID" --port="$MY_PORT" --bind-address=127.0.0.1 \
		--secure-file-priv="$MY_FILES" --log-error="$MY_LOG" --skip-name-resolve \
		--innodb-fast-shutdown=2 --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
		--innodb-flush-log-at-trx-commit=0 --sync-binlog=0 --skip-log-bin \
		--max-connections=200 --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
		--ssl-ca="$MY_BASE/tls/ca.pem" --ssl-cert="$MY_BASE/tls/server.pem" \
		--ssl-key="$MY_BASE/tls/server.key" \
		>/dev/null 2>&1 &
	local pid=$! i
	for i in $(seq 1 150); do
		if mariadb-admin --no-defaults --socket="$MY_SOCK" -uroot ping >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null || [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ]; then
			return 1
		fi
		sleep 0.1
	done
	kill "$pid" 2>/dev/null || true
	return 1
}

server_stop() {
	[ -f "$MY_PID" ] || return 0
	local pid i
	pid=$(cat "$MY_PID")
	kill "$pid" 2>/dev/null || { rm -f "$MY_PID"; return 0; }
	for i in $(seq 1 300); do
		if ! kill -0 "$pid" 2>/dev/null || [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ]; then
			rm -f "$MY_PID"
			return 0
		fi
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$MY_PID"
}

admin_sql() { mariadb --no-defaults --socket="$MY_SOCK" -uroot "$@"; }

load_env() {
	local dir=$1
	[ -f "$dir/mysql.env" ] || die "$dir/mysql.env not found: was 'mariadb.sh start $dir' run?"
	# shellcheck disable=SC1091
	. "$dir/mysql.env"
	MY_BASE=$CN_TEST_MYSQL_BASE_DIR
	MY_DATA=$MY_BASE/data
	MY_SOCK=$CN_TEST_MYSQL_SOCKET
	MY_PID=$MY_BASE/mariadbd.pid
	MY_LOG=$MY_BASE/mariadbd.log
	MY_FILES=$CN_TEST_MYSQL_FILES_DIR
	MY_PORT=$CN_TEST_MYSQL_PORT
}

start_failed() {
	server_stop || true
	[ -n "${MY_LOG:-}" ] && [ -f "$MY_LOG" ] && tail -n 20 "$MY_LOG" >&2
	rm -rf "$MY_BASE"
}

# A CA and a server certificate for localhost and 127.0.0.1 (TLS tests), and a second CA
# that did not sign it (verification must fail against it).
make_certs() {
	local d=$MY_BASE/tls
	mkdir -p "$d"
	(
		cd "$d"
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=connector test CA" \
			-keyout ca.key -out ca.pem
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another CA" \
			-keyout other-ca.key -out other-ca.pem
		openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
		printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
			-extfile san.ext -out server.pem
	) >"$MY_BASE/tls.log" 2>&1 || { cat "$MY_BASE/tls.log" >&2; die "openssl could not make the test certificates"; }
	chmod 644 "$d"/*.pem "$d/server.key"
}

cmd_start() {
	local dir=$1
	[ -x /usr/sbin/mariadbd ] || die "/usr/sbin/mariadbd not found: apt-get install mariadb-server"
	need mariadb-install-db
	need mariadb-admin
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[ -f "$dir/mysql.env" ] && die "$dir/mysql.env exists: stop that server first (mariadb.sh stop $dir)"
	MY_BASE=$(mktemp -d /tmp/cn-mysql.XXXXXX)
	chmod 711 "$MY_BASE"
	MY_DATA=$MY_BASE/data
	MY_SOCK=$MY_BASE/mysqld.sock
	MY_PID=$MY_BASE/mariadbd.pid
	MY_LOG=$MY_BASE/mariadbd.log
	MY_FILES=$MY_BASE/files
	trap start_failed EXIT
	mkdir -p "$MY_DATA" "$MY_FILES"
	make_certs
	if [ "$(id -u)" -eq 0 ]; then chown mysql: "$MY_BASE" "$MY_DATA" "$MY_FILES"; fi
	# shellcheck disable=SC2046
	mariadb-install-db --no-defaults $(user_opt) --auth-root-authentication-method=socket \
		--skip-test-db --datadir="$MY_DATA" >"$MY_BASE/install.log" 2>&1 ||
		{ cat "$MY_BASE/install.log" >&2; die "mariadb-install-db failed"; }

	local tries=0
	while :; do
		MY_PORT=$(pick_port)
		if server_start; then break; fi
		tries=$((tries + 1))
		[ "$tries" -lt 3 ] || die "the server did not start"
	done

	local ro_pw admin_pw
	ro_pw=$(random_secret)
	admin_pw=$(random_secret)
	admin_sql <<-SQL
		CREATE DATABASE $db CHARACTER SET utf8mb4;
		CREATE DATABASE connector_other CHARACTER SET utf8mb4;
		CREATE USER 'connector_ro'@'%' IDENTIFIED BY '$ro_pw';
		CREATE USER 'connector_ro'@'localhost' IDENTIFIED BY '$ro_pw';
		GRANT SELECT, SHOW VIEW, EXECUTE ON $db.* TO 'connector_ro'@'%';
		GRANT SELECT, SHOW VIEW, EXECUTE ON $db.* TO 'connector_ro'@'localhost';
		CREATE TABLE connector_other.notes (id INT PRIMARY KEY, body VARCHAR(100));
		INSERT INTO connector_other.notes VALUES (1, 'another database');
		GRANT SELECT ON connector_other.* TO 'connector_ro'@'%';
		GRANT SELECT ON connector_other.* TO 'connector_ro'@'localhost';
		CREATE USER 'connector_admin'@'%' IDENTIFIED BY '$admin_pw';
		CREATE USER 'connector_admin'@'localhost' IDENTIFIED BY '$admin_pw';
		GRANT ALL PRIVILEGES ON *.* TO 'connector_admin'@'%' WITH GRANT OPTION;
		GRANT ALL PRIVILEGES ON *.* TO 'connector_admin'@'localhost' WITH GRANT OPTION;
		CREATE USER 'connector_tls'@'%' IDENTIFIED BY '$ro_pw' REQUIRE SSL;
		GRANT SELECT ON $db.* TO 'connector_tls'@'%';
	SQL
	local f
	for f in "$fixtures"/*.sql; do
		admin_sql "$db" <"$f" >/dev/null || die "loading $f failed"
	done
	umask 077
	{
		echo "# written by tests/support/mariadb.sh; source it before the integration tests"
		printf 'export CN_TEST_MYSQL_DSN=%q\n' "mysql://connector_ro:$ro_pw@127.0.0.1:$MY_PORT/$db"
		printf 'export CN_TEST_MYSQL_ADMIN_DSN=%q\n' "mysql://connector_admin:$admin_pw@127.0.0.1:$MY_PORT/$db"
		printf 'export CN_TEST_MYSQL_SOCKET_DSN=%q\n' "mysql://connector_ro:$ro_pw@localhost/$db?socket=$MY_SOCK"
		printf 'export CN_TEST_MYSQL_HOST=127.0.0.1\n'
		printf 'export CN_TEST_MYSQL_PORT=%q\n' "$MY_PORT"
		printf 'export CN_TEST_MYSQL_DB=%q\n' "$db"
		printf 'export CN_TEST_MYSQL_RO_PASSWORD=%q\n' "$ro_pw"
		printf 'export CN_TEST_MYSQL_ADMIN_PASSWORD=%q\n' "$admin_pw"
		printf 'export CN_TEST_MYSQL_SOCKET=%q\n' "$MY_SOCK"
		printf 'export CN_TEST_MYSQL_FILES_DIR=%q\n' "$MY_FILES"
		printf 'export CN_TEST_MYSQL_BASE_DIR=%q\n' "$MY_BASE"
		printf 'export CN_TEST_MYSQL_DIR=%q\n' "$dir"
		printf 'export CN_TEST_MYSQL_SUPPORT=%q\n' "$here/mariadb.sh"
		printf 'export CN_TEST_MYSQL_CA=%q\n' "$MY_BASE/tls/ca.pem"
		printf 'export CN_TEST_MYSQL_OTHER_CA=%q\n' "$MY_BASE/tls/other-ca.pem"
	} >"$dir/mysql.env"
	trap - EXIT
	echo "mariadb.sh: MariaDB on 127.0.0.1:$MY_PORT (data $MY_DATA); env in $dir/mysql.env"
}

cmd_stop() {
	local dir=$1
	if [ ! -f "$dir/mysql.env" ]; then
		rm -rf "$dir"
		return 0
	fi
	load_env "$dir"
	server_stop
	case "$MY_BASE" in
	/tmp/cn-mysql.*) rm -rf "$MY_BASE" ;;
	*) echo "mariadb.sh: not removing unexpected base dir $MY_BASE" >&2 ;;
	esac
	rm -rf "$dir"
}

cmd_pause() {
	load_env "$1"
	server_stop
}

cmd_resume() {
	load_env "$1"
	[ -f "$MY_PID" ] && kill -0 "$(cat "$MY_PID")" 2>/dev/null && return 0
	server_start || { tail -n 20 "$MY_LOG" >&2; die "the server did not start again"; }
}

cmd_restart() {
	cmd_pause "$1"
	cmd_resume "$1"
}

[ $# -eq 2 ] || die "usage: mariadb.sh start|stop|restart|pause|resume DIR"
case "$1" in
start) cmd_start "$2" ;;
stop) cmd_stop "$2" ;;
restart) cmd_restart "$2" ;;
pause) cmd_pause "$2" ;;
resume) cmd_resume "$2" ;;
*) die "usage: mariadb.sh start|stop|restart|pause|resume DIR" ;;
esac
