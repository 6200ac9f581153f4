/*
 * test_postgres_exec.c - the PostgreSQL driver's execution under limits and
 * faults: a full sink stops a huge result quickly, a connection that held a
 * 1 MiB row is not pooled, timeouts cancel the query
 * on the server, the client-side deadline when the server hangs, pool
 * exhaustion, cancel() at shutdown, a server restart and a stopped server,
 * connection errors that never show the password, a connect_timeout against
 * a server that never answers, and session state that
 * never reaches the next request.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "pg_harness.h"

#define APP_ACTIVE                                                                        \
	"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'interactor-connector' " \
	"AND state = 'active'"

static void sleep_ms(int ms)
{
	usleep((useconds_t)ms * 1000);
}


/* Poll the superuser's count query until it says 0, for up to ms. */
static bool super_count_reaches_zero(const char *sql, int ms)
{
	PGconn *su = h_super();
	assert_non_null(su);
	bool zero = false;
	for (int waited = 0; !zero && waited <= ms; waited += 50) {
		char *v = h_super_value(su, sql);
		zero = v && !strcmp(v, "0");
		free(v);
		if (!zero)
			sleep_ms(50);
	}
	PQfinish(su);
	return zero;
}


static void test_full_sink_stops_a_huge_result(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 20000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	assert_int_equal(h_exec(h, "SELECT g FROM generate_series(1, 1000000) g", NULL, 0, 20000, 100,
				&r, &err), CN_OK);
	int64_t elapsed = h_now_ms() - t0;
	assert_int_equal(r.nrows, 100);
	assert_true(r.ended_early);
	assert_string_equal(h_cell(&r, 99, 0), "I:100");
	h_result_free(&r);
	if (elapsed > 3000)
		fail_msg("1M-row query took %lld ms to stop", (long long)elapsed);

	/* 200 million rows streamed by a set-returning function: only a server-side
	 * cancel makes this return within seconds (reading them all takes minutes);
	 * the bound leaves room for a slow cancel request and the rows sent before
	 * it lands, under ASan on a loaded 2-core machine (3.1 s seen) */
	t0 = h_now_ms();
	assert_int_equal(h_exec(h, "SELECT x FROM (SELECT generate_series(1, 200000000) AS x) s", NULL,
				0, 20000, 10, &r, &err), CN_OK);
	elapsed = h_now_ms() - t0;
	assert_int_equal(r.nrows, 10);
	h_result_free(&r);
	if (elapsed > 6000)
		fail_msg("200M-row query took %lld ms to stop", (long long)elapsed);
	assert_true(super_count_reaches_zero(APP_ACTIVE, 1000));

	/* the connection is clean and usable afterwards */
	char v[64], pid[64];
	assert_int_equal(h_scalar(h, "SELECT count(*) FROM crm.customers", v, sizeof v), CN_OK);
	assert_string_equal(v, "I:3");

	/* a small result cut short needs no cancel: the connection stays */
	assert_int_equal(h_scalar(h, "SELECT pg_backend_pid()", pid, sizeof pid), CN_OK);
	assert_int_equal(h_exec(h, "SELECT generate_series(1, 10)", NULL, 0, 5000, 5, &r, &err), CN_OK);
	assert_int_equal(r.nrows, 5);
	h_result_free(&r);
	assert_int_equal(h_scalar(h, "SELECT pg_backend_pid()", v, sizeof v), CN_OK);
	assert_string_equal(v, pid);
	h_env.api->close(h);
}

/* A connection that had to hold a row of 1 MiB or more is closed after the
 * request (libpq's buffer grew to the row's size and would stay so in the
 * pool); one with smaller rows, even many of them cut by the cap, stays. */
