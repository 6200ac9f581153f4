/*
 * test_mysql_exec.c - the MySQL/MariaDB driver's execution against a real
 * MariaDB: bound parameters, row caps (the server stops sending, or KILL
 * QUERY stops it), the time budget with the query gone from the process
 * list, the client's own deadline when the server hangs, pool exhaustion,
 * cancel() at shutdown, a server restart and a stopped server, dsn errors
 * that never show the password, TLS modes, the read-only statement, and session state
 * a stored function leaves that never reaches the next request (while plain
 * queries are not followed by a reset, and a repeated one is prepared once).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "my_harness.h"

/* Runs for minutes unless stopped: one row, after counting 3.2 billion. */
#define SLOW "SELECT count(*) FROM orders a, orders b, orders c, order_items d WHERE a.id + d.qty > b.id"
#define RUNNING "SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = 'connector_ro' " \
		"AND COMMAND IN ('Query', 'Execute')"

/* Poll the administrator's count until it says 0, for up to ms. */
static bool admin_count_reaches_zero(const char *sql, int ms)
{
	MYSQL *a = h_admin();
	assert_non_null(a);
	bool zero = false;
	for (int waited = 0; !zero && waited <= ms; waited += 50) {
		char *v = h_admin_value(a, sql);
		zero = v && !strcmp(v, "0");
		free(v);
		if (!zero)
			usleep(50 * 1000);
	}
	mysql_close(a);
	return zero;
}

static void test_parameters_are_bound(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 10000, h_env.dsn);
	const char *evil = "x'); DELETE FROM audit_log; -- \\' \" `";
	struct cn_value p[5] = {
		{.kind = CN_VAL_TEXT, .u.s = {evil, strlen(evil)}},
		{.kind = CN_VAL_INT, .u.i = -9007199254740993LL},
		{.kind = CN_VAL_DOUBLE, .u.d = 2.5},
		{.kind = CN_VAL_NULL},
		{.kind = CN_VAL_BOOL, .u.b = true},
	};
	struct h_result r;
	struct cn_error err = {0};
	int rc = h_exec(h, "SELECT $1 AS a, $2 AS b, $3 AS c, $4 AS d, $5 AS e, $1 = $1 AS f, '$1' AS g",
			p, 5, 5000, 0, &r, &err);
	assert_int_equal(rc, CN_OK);
	assert_int_equal(r.nrows, 1);
	char want[128];
	snprintf(want, sizeof want, "T:%s", evil);
	assert_string_equal(h_cell(&r, 0, 0), want);
	assert_string_equal(h_cell(&r, 0, 1), "I:-9007199254740993");
	assert_string_equal(h_cell(&r, 0, 2), "D:2.5");
	assert_string_equal(h_cell(&r, 0, 3), "NULL");
	assert_string_equal(h_cell(&r, 0, 4), "I:1");
	assert_string_equal(h_cell(&r, 0, 5), "I:1");
	assert_string_equal(h_cell(&r, 0, 6), "T:$1"); /* in a string, $1 is text */
	h_result_free(&r);

	/* a parameter used by an indexed lookup, and LIMIT $n */
	struct cn_value q[2] = {{.kind = CN_VAL_INT, .u.i = 7}, {.kind = CN_VAL_INT, .u.i = 2}};
	rc = h_exec(h, "SELECT id FROM orders WHERE customer_id = $1 ORDER BY id LIMIT $2", q, 2, 5000,
		    0, &r, &err);
	assert_int_equal(rc, CN_OK);
	assert_int_equal(r.nrows, 2);
	assert_string_equal(h_cell(&r, 0, 0), "I:25");
	h_result_free(&r);

	/* the count must match */
	rc = h_exec(h, "SELECT $1, $2", q, 1, 5000, 0, &r, &err);
	assert_int_equal(rc, CN_EINVAL);
	assert_non_null(strstr(err.message, "uses 2 parameters"));
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_row_cap_without_limit_reads_only_the_cap(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 20000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	/* 200 x 200 x 400 = 16 million rows: the statement's sql_select_limit stops the server */
	int rc = h_exec(h, "SELECT a.id, b.id, c.qty FROM orders a, orders b, order_items c", NULL, 0,
			20000, 10, &r, &err);
	assert_int_equal(rc, CN_OK);
	assert_int_equal(r.nrows, 10);
	assert_true(h_now_ms() - t0 < 3000);
	h_result_free(&r);
	assert_true(admin_count_reaches_zero(RUNNING, 2000));
	/* the connection is fine for the next request */
	char buf[64];
	assert_int_equal(h_scalar(h, "SELECT count(*) FROM customers", buf, sizeof buf), CN_OK);
	assert_string_equal(buf, "I:50");
	h_env.api->close(h);
}

static void test_row_cap_with_a_big_limit_kills_the_query(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 20000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	/* an explicit LIMIT overrides sql_select_limit: KILL QUERY has to stop it */
	int rc = h_exec(h, "SELECT a.id, b.id, c.qty FROM orders a, orders b, order_items c "
			"LIMIT 16000000", NULL, 0, 20000, 10, &r, &err);
	assert_int_equal(rc, CN_OK);
	assert_int_equal(r.nrows, 10);
	assert_true(h_now_ms() - t0 < 5000);
	h_result_free(&r);
	assert_true(admin_count_reaches_zero(RUNNING, 3000));
	char buf[64];
	assert_int_equal(h_scalar(h, "SELECT 42", buf, sizeof buf), CN_OK);
	assert_string_equal(buf, "I:42");
	h_env.api->close(h);
}

static void test_time_budget_stops_the_server(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 600, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	int rc = h_exec(h, SLOW, NULL, 0, 600, 0, &r, &err);
	int64_t took = h_now_ms() - t0;
	h_result_free(&r);
	assert_int_equal(rc, CN_ETIMEOUT);
	assert_non_null(strstr(err.message, "time limit of 600 ms"));
	assert_true(took >= 500 && took < 3000);
	assert_true(admin_count_reaches_zero(RUNNING, 2000));
	char buf[64];
	assert_int_equal(h_scalar(h, "SELECT 1", buf, sizeof buf), CN_OK);
	h_env.api->close(h);
}

static pid_t server_pid(void)
{
	char path[512], buf[32] = "";
	snprintf(path, sizeof path, "%s/mariadbd.pid", getenv("CN_TEST_MYSQL_BASE_DIR"));
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof buf, f));
	fclose(f);
	return (pid_t)atoi(buf);
}

/* SIGSTOP takes effect asynchronously: wait until the process shows T. */
static bool wait_stopped(pid_t pid)
{
	char path[64], line[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	for (int i = 0; i < 100; i++) {
		FILE *f = fopen(path, "r");
		bool stopped = false;
		if (f && fgets(line, sizeof line, f)) {
			const char *close = strrchr(line, ')');
			stopped = close && close[1] == ' ' && close[2] == 'T';
		}
		if (f)
			fclose(f);
		if (stopped)
			return true;
		usleep(10 * 1000);
	}
	return false;
}

static void test_client_deadline_when_the_server_hangs(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 1000, h_env.dsn);
	char buf[64];
	assert_int_equal(h_scalar(h, "SELECT 1", buf, sizeof buf), CN_OK);
	pid_t pid = server_pid();
	assert_int_equal(kill(pid, SIGSTOP), 0);
	assert_true(wait_stopped(pid));
	struct h_result r;
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	int rc = h_exec(h, "SELECT 2", NULL, 0, 1000, 0, &r, &err);
	int64_t took = h_now_ms() - t0;
	kill(pid, SIGCONT);
	h_result_free(&r);
	/* read timeout 2 s, then a KILL attempt that cannot connect within 2 s */
	if (rc != CN_ETIMEOUT && rc != CN_EUNAVAILABLE)
		fail_msg("rc %d after %lld ms: %s", rc, (long long)took, err.message);
	assert_true(took < 9000);
	assert_int_equal(h_scalar(h, "SELECT 3", buf, sizeof buf), CN_OK);
	assert_string_equal(buf, "I:3");
	h_env.api->close(h);
}

static void test_full_pool_is_busy(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 3000, h_env.dsn);
	struct h_job j;
	h_job_start(&j, h, SLOW, 3000);
	usleep(300 * 1000);
	struct h_result r;
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	int rc = h_exec(h, "SELECT 1", NULL, 0, 3000, 0, &r, &err);
	h_result_free(&r);
	assert_int_equal(rc, CN_EBUSY);
	assert_non_null(strstr(err.message, "busy"));
	assert_true(h_now_ms() - t0 < 2800);
	h_job_join(&j);
	assert_int_equal(j.rc, CN_ETIMEOUT);
	h_env.api->close(h);
}