static void test_big_rows_recycle_the_connection(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 20000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	char pid[64], v[64];
	assert_int_equal(h_scalar(h, "SELECT pg_backend_pid()", pid, sizeof pid), CN_OK);
	assert_int_equal(h_exec(h, "SELECT repeat('x', 100000) FROM generate_series(1, 200)", NULL,
				0, 5000, 3, &r, &err), CN_OK);
	assert_int_equal(r.nrows, 3);
	h_result_free(&r);
	assert_int_equal(h_scalar(h, "SELECT pg_backend_pid()", v, sizeof v), CN_OK);
	assert_string_equal(v, pid);
	/* one row of 2 MB, even after the cap: the next request has a new session */
	assert_int_equal(h_exec(h, "SELECT g, repeat('y', CASE WHEN g = 3 THEN 2000000 ELSE 10 END) "
				"FROM generate_series(1, 3) g", NULL, 0, 5000, 1, &r, &err), CN_OK);
	assert_int_equal(r.nrows, 1);
	h_result_free(&r);
	assert_int_equal(h_scalar(h, "SELECT pg_backend_pid()", v, sizeof v), CN_OK);
	assert_string_not_equal(v, pid);
	h_env.api->close(h);
}

static void test_sink_error_stops_the_query(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 20000, h_env.dsn);
	int cells = 0;
	struct cn_result_sink sink;
	h_sink_failing(&sink, &cells); /* fails at the third cell */
	struct cn_query q = {.text = "SELECT x FROM (SELECT generate_series(1, 200000000) AS x) s",
			     .timeout_ms = 20000};
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	assert_int_equal(h_env.api->execute(h, &q, &sink, &err), CN_ETOOBIG);
	assert_true(h_now_ms() - t0 < 6000); /* a cancel, not 200M rows; see above */
	assert_int_equal(cells, 3);
	char v[64];
	assert_int_equal(h_scalar(h, "SELECT 'next'", v, sizeof v), CN_OK);
	assert_string_equal(v, "T:next");
	h_env.api->close(h);
}

static void test_timeout_cancels_on_the_server(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 20000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	assert_int_equal(h_exec(h, "SELECT pg_sleep(5) AS timeout_probe", NULL, 0, 500, 0, &r, &err),
			 CN_ETIMEOUT);
	int64_t elapsed = h_now_ms() - t0;
	assert_non_null(strstr(err.message, "time limit of 500 ms"));
	h_result_free(&r);
	assert_true(elapsed >= 450 && elapsed < 2500);
	assert_true(super_count_reaches_zero(
		"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%timeout_probe%' "
		"AND state = 'active' AND pid <> pg_backend_pid()", 500));

	/* CPU-bound, no sleep */
	t0 = h_now_ms();
	assert_int_equal(h_exec(h, "SELECT count(*) FROM generate_series(1, 2000000000)", NULL, 0, 300,
				0, &r, &err), CN_ETIMEOUT);
	h_result_free(&r);
	assert_true(h_now_ms() - t0 < 2500);
	/* the timeout is capped below 30 s */
	char v[64];
	assert_int_equal(h_scalar(h, "SELECT current_setting('statement_timeout')", v, sizeof v), CN_OK);
	assert_string_equal(v, "T:5s");
	struct cn_query q = {.text = "SELECT current_setting('statement_timeout')", .timeout_ms = 600000};
	struct cn_result_sink sink;
	h_sink_init(&r, &sink, 0);
	assert_int_equal(h_env.api->execute(h, &q, &sink, &err), CN_OK);
	assert_string_equal(h_cell(&r, 0, 0), "T:29s");
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_client_deadline_when_the_server_hangs(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 20000, h_env.dsn);
	struct h_job j;
	h_job_start(&j, h, "SELECT pg_sleep(4) AS hang_probe", 800);
	PGconn *su = h_super();
	assert_non_null(su);
	char *pid = NULL;
	for (int i = 0; i < 40 && !pid; i++) {
		sleep_ms(25);
		pid = h_super_value(su, "SELECT pid FROM pg_stat_activity WHERE query LIKE "
					"'%hang_probe%' AND state = 'active' AND pid <> pg_backend_pid()");
	}
	assert_non_null(pid);
	pid_t backend = (pid_t)atoi(pid);
	free(pid);
	if (kill(backend, SIGSTOP) != 0) {
		h_job_join(&j);
		PQfinish(su);
		h_env.api->close(h);
		if (errno == EPERM)
			skip(); /* not root: cannot freeze the server process */
		fail_msg("kill(SIGSTOP): %s", strerror(errno));
	}
	h_job_join(&j);
	kill(backend, SIGCONT);
	/* statement_timeout could not fire: the client deadline (800 + 1000 ms)
	 * cancelled, nothing answered for 2 s, the connection was given up */
	assert_int_equal(j.rc, CN_ETIMEOUT);
	if (j.elapsed_ms < 1700 || j.elapsed_ms > 6000)
		fail_msg("gave up after %lld ms", (long long)j.elapsed_ms);
	PQclear(PQexec(su, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
			   "WHERE query LIKE '%hang_probe%' AND pid <> pg_backend_pid()"));
	PQfinish(su);
	char v[64];
	assert_int_equal(h_scalar(h, "SELECT 40 + 2", v, sizeof v), CN_OK);
	assert_string_equal(v, "I:42");
	h_env.api->close(h);
}