static void test_cancel_stops_running_queries(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 20000, h_env.dsn);
	struct h_job j;
	h_job_start(&j, h, SLOW, 20000);
	usleep(400 * 1000);
	h_env.api->cancel(h);
	h_job_join(&j);
	assert_int_equal(j.rc, CN_ECANCELED);
	assert_true(j.elapsed_ms < 3000);
	assert_true(admin_count_reaches_zero(RUNNING, 2000));
	h_env.api->close(h);
}

static void test_server_restart_and_stop(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 5000, h_env.dsn);
	char buf[64];
	assert_int_equal(h_scalar(h, "SELECT 1", buf, sizeof buf), CN_OK);
	assert_int_equal(h_server("restart"), 0);
	/* the first request after a restart succeeds: the dead connection is replaced */
	assert_int_equal(h_scalar(h, "SELECT count(*) FROM orders", buf, sizeof buf), CN_OK);
	assert_string_equal(buf, "I:200");

	assert_int_equal(h_server("pause"), 0);
	struct h_result r;
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	assert_int_equal(h_exec(h, "SELECT 1", NULL, 0, 5000, 0, &r, &err), CN_EUNAVAILABLE);
	h_result_free(&r);
	assert_true(h_now_ms() - t0 < 3000);
	assert_null(strstr(err.message, getenv("CN_TEST_MYSQL_RO_PASSWORD")));
	assert_int_equal(h_env.api->ping(h, &err), CN_EUNAVAILABLE);
	assert_int_equal(h_server("resume"), 0);
	assert_int_equal(h_env.api->ping(h, &err), CN_OK);
	assert_int_equal(h_scalar(h, "SELECT 5", buf, sizeof buf), CN_OK);
	assert_string_equal(buf, "I:5");
	h_env.api->close(h);
}

static void test_open_errors_never_show_the_password(void **state)
{
	(void)state;
	const char *pw = getenv("CN_TEST_MYSQL_RO_PASSWORD");
	const char *port = getenv("CN_TEST_MYSQL_PORT");
	char dsn[512];
	void *h = NULL;
	struct cn_error err = {0};
	snprintf(dsn, sizeof dsn, "mysql://connector_ro:%sWRONG@127.0.0.1:%s/connector_test", pw, port);
	assert_int_equal(h_open(dsn, 1, 1000, false, &h, &err, NULL), CN_EAUTH);
	assert_non_null(strstr(err.message, "Access denied"));
	assert_null(strstr(err.message, pw));

	static const struct {
		const char *dsn, *says;
	} bad[] = {
		{"postgresql://u:secretpw@h/db", "must be a URI"},
		{"mysql://u:secretpw@h:99999/db", "port"},
		{"mysql://u:secretpw@h/db?sslmode=on", "'sslmode' is not known"},
		{"mysql://u:secretpw@h/db?ssl-mode=sometimes", "ssl-mode=sometimes"},
		{"mysql://u:secretpw@h", "names no database"},
		{"mysql://u:secr%zzpw@h/db", "%-escape"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(&err, 0, sizeof err);
		assert_int_equal(h_open(bad[i].dsn, 1, 1000, false, &h, &err, NULL), CN_ECONFIG);
		if (!strstr(err.message, bad[i].says))
			fail_msg("%s: %s", bad[i].dsn, err.message);
		assert_null(strstr(err.message, "secretpw"));
	}
	memset(&err, 0, sizeof err);
	assert_int_equal(h_open(h_env.dsn, 1, 1000, false, &h, &err, "colour", "blue", NULL),
			 CN_ECONFIG);
	assert_non_null(strstr(err.message, "unknown option 'colour'"));
}

/* ssl-mode: a user that must use TLS gets in only with it; VERIFY_IDENTITY
 * checks the certificate against the CA given, REQUIRED only encrypts. */
static void test_tls(void **state)
{
	(void)state;
	const char *pw = getenv("CN_TEST_MYSQL_RO_PASSWORD"), *port = getenv("CN_TEST_MYSQL_PORT");
	const char *ca = getenv("CN_TEST_MYSQL_CA"), *other = getenv("CN_TEST_MYSQL_OTHER_CA");
	assert_non_null(ca);
	char dsn[1024];
	void *h = NULL;
	struct cn_error err = {0};
	snprintf(dsn, sizeof dsn, "mysql://connector_tls:%s@127.0.0.1:%s/connector_test"
		 "?ssl-mode=VERIFY_IDENTITY&ssl-ca=%s", pw, port, ca);
	h = h_open_or_fail(1, 5000, dsn);
	struct h_result r;
	assert_int_equal(h_exec(h, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
				"WHERE VARIABLE_NAME = 'SSL_VERSION'", NULL, 0, 5000, 0, &r, &err), CN_OK);
	assert_int_equal(strncmp(h_cell(&r, 0, 0), "T:TLSv1.", 8), 0);
	h_result_free(&r);
	h_env.api->close(h);

	/* without TLS the server refuses the user */
	snprintf(dsn, sizeof dsn, "mysql://connector_tls:%s@127.0.0.1:%s/connector_test?ssl-mode=DISABLED",
		 pw, port);
	assert_int_equal(h_open(dsn, 1, 5000, false, &h, &err, NULL), CN_EAUTH);
	/* a certificate the CA did not sign */
	memset(&err, 0, sizeof err);
	snprintf(dsn, sizeof dsn, "mysql://connector_tls:%s@127.0.0.1:%s/connector_test"
		 "?ssl-mode=VERIFY_CA&ssl-ca=%s", pw, port, other);
	assert_int_equal(h_open(dsn, 1, 5000, false, &h, &err, NULL), CN_EUNAVAILABLE);
	assert_null(strstr(err.message, pw));
	/* REQUIRED encrypts without checking who answers, unless a CA is given
	 * (then it verifies, as MySQL's own clients do) */
	snprintf(dsn, sizeof dsn, "mysql://connector_tls:%s@127.0.0.1:%s/connector_test"
		 "?ssl-mode=REQUIRED", pw, port);
	h = h_open_or_fail(1, 5000, dsn);
	h_env.api->close(h);
	snprintf(dsn, sizeof dsn, "mysql://connector_tls:%s@127.0.0.1:%s/connector_test"
		 "?ssl-mode=REQUIRED&ssl-ca=%s", pw, port, other);
	assert_int_equal(h_open(dsn, 1, 5000, false, &h, &err, NULL), CN_EUNAVAILABLE);
	assert_non_null(strstr(err.message, "TLS"));
}

static void test_socket_dsn(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 5000, getenv("CN_TEST_MYSQL_SOCKET_DSN"));
	char buf[64];
	assert_int_equal(h_scalar(h, "SELECT count(*) FROM products", buf, sizeof buf), CN_OK);
	assert_string_equal(buf, "I:20");
	h_env.api->close(h);
}