static void test_pool_exhaustion_is_busy(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 5000, h_env.dsn);
	struct h_job j;
	h_job_start(&j, h, "SELECT pg_sleep(1.5)", 5000);
	sleep_ms(300);
	struct h_result r;
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	assert_int_equal(h_exec(h, "SELECT 1", NULL, 0, 400, 0, &r, &err), CN_EBUSY);
	int64_t waited = h_now_ms() - t0;
	h_result_free(&r);
	assert_non_null(strstr(err.message, "busy"));
	assert_true(waited >= 350 && waited < 1200);
	h_job_join(&j);
	assert_int_equal(j.rc, CN_OK);
	assert_int_equal(h_exec(h, "SELECT 1", NULL, 0, 400, 0, &r, &err), CN_OK);
	h_result_free(&r);
	h_env.api->close(h);

	/* two connections run two queries at once */
	h = h_open_or_fail(2, 5000, h_env.dsn);
	struct h_job a, b;
	int64_t t1 = h_now_ms();
	h_job_start(&a, h, "SELECT pg_sleep(0.8)", 5000);
	h_job_start(&b, h, "SELECT pg_sleep(0.8)", 5000);
	h_job_join(&a);
	h_job_join(&b);
	assert_int_equal(a.rc, CN_OK);
	assert_int_equal(b.rc, CN_OK);
	assert_true(h_now_ms() - t1 < 1500);
	h_env.api->close(h);
}

static void test_cancel_at_shutdown(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 10000, h_env.dsn);
	struct h_job j;
	h_job_start(&j, h, "SELECT pg_sleep(5)", 10000);
	sleep_ms(300);
	h_env.api->cancel(h);
	h_job_join(&j);
	assert_int_equal(j.rc, CN_ECANCELED);
	assert_true(j.elapsed_ms < 2000);
	char v[64];
	assert_int_equal(h_scalar(h, "SELECT 'still works'", v, sizeof v), CN_OK);
	assert_string_equal(v, "T:still works");
	h_env.api->close(h);
}

/* A schema builder that counts tables. */
static int count_table(void *c, const char *s, const char *n, enum cn_object_kind k,
		       const char *cm, int64_t r)
{
	(void)s, (void)n, (void)k, (void)cm, (void)r;
	return (*(int *)c)++;
}

static int any_column(void *c, int t, const char *n, const char *ty, bool nl, const char *d,
		      const char *cm, int pk)
{
	(void)c, (void)t, (void)n, (void)ty, (void)nl, (void)d, (void)cm, (void)pk;
	return CN_OK;
}

static int any_fk(void *c, int t, const char *n, size_t k, const char *const *a, const char *s,
		  const char *r, const char *const *b)
{
	(void)c, (void)t, (void)n, (void)k, (void)a, (void)s, (void)r, (void)b;
	return CN_OK;
}

static int any_index(void *c, int t, const char *n, bool u, size_t k, const char *const *a)
{
	(void)c, (void)t, (void)n, (void)u, (void)k, (void)a;
	return CN_OK;
}