/* The read-only statement stops a write a guard let through, whatever the
 * user's grants: here the ALL PRIVILEGES user, through a stored function. */
static void test_read_only_statement(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 5000, h_env.super_dsn);
	MYSQL *a = h_admin();
	char *before = h_admin_value(a, "SELECT count(*) FROM audit_log");
	struct h_result r;
	struct cn_error err = {0};
	assert_int_equal(h_exec(h, "SELECT write_log('x')", NULL, 0, 5000, 0, &r, &err), CN_EREJECTED);
	assert_non_null(strstr(err.message, "READ ONLY"));
	assert_int_equal(err.reject, CN_REJECT_WRITE); /* error 1792 counts as a write */
	h_result_free(&r);
	/* a function that turns the session read-write changes nothing for the next one */
	assert_int_equal(h_exec(h, "SELECT make_writable()", NULL, 0, 5000, 0, &r, &err), CN_OK);
	h_result_free(&r);
	assert_int_equal(h_exec(h, "SELECT write_log('y')", NULL, 0, 5000, 0, &r, &err), CN_EREJECTED);
	h_result_free(&r);
	/* nor can a request leave a temporary table behind: creating one is a write too */
	assert_int_equal(h_exec(h, "SELECT make_temp_table()", NULL, 0, 5000, 0, &r, &err), CN_EREJECTED);
	assert_int_equal(err.reject, CN_REJECT_WRITE);
	h_result_free(&r);
	assert_int_equal(h_exec(h, "SELECT COUNT(*) FROM leaked_tmp", NULL, 0, 5000, 0, &r, &err),
			 CN_EQUERY);
	h_result_free(&r);
	char *after = h_admin_value(a, "SELECT count(*) FROM audit_log");
	assert_string_equal(before, after);
	free(before);
	free(after);
	mysql_close(a);
	h_env.api->close(h);
}