static void test_server_restart_and_outage(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 5000, h_env.dsn);
	char v[128];
	struct h_job a, b;
	h_job_start(&a, h, "SELECT pg_sleep(0.2)", 5000); /* both pool connections open */
	h_job_start(&b, h, "SELECT pg_sleep(0.2)", 5000);
	h_job_join(&a);
	h_job_join(&b);
	/* mood[] is looked up on the catalog connection, which the restart breaks too */
	assert_int_equal(h_scalar(h, "SELECT ARRAY['ok'::public.mood]", v, sizeof v), CN_OK);
	assert_string_equal(v, "J:[\"ok\"]");
	assert_int_equal(h_system("'%s/tests/support/pg.sh' restart '%s'", CN_TEST_SOURCE_DIR,
				  h_env.env_dir), 0);
	/* the first request after the restart succeeds, and so does the next */
	assert_int_equal(h_scalar(h, "SELECT 'after restart'", v, sizeof v), CN_OK);
	assert_string_equal(v, "T:after restart");
	assert_int_equal(h_scalar(h, "SELECT 2", v, sizeof v), CN_OK);
	struct cn_error err = {0};
	assert_int_equal(h_env.api->ping(h, &err), CN_OK);
	PGconn *su = h_super();
	assert_non_null(su);
	PGresult *res = PQexec(su, "CREATE TYPE public.restart_color AS ENUM ('red')");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	assert_int_equal(h_scalar(h, "SELECT 'red'::public.restart_color", v, sizeof v), CN_OK);
	assert_string_equal(v, "T:red");
	struct h_result typed;
	assert_int_equal(h_exec(h, "SELECT 'red'::public.restart_color", NULL, 0, 2000, 0, &typed,
				&err), CN_OK);
	assert_string_equal(typed.cols[0].type, "restart_color");
	h_result_free(&typed);
	PQclear(PQexec(su, "DROP TYPE public.restart_color"));
	PQfinish(su);
	int tables = 0;
	struct cn_schema_builder counter = {&tables, count_table, any_column, any_fk, any_index};
	assert_int_equal(h_env.api->introspect(h, &counter, &err), CN_OK);
	assert_true(tables > 10);

	/* the server down: a clear error naming the server, never the password */
	assert_int_equal(h_system("as=''; [ \"$(id -u)\" -eq 0 ] && as='runuser -u postgres --'; "
				  "$as \"$CN_TEST_PG_CTL\" -D \"$CN_TEST_PG_DATA_DIR\" -m fast -w stop "
				  ">/dev/null"), 0);
	struct h_result r;
	assert_int_equal(h_exec(h, "SELECT 1", NULL, 0, 2000, 0, &r, &err), CN_EUNAVAILABLE);
	h_result_free(&r);
	assert_non_null(strstr(err.message, "port "));
	assert_non_null(strstr(err.message, "database connector_test"));
	const char *pw = strstr(h_env.dsn, "password=");
	assert_non_null(pw);
	assert_null(strstr(err.message, pw + strlen("password=")));
	assert_int_not_equal(h_env.api->ping(h, &err), CN_OK);
	assert_int_equal(h_system("'%s/tests/support/pg.sh' restart '%s'", CN_TEST_SOURCE_DIR,
				  h_env.env_dir), 0);
	assert_int_equal(h_scalar(h, "SELECT 'back'", v, sizeof v), CN_OK);
	assert_string_equal(v, "T:back");
	h_env.api->close(h);
}