/* Count the session settings the driver sent since the log was cleared:
 * one per new connection and one per reset. */
static int pins_sent(MYSQL *a)
{
	char *v = h_admin_value(a, "SELECT count(*) FROM mysql.general_log WHERE command_type = 'Query' "
				   "AND argument LIKE 'SET SESSION sql_mode=%'");
	int n = v ? atoi(v) : -1;
	free(v);
	return n;
}

static void test_session_state_never_reaches_the_next_request(void **state)
{
	(void)state;
	MYSQL *a = h_admin();
	assert_non_null(a);
	void *h = h_open_or_fail(1, 5000, h_env.dsn);
	assert_int_equal(h_admin_exec(a, "SET GLOBAL log_output = 'TABLE'"), 0);
	assert_int_equal(h_admin_exec(a, "TRUNCATE mysql.general_log"), 0);
	assert_int_equal(h_admin_exec(a, "SET GLOBAL general_log = 1"), 0);

	/* plain queries: no reset, and the statement is prepared once */
	char buf[128];
	for (int i = 0; i < 3; i++)
		assert_int_equal(h_scalar(h, "SELECT count(*) FROM orders WHERE status = 'paid'", buf,
					  sizeof buf), CN_OK);
	assert_int_equal(pins_sent(a), 0);
	char *prepares = h_admin_value(a, "SELECT COUNT(*) FROM mysql.general_log WHERE command_type = "
					  "'Prepare' AND argument LIKE '%status = ''paid''%'");
	char *executes = h_admin_value(a, "SELECT COUNT(*) FROM mysql.general_log WHERE command_type = "
					  "'Execute' AND argument LIKE '%status = ''paid''%'");
	assert_string_equal(prepares, "1");
	assert_string_equal(executes, "3");
	free(prepares);
	free(executes);

	/* the guard accepts a stored function: it sets a variable, the sql_mode,
	 * another setting and takes a user-level lock */
	struct cn_error err = {0};
	assert_int_equal(h_env.api->check(h, "SELECT touch_session()", &err), CN_OK);
	assert_int_equal(h_scalar(h, "SELECT touch_session()", buf, sizeof buf), CN_OK);
	assert_string_equal(buf, "I:1");
	assert_int_equal(pins_sent(a), 1);

	/* the next request on the same (only) connection sees none of it */
	struct h_result r;
	assert_int_equal(h_exec(h, "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM "
				"information_schema.SESSION_VARIABLES WHERE VARIABLE_NAME IN "
				"('SQL_MODE', 'DIV_PRECISION_INCREMENT', 'TX_READ_ONLY') ORDER BY 1",
				NULL, 0, 5000, 0, &r, &err), CN_OK);
	assert_int_equal(r.nrows, 3);
	assert_string_equal(h_cell(&r, 0, 1), "T:4");
	assert_string_equal(h_cell(&r, 1, 1), "T:STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,"
					      "NO_ENGINE_SUBSTITUTION");
	assert_string_equal(h_cell(&r, 2, 1), "T:ON");
	h_result_free(&r);
	assert_int_equal(h_scalar(h, "SELECT session_state()", buf, sizeof buf), CN_OK);
	assert_string_equal(buf, "T:no variable|no lock");
	assert_int_equal(h_admin_exec(a, "SET GLOBAL general_log = 0"), 0);
	char *lock = h_admin_value(a, "SELECT IS_USED_LOCK('connector_leak') IS NULL");
	assert_string_equal(lock, "1");
	free(lock);
	mysql_close(a);
	h_env.api->close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parameters_are_bound),
		cmocka_unit_test(test_row_cap_without_limit_reads_only_the_cap),
		cmocka_unit_test(test_row_cap_with_a_big_limit_kills_the_query),
		cmocka_unit_test(test_time_budget_stops_the_server),
		cmocka_unit_test(test_full_pool_is_busy),
		cmocka_unit_test(test_cancel_stops_running_queries),
		cmocka_unit_test(test_open_errors_never_show_the_password),
		cmocka_unit_test(test_socket_dsn),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_read_only_statement),
		cmocka_unit_test(test_session_state_never_reaches_the_next_request),
		cmocka_unit_test(test_server_restart_and_stop),
		cmocka_unit_test(test_client_deadline_when_the_server_hangs),
	};
	return cmocka_run_group_tests(tests, h_setup, h_teardown);
}