static void test_open_errors(void **state)
{
	(void)state;
	char dsn[512];
	void *h = NULL;
	struct cn_error err = {0};
	/* a port nobody listens on */
	snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=1 dbname=connector_test user=u password=Sekr1tPw");
	assert_int_equal(h_open(dsn, 1, 1000, false, &h, &err, NULL), CN_EUNAVAILABLE);
	assert_non_null(strstr(err.message, "host 127.0.0.1 port 1 database connector_test user u"));
	assert_null(strstr(err.message, "Sekr1tPw"));
	/* a server that accepts the connection and never answers: the dsn's
	 * connect_timeout bounds the attempt (the driver polls the connection
	 * itself, so libpq's own timer does not apply) */
	int lsock = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t salen = sizeof sa;
	assert_int_equal(bind(lsock, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(lsock, 4), 0);
	assert_int_equal(getsockname(lsock, (struct sockaddr *)&sa, &salen), 0);
	snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%u dbname=connector_test user=u "
		 "password=Sekr1tPw connect_timeout=2", ntohs(sa.sin_port));
	int64_t t0 = h_now_ms();
	assert_int_equal(h_open(dsn, 1, 1000, false, &h, &err, NULL), CN_EUNAVAILABLE);
	int64_t waited = h_now_ms() - t0;
	close(lsock);
	if (waited < 1900 || waited > 5000)
		fail_msg("a silent server was given up after %lld ms, not ~2000", (long long)waited);
	assert_non_null(strstr(err.message, "timeout expired"));
	assert_null(strstr(err.message, "Sekr1tPw"));
	/* a wrong password */
	snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%s dbname=connector_test user=connector_ro "
		 "password=Wr0ngPassw0rd", getenv("CN_TEST_PG_PORT"));
	assert_int_equal(h_open(dsn, 1, 1000, false, &h, &err, NULL), CN_EAUTH);
	assert_null(strstr(err.message, "Wr0ngPassw0rd"));
	assert_non_null(strstr(err.message, "authentication failed"));
	/* URIs: a malformed one must not echo its password either */
	assert_int_equal(h_open("postgresql://u:Sekr1t%zz@127.0.0.1:1/db", 1, 1000, false, &h, &err,
				NULL), CN_ECONFIG);
	assert_null(strstr(err.message, "Sekr1t"));
	snprintf(dsn, sizeof dsn, "postgresql://connector_ro:Wr0ngPassw0rd@127.0.0.1:%s/connector_test",
		 getenv("CN_TEST_PG_PORT"));
	assert_int_equal(h_open(dsn, 1, 1000, false, &h, &err, NULL), CN_EAUTH);
	assert_null(strstr(err.message, "Wr0ngPassw0rd"));
	/* settings the driver refuses */
	assert_int_equal(h_open("", 1, 1000, false, &h, &err, NULL), CN_ECONFIG);
	snprintf(dsn, sizeof dsn, "%s replication=database", h_env.dsn);
	assert_int_equal(h_open(dsn, 1, 1000, false, &h, &err, NULL), CN_ECONFIG);
	assert_int_equal(h_open(h_env.dsn, 1, 1000, false, &h, &err, "schema", "x", NULL), CN_ECONFIG);
	assert_non_null(strstr(err.message, "unknown option 'schema'"));
	/* the user's own session options are kept; the driver's win where they clash */
	snprintf(dsn, sizeof dsn, "%s options='-c work_mem=8MB -c DateStyle=German'", h_env.dsn);
	assert_int_equal(h_open(dsn, 0, 1000, false, &h, &err, NULL), CN_OK);
	char v[64];
	assert_int_equal(h_scalar(h, "SELECT current_setting('work_mem') || ' ' || "
				     "current_setting('DateStyle')", v, sizeof v), CN_OK);
	assert_string_equal(v, "T:8MB ISO, YMD");
	h_env.api->close(h);
}

#define STATE_QUERY                                                                        \
	"SELECT current_setting('search_path'), current_setting('work_mem'), "             \
	"current_setting('TimeZone'), current_setting('DateStyle'), "                       \
	"current_setting('transaction_read_only'), "                                        \
	"(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), " \
	"(SELECT count(*) FROM pg_prepared_statements), "                                   \
	"(SELECT count(*) FROM pg_cursors WHERE name <> ''), "                              \
	"(SELECT count(*) FROM pg_listening_channels()), pg_backend_pid()"

/* Queries that would leave something in the session if nothing reset it.
 * They run through execute() without check(), as the superuser, so only the
 * transaction's rollback and DISCARD ALL stand in the way. */
static const char *const stateful[] = {
	"SELECT set_config('search_path', 'evil, public', false)",
	"SELECT set_config('work_mem', '1MB', false)",
	"SELECT set_config('TimeZone', 'America/New_York', false)",
	"SELECT pg_advisory_lock(4242)",
	"SELECT pg_advisory_lock_shared(4243), pg_try_advisory_lock(4244)",
};

static void test_session_state_is_reset(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 5000, h_env.super_dsn);
	char first_pid[32] = "";
	for (int round = 0; round < 20; round++) {
		struct h_result r;
		struct cn_error err = {0};
		const char *sql = stateful[round % (sizeof stateful / sizeof stateful[0])];
		if (h_exec(h, sql, NULL, 0, 5000, 0, &r, &err) != CN_OK)
			fail_msg("%s: %s", sql, err.message);
		h_result_free(&r);
		assert_int_equal(h_exec(h, STATE_QUERY, NULL, 0, 5000, 0, &r, &err), CN_OK);
		static const char *const clean[] = {"T:\"$user\", public", "T:4MB", "T:UTC",
						    "T:ISO, YMD", "T:on", "I:0", "I:0", "I:0", "I:0"};
		for (size_t i = 0; i < sizeof clean / sizeof clean[0]; i++)
			if (strcmp(h_cell(&r, 0, i), clean[i]))
				fail_msg("after '%s': column %zu is '%s', expected '%s'", sql, i + 1,
					 h_cell(&r, 0, i), clean[i]);
		/* one connection all along: the reset, not a reconnect, cleaned it */
		if (!first_pid[0])
			snprintf(first_pid, sizeof first_pid, "%s", h_cell(&r, 0, 9));
		assert_string_equal(h_cell(&r, 0, 9), first_pid);
		h_result_free(&r);
	}
	/* between requests the backend is idle, outside any transaction, holding no lock */
	PGconn *su = h_super();
	assert_non_null(su);
	char sql[512];
	snprintf(sql, sizeof sql, "SELECT state || ' ' || coalesce(xact_start::text, 'no-xact') || ' ' "
		 "|| (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid) FROM pg_stat_activity a "
		 "WHERE pid = %s", first_pid + 2);
	char *v = h_super_value(su, sql);
	assert_non_null(v);
	assert_string_equal(v, "idle no-xact 0");
	free(v);
	PQfinish(su);
	/* the guard refuses them in the first place */
	for (size_t i = 0; i < sizeof stateful / sizeof stateful[0]; i++) {
		struct cn_error err = {0};
		assert_int_equal(h_env.api->check(h, stateful[i], &err), CN_EREJECTED);
	}
	h_env.api->close(h);
}

/* A query that takes a session-level advisory lock and then fails: the
 * server skips the rest of the batch, so the driver must run the reset on its
 * own before the connection is reused, and reuse it (same backend). */
static void test_session_state_is_reset_after_an_error(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 5000, h_env.super_dsn);
	static const char *const failing[] = {
		"SELECT pg_advisory_lock(4245), 1 / 0",
		"SELECT pg_advisory_lock(4246), set_config('work_mem', '1MB', false), count(*) / 0 FROM pg_class",
		"SELECT pg_advisory_lock(4247), x FROM (VALUES ('a')) v(x) WHERE x::int > 0",
	};
	char first_pid[32] = "";
	for (int round = 0; round < 6; round++) {
		const char *sql = failing[round % (sizeof failing / sizeof failing[0])];
		struct h_result r;
		struct cn_error err = {0};
		int rc = h_exec(h, sql, NULL, 0, 5000, 0, &r, &err);
		h_result_free(&r);
		if (rc == CN_OK)
			fail_msg("'%s' was expected to fail", sql);
		assert_non_null(strstr(err.message, round % 3 == 2 ? "invalid input syntax" : "division by zero"));
		assert_int_equal(h_exec(h, STATE_QUERY, NULL, 0, 5000, 0, &r, &err), CN_OK);
		assert_string_equal(h_cell(&r, 0, 1), "T:4MB");
		assert_string_equal(h_cell(&r, 0, 5), "I:0"); /* no advisory lock left */
		if (!first_pid[0])
			snprintf(first_pid, sizeof first_pid, "%s", h_cell(&r, 0, 9));
		assert_string_equal(h_cell(&r, 0, 9), first_pid);
		h_result_free(&r);
	}
	h_env.api->close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_sink_stops_a_huge_result),
		cmocka_unit_test(test_big_rows_recycle_the_connection),
		cmocka_unit_test(test_sink_error_stops_the_query),
		cmocka_unit_test(test_timeout_cancels_on_the_server),
		cmocka_unit_test(test_client_deadline_when_the_server_hangs),
		cmocka_unit_test(test_pool_exhaustion_is_busy),
		cmocka_unit_test(test_cancel_at_shutdown),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_session_state_is_reset),
		cmocka_unit_test(test_session_state_is_reset_after_an_error),
		cmocka_unit_test(test_server_restart_and_outage),
	};
	return cmocka_run_group_tests(tests, h_setup, h_teardown);
}
