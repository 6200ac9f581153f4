/* test_postgres_state.c - the execution store's PostgreSQL backend
 * (state.backend: postgres) on the real PostgreSQL of tests/support/pg.sh.
 * Every test gets a database of its own (CREATE DATABASE), so they are
 * independent and start from no tables at all. Two store handles stand for
 * two replicas sharing the database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "execution_store.h"
#include "pg_harness.h"

#define RACE_IDS 1000
#define RACE_THREADS 4

static char dbname[64];
static char dsn[1024];

static void super_exec_on(const char *db, const char *sql)
{
	char conninfo[1024];
	snprintf(conninfo, sizeof conninfo, "%s%s%s", h_env.super_dsn, db ? " dbname=" : "", db ? db : "");
	PGconn *c = PQconnectdb(conninfo);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

/* The first value of sql in the test's database. */
static long long db_value(const char *sql)
{
	char conninfo[1024];
	snprintf(conninfo, sizeof conninfo, "%s dbname=%s", h_env.super_dsn, dbname);
	PGconn *c = PQconnectdb(conninfo);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	char *v = h_super_value(c, sql);
	PQfinish(c);
	assert_non_null(v);
	long long n = atoll(v);
	free(v);
	return n;
}

/* A database of the test's own, and dsn pointing at it. */
static int fresh_db(void **state)
{
	(void)state;
	static int seq;
	snprintf(dbname, sizeof dbname, "cn_state_%d_%d", (int)getpid(), ++seq);
	char sql[128];
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
	super_exec_on(NULL, sql);
	snprintf(dsn, sizeof dsn, "%s dbname=%s", h_env.super_dsn, dbname);
	return 0;
}

static int drop_db(void **state)
{
	(void)state;
	char sql[128];
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
	super_exec_on(NULL, sql);
	return 0;
}

static struct exec_store *open_store(uint32_t pool)
{
	struct exec_store *s = NULL;
	struct cn_error err = {0};
	struct exec_store_opts o = {.dsn = dsn, .pool = pool};
	if (exec_store_open("/nonexistent/state.db", &o, &s, &err))
		fail_msg("open: %s", err.message);
	assert_string_equal(exec_store_backend(s), "postgres");
	return s;
}

static enum exec_claim claim(struct exec_store *s, const char *id, uint32_t wait_ms, char **body, size_t *len,
			     int *status)
{
	enum exec_claim st;
	struct cn_error err = {0};
	char *b = NULL;
	size_t l = 0;
	int sc = 0;
	if (exec_store_claim(s, id, wait_ms, &st, &sc, &b, &l, &err))
		fail_msg("claim %s: %s", id, err.message);
	if (body) {
		*body = b;
		*len = l;
		*status = sc;
	} else {
		free(b);
	}
	return st;
}

static void finish(struct exec_store *s, const char *id, int status, const char *body, size_t len)
{
	struct cn_error err = {0};
	if (exec_store_finish(s, id, status, body, len, &err))
		fail_msg("finish %s: %s", id, err.message);
}

/* ---- migrations ---- */

static void *open_thread(void *arg)
{
	struct exec_store **out = arg;
	struct cn_error err = {0};
	struct exec_store_opts o = {.dsn = dsn, .pool = 2};
	if (exec_store_open("/nonexistent/state.db", &o, out, &err)) {
		fprintf(stderr, "concurrent open: %s\n", err.message);
		*out = NULL;
	}
	return NULL;
}

static void test_migrations_concurrent(void **state)
{
	(void)state;
	pthread_t t[3];
	struct exec_store *s[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, open_thread, &s[i]), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 3; i++)
		assert_non_null(s[i]);
	assert_int_equal(db_value("SELECT count(*) FROM interactor_connector.schema_version"), 2);
	assert_int_equal(db_value("SELECT max(version) FROM interactor_connector.schema_version"), 2);
	for (int i = 0; i < 3; i++)
		exec_store_close(s[i]);
	/* opening again finds nothing to do */
	exec_store_close(open_store(1));
	assert_int_equal(db_value("SELECT count(*) FROM interactor_connector.schema_version"), 2);
	/* a database migrated by a newer connector is refused, saying what to do */
	super_exec_on(dbname, "INSERT INTO interactor_connector.schema_version (version) VALUES (99)");
	struct exec_store *s2 = NULL;
	struct cn_error err = {0};
	struct exec_store_opts o = {.dsn = dsn};
	assert_int_not_equal(exec_store_open("/nonexistent/state.db", &o, &s2, &err), CN_OK);
	assert_non_null(strstr(err.message, "upgrade this connector"));
}

/* ---- claims and answers ---- */

static void test_claim_finish_replay(void **state)
{
	(void)state;
	struct exec_store *a = open_store(2), *b = open_store(2);
	static const char answer[] = "{\"result\":\"\xc3\xa9\"}\0tail";
	size_t alen = sizeof answer - 1;
	assert_int_equal(claim(a, "exec_1", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	/* the other replica sees it running, and waits up to wait_ms for it */
	int64_t t0 = h_now_ms();
	assert_int_equal(claim(b, "exec_1", 150, NULL, NULL, NULL), EXEC_RUNNING);
	assert_true(h_now_ms() - t0 >= 140);
	enum exec_seen seen;
	char *body;
	size_t len;
	int status;
	struct cn_error err = {0};
	assert_int_equal(exec_store_peek(b, "exec_1", &seen, &status, &body, &len, &err), CN_OK);
	assert_int_equal(seen, EXEC_SEEN_RUNNING);
	finish(a, "exec_1", 200, answer, alen);
	/* replayed byte for byte, by both */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(claim(i ? b : a, "exec_1", 0, &body, &len, &status), EXEC_DONE);
		assert_int_equal(status, 200);
		assert_int_equal(len, alen);
		assert_memory_equal(body, answer, alen);
		free(body);
	}
	assert_int_equal(exec_store_peek(b, "exec_1", &seen, &status, &body, &len, &err), CN_OK);
	assert_int_equal(seen, EXEC_SEEN_DONE);
	assert_memory_equal(body, answer, alen);
	free(body);
	/* an answer from a process that holds no claim is refused, and the first stays */
	assert_int_equal(exec_store_finish(b, "exec_1", 500, "other", 5, &err), CN_EUNAVAILABLE);
	assert_non_null(strstr(err.message, "holds no claim"));
	assert_int_equal(claim(b, "exec_1", 0, &body, &len, &status), EXEC_DONE);
	assert_int_equal(status, 200);
	free(body);
	/* an empty answer is an answer */
	assert_int_equal(claim(a, "exec_empty", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	finish(a, "exec_empty", 204, NULL, 0);
	assert_int_equal(claim(b, "exec_empty", 0, &body, &len, &status), EXEC_DONE);
	assert_int_equal(len, 0);
	assert_int_equal(status, 204);
	free(body);
	/* a duplicate waiting on the other replica gets the answer when it comes */
	assert_int_equal(claim(a, "exec_wait", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	struct exec_store_stats st;
	exec_store_stats(a, &st);
	finish(a, "exec_wait", 200, "late", 4);
	assert_int_equal(claim(b, "exec_wait", 2000, &body, &len, &status), EXEC_DONE);
	assert_memory_equal(body, "late", 4);
	free(body);
	exec_store_close(a);
	exec_store_close(b);
}

struct racer {
	struct exec_store *s;
	_Atomic int *claims;
	int seed;
};

static void *race_thread(void *arg)
{
	struct racer *r = arg;
	for (int k = 0; k < RACE_IDS; k++) {
		int i = (k * 7 + r->seed * 131) % RACE_IDS; /* each thread in its own order */
		char id[32];
		snprintf(id, sizeof id, "race_%d", i);
		enum exec_claim st;
		int status;
		char *body = NULL;
		size_t len;
		struct cn_error err = {0};
		if (exec_store_claim(r->s, id, 0, &st, &status, &body, &len, &err)) {
			fprintf(stderr, "claim %s: %s\n", id, err.message);
			atomic_fetch_add(&r->claims[i], 100);
			continue;
		}
		free(body);
		if (st != EXEC_CLAIMED)
			continue;
		atomic_fetch_add(&r->claims[i], 1);
		if (exec_store_finish(r->s, id, 200, id, strlen(id), &err))
			fprintf(stderr, "finish %s: %s\n", id, err.message);
	}
	return NULL;
}

/* Two replicas, four threads each, every thread claiming all ids: each id
 * is claimed exactly once. */
static void test_race_two_replicas(void **state)
{
	(void)state;
	struct exec_store *s[2] = {open_store(4), open_store(4)};
	static _Atomic int claims[RACE_IDS];
	struct racer r[2 * RACE_THREADS];
	pthread_t t[2 * RACE_THREADS];
	for (int i = 0; i < 2 * RACE_THREADS; i++) {
		r[i] = (struct racer){.s = s[i % 2], .claims = claims, .seed = i};
		assert_int_equal(pthread_create(&t[i], NULL, race_thread, &r[i]), 0);
	}
	for (int i = 0; i < 2 * RACE_THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < RACE_IDS; i++)
		if (atomic_load(&claims[i]) != 1)
			fail_msg("race_%d was claimed %d times", i, atomic_load(&claims[i]));
	assert_int_equal(db_value("SELECT count(*) FROM interactor_connector.executions WHERE state = 1"),
			 RACE_IDS);
	exec_store_close(s[0]);
	exec_store_close(s[1]);
}

static time_t later_clock(void)
{
	return time(NULL) + 300;
}

static void test_stale_takeover_and_release(void **state)
{
	(void)state;
	struct exec_store *a = open_store(1), *b = open_store(1);
	char *body;
	size_t len;
	int status;
	struct cn_error err = {0};
	/* a claims and hangs; b, 300 s later, takes the claim over */
	assert_int_equal(claim(a, "exec_stale", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	assert_int_equal(claim(b, "exec_stale", 0, NULL, NULL, NULL), EXEC_RUNNING);
	exec_store_set_clock(b, later_clock);
	assert_int_equal(claim(b, "exec_stale", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	/* a's release (its 429, say) does not undo b's claim */
	assert_int_equal(exec_store_release(a, "exec_stale", &err), CN_OK);
	assert_int_equal(db_value("SELECT count(*) FROM interactor_connector.executions WHERE id = 'exec_stale'"), 1);
	finish(b, "exec_stale", 200, "from b", 6);
	assert_int_equal(claim(a, "exec_stale", 0, &body, &len, &status), EXEC_DONE);
	assert_memory_equal(body, "from b", 6);
	free(body);
	/* a released claim runs again on the retry, on either replica */
	exec_store_set_clock(b, NULL);
	assert_int_equal(claim(a, "exec_rel", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	assert_int_equal(exec_store_release(a, "exec_rel", &err), CN_OK);
	assert_int_equal(claim(b, "exec_rel", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	/* a peek does not count a stale claim as running */
	enum exec_seen seen;
	exec_store_set_clock(a, later_clock);
	assert_int_equal(exec_store_peek(a, "exec_rel", &seen, &status, &body, &len, &err), CN_OK);
	assert_int_equal(seen, EXEC_SEEN_NONE);
	exec_store_close(a);
	exec_store_close(b);
}

/* A live replica keeps its claim however long its query runs (its
 * heartbeat); one that stops refreshing loses it to another, and its late
 * answer is refused (the other's is the one kept); an answer the database
 * could not take is kept with its claim and stored when the database is
 * back, so a retry replays it instead of running it again. */
static void test_heartbeat_and_kept_answer(void **state)
{
	(void)state;
	struct exec_store *a = open_store(2), *b = open_store(2);
	exec_store_set_stale(a, 3);
	exec_store_set_stale(b, 3);
	char *body;
	size_t len;
	int status;
	struct cn_error err = {0};
	assert_int_equal(claim(a, "hb", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	h_sleep_ms(4500); /* past stale_s: only the heartbeat keeps it */
	assert_int_equal(claim(b, "hb", 0, NULL, NULL, NULL), EXEC_RUNNING);
	finish(a, "hb", 200, "from a", 6);

	/* a claim no longer refreshed (a2 beats every 200 s) is taken over */
	struct exec_store *a2 = open_store(1);
	exec_store_set_stale(a2, 600);
	assert_int_equal(claim(a2, "lost", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	h_sleep_ms(4500);
	assert_int_equal(claim(b, "lost", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	assert_int_equal(exec_store_finish(a2, "lost", 200, "late", 4, &err), CN_EUNAVAILABLE);
	assert_non_null(strstr(err.message, "taken over"));
	finish(b, "lost", 200, "from b", 6);
	assert_int_equal(claim(a2, "lost", 0, &body, &len, &status), EXEC_DONE);
	assert_memory_equal(body, "from b", 6);
	free(body);
	exec_store_close(a2);

	/* the database refuses: the answer is kept, and stored once it is back */
	assert_int_equal(claim(a, "kept", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	char sql[512];
	snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS false", dbname);
	super_exec_on(NULL, sql);
	snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
		 " AND pid <> pg_backend_pid()", dbname);
	super_exec_on(NULL, sql);
	assert_int_equal(exec_store_finish(a, "kept", 200, "kept answer", 11, &err), CN_EUNAVAILABLE);
	assert_non_null(strstr(err.message, "is kept"));
	h_sleep_ms(1500);
	snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true", dbname);
	super_exec_on(NULL, sql);
	/* b waits for it: a's keeper stores it within a second or two */
	assert_int_equal(claim(b, "kept", 10000, &body, &len, &status), EXEC_DONE);
	assert_int_equal(len, 11);
	assert_memory_equal(body, "kept answer", 11);
	free(body);
	exec_store_close(a);
	exec_store_close(b);
}

/* ---- expiry ---- */

static void test_expiry_batches(void **state)
{
	(void)state;
	struct exec_store *a = open_store(1), *b = open_store(1);
	/* 2,500 answers of a long time ago, and a fresh one */
	super_exec_on(dbname, "INSERT INTO interactor_connector.executions"
			      " SELECT 'old_' || g, 1, 200, 'x', 1, 1, 0 FROM generate_series(1, 2500) g");
	assert_int_equal(claim(a, "fresh", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	finish(a, "fresh", 200, "y", 1);
	/* one replica at a time: with the lock held elsewhere, nothing is done here */
	char conninfo[1024];
	snprintf(conninfo, sizeof conninfo, "%s dbname=%s", h_env.super_dsn, dbname);
	PGconn *other = PQconnectdb(conninfo);
	assert_int_equal(PQstatus(other), CONNECTION_OK);
	PQclear(PQexec(other, "SELECT pg_advisory_lock(1668178260, 2)"));
	uint64_t removed = 99;
	struct cn_error err = {0};
	assert_int_equal(exec_store_expire(b, time(NULL), &removed, &err), CN_OK);
	assert_int_equal(removed, 0);
	PQfinish(other);
	assert_int_equal(exec_store_expire(b, time(NULL), &removed, &err), CN_OK);
	assert_int_equal(removed, 2500);
	assert_int_equal(db_value("SELECT count(*) FROM interactor_connector.executions"), 1);
	/* an expired answer is treated as absent: a later claim runs it again */
	super_exec_on(dbname, "UPDATE interactor_connector.executions SET updated_at = 1");
	assert_int_equal(claim(b, "fresh", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	exec_store_close(a);
	exec_store_close(b);
}

/* ---- snapshots and the audit log ---- */

struct seen_records {
	int n;
	int64_t last_at;
	bool ordered;
};

static int count_record(void *ctx, const struct audit_record *r)
{
	struct seen_records *s = ctx;
	if (r->at_ms < s->last_at)
		s->ordered = false;
	s->last_at = r->at_ms;
	if (s->n == 0) {
		assert_string_equal(r->execution_id, "exec_a0");
		assert_string_equal(r->tool, "run_query");
		assert_null(r->statement);
		assert_int_equal(r->rows, -1);
		assert_int_equal(r->status, 200);
	}
	s->n++;
	return 0;
}

static void test_snapshots_and_audit(void **state)
{
	(void)state;
	struct exec_store *a = open_store(2), *b = open_store(2);
	struct cn_error err = {0};
	int64_t id1, id2, id3;
	assert_int_equal(exec_store_snapshot_add(a, "sales", 100, "{\"v\":1}", 7, NULL, NULL, 10, &id1, &err), CN_OK);
	assert_int_equal(exec_store_snapshot_add(a, "sales", 200, "{\"v\":2}", 7, "[\"diff\"]", "[]", 10, &id2, &err),
			 CN_OK);
	/* the other replica found the same change: recorded once */
	assert_int_equal(exec_store_snapshot_add(b, "sales", 210, "{\"v\":2}", 7, "[\"diff\"]", "[1]", 10, &id3, &err),
			 CN_OK);
	assert_int_equal(id3, id2);
	assert_int_equal(exec_store_snapshot_touch(b, id2, 300, "[2]", &err), CN_OK);
	struct exec_snapshot snap;
	bool found;
	assert_int_equal(exec_store_snapshot_get(b, "sales", false, &snap, &found, &err), CN_OK);
	assert_true(found);
	assert_int_equal(snap.id, id2);
	assert_int_equal(snap.checked_at, 300);
	assert_false(snap.baseline);
	assert_string_equal(snap.schema, "{\"v\":2}");
	assert_string_equal(snap.diff, "[\"diff\"]");
	assert_string_equal(snap.drift, "[2]");
	exec_snapshot_clear(&snap);
	assert_int_equal(exec_store_snapshot_get(b, "sales", true, &snap, &found, &err), CN_OK);
	assert_true(found && snap.baseline && snap.id == id1);
	exec_snapshot_clear(&snap);
	assert_int_equal(exec_store_snapshot_get(b, "nothing", true, &snap, &found, &err), CN_OK);
	assert_false(found);
	struct exec_snapshot *hist;
	size_t n;
	assert_int_equal(exec_store_snapshot_history(a, "sales", 10, &hist, &n, &err), CN_OK);
	assert_int_equal(n, 2);
	assert_int_equal(hist[0].id, id2);
	assert_null(hist[0].schema);
	exec_snapshots_free(hist, n);

	/* 300 records through the writer, read back in order by the other replica */
	for (int i = 0; i < 300; i++) {
		char exec_id[32];
		snprintf(exec_id, sizeof exec_id, "exec_a%d", i);
		struct audit_record r = {.at_ms = 1000 + i, .execution_id = exec_id, .assistant_id = "asst",
					 .room_id = "room", .tool = "run_query", .source = "sales",
					 .fingerprint = "0123456789abcdef", .rows = i % 2 ? 3 : -1, .bytes = 10,
					 .status = 200, .duration_us = 5};
		assert_int_equal(exec_store_audit_add(a, &r, &err), CN_OK);
	}
	exec_store_flush(a);
	struct audit_filter f = {0};
	struct seen_records seen = {.ordered = true};
	assert_int_equal(exec_store_audit_query(b, &f, count_record, &seen, &err), CN_OK);
	assert_int_equal(seen.n, 300);
	assert_true(seen.ordered);
	uint64_t removed;
	assert_int_equal(exec_store_audit_prune(b, 1100, &removed, &err), CN_OK);
	assert_int_equal(removed, 100);
	exec_store_close(a);
	exec_store_close(b);
}

/* ---- a dead state database ---- */

static void test_connection_killed(void **state)
{
	(void)state;
	struct exec_store *a = open_store(2);
	struct cn_error err = {0};
	char why[600];
	assert_true(exec_store_reachable(a, why, sizeof why));
	assert_int_equal(claim(a, "k1", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	/* its sessions are terminated: the next call opens a new one */
	char sql[512];
	snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
		 " AND pid <> pg_backend_pid()", dbname);
	super_exec_on(NULL, sql);
	h_sleep_ms(100);
	finish(a, "k1", 200, "ok", 2);
	/* no connection possible: calls fail, with no password in the message */
	snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS false", dbname);
	super_exec_on(NULL, sql);
	snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
		 " AND pid <> pg_backend_pid()", dbname);
	super_exec_on(NULL, sql);
	enum exec_claim st;
	int status;
	char *body = NULL;
	size_t len;
	int rc = exec_store_claim(a, "k2", 0, &st, &status, &body, &len, &err);
	assert_int_equal(rc, CN_EUNAVAILABLE);
	assert_non_null(strstr(err.message, "state store"));
	const char *pw = strstr(h_env.super_dsn, "password=");
	assert_non_null(pw);
	assert_null(strstr(err.message, pw + strlen("password=")));
	assert_int_not_equal(exec_store_finish(a, "k2", 200, "x", 1, &err), CN_OK);
	assert_false(exec_store_reachable(a, why, sizeof why));
	assert_null(strstr(why, pw + strlen("password=")));
	/* and it comes back */
	snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true", dbname);
	super_exec_on(NULL, sql);
	assert_true(exec_store_reachable(a, why, sizeof why));
	assert_int_equal(claim(a, "k2", 0, NULL, NULL, NULL), EXEC_CLAIMED);
	assert_int_equal(claim(a, "k1", 0, &body, &len, &status), EXEC_DONE);
	free(body);
	exec_store_close(a);
}

/* A bad dsn is refused without quoting it. */
static void test_bad_dsn(void **state)
{
	(void)state;
	struct exec_store *s = NULL;
	struct cn_error err = {0};
	struct exec_store_opts o = {.dsn = "postgresql://u:s3cretpw@127.0.0.1:1/x?bogus=1"};
	assert_int_not_equal(exec_store_open("/nonexistent/state.db", &o, &s, &err), CN_OK);
	assert_null(strstr(err.message, "s3cretpw"));
	o.dsn = "postgresql://u:s3cretpw@127.0.0.1:1/x?connect_timeout=2";
	assert_int_equal(exec_store_open("/nonexistent/state.db", &o, &s, &err), CN_EUNAVAILABLE);
	assert_null(strstr(err.message, "s3cretpw"));
	assert_non_null(strstr(err.message, "host 127.0.0.1 port 1 database x user u"));
}

/* ---- shared callback secrets ---- */

static atomic_int beats;
static void count_beat(void *ctx)
{
	(void)ctx;
	atomic_fetch_add(&beats, 1);
}

static void test_secrets_and_replicas(void **state)
{
	(void)state;
	struct exec_store *a = open_store(2), *b = open_store(2);
	struct cn_error err = {0};
	char *doc = NULL;
	int64_t v = -5, v2 = 0;
	/* none yet */
	assert_int_equal(exec_store_secrets_get(a, -1, &doc, &v, &err), CN_OK);
	assert_null(doc);
	assert_int_equal(v, 0);
	/* the first put expects version 0; a second first put loses */
	assert_int_equal(exec_store_secrets_put(a, "{\"version\": 1}", 0, &v, &err), CN_OK);
	assert_int_equal(v, 1);
	assert_int_equal(exec_store_secrets_put(b, "{\"version\": 1, \"x\": 2}", 0, &v2, &err), CN_EBUSY);
	assert_non_null(strstr(err.message, "another rotate-secret"));
	/* compare-and-set: the version read is the one replaced */
	assert_int_equal(exec_store_secrets_put(b, "{\"version\": 1, \"secrets\": []}", 1, &v2, &err), CN_OK);
	assert_int_equal(v2, 2);
	assert_int_equal(exec_store_secrets_put(a, "{\"version\": 1}", 1, &v, &err), CN_EBUSY);
	/* a version already loaded is not sent again */
	assert_int_equal(exec_store_secrets_get(a, 2, &doc, &v, &err), CN_OK);
	assert_null(doc);
	assert_int_equal(v, 2);
	assert_int_equal(exec_store_secrets_get(a, 1, &doc, &v, &err), CN_OK);
	assert_string_equal(doc, "{\"version\": 1, \"secrets\": []}");
	free(doc);

	/* replicas: none, then a at 1 and b at 2 */
	uint32_t live = 9, loaded = 9;
	assert_int_equal(exec_store_replicas(a, 10, 2, &live, &loaded, &err), CN_OK);
	assert_int_equal(live, 0);
	assert_int_equal(loaded, 0);
	assert_int_equal(exec_store_replica_report(a, 1, &err), CN_OK);
	assert_int_equal(exec_store_replica_report(b, 2, &err), CN_OK);
	assert_int_equal(exec_store_replicas(a, 10, 2, &live, &loaded, &err), CN_OK);
	assert_int_equal(live, 2);
	assert_int_equal(loaded, 1);
	assert_int_equal(exec_store_replica_report(a, 2, &err), CN_OK);
	assert_int_equal(exec_store_replicas(a, 10, 2, &live, &loaded, &err), CN_OK);
	assert_int_equal(loaded, 2);
	/* a replica not seen within live_s does not count */
	super_exec_on(
	    dbname,
	    "UPDATE interactor_connector.replicas SET seen_at = seen_at - 60 WHERE secrets_version = 2"
	    " AND id = (SELECT min(id) FROM interactor_connector.replicas)");
	assert_int_equal(exec_store_replicas(a, 10, 2, &live, &loaded, &err), CN_OK);
	assert_int_equal(live, 1);
	/* the hourly expiry forgets a replica not seen for a day */
	super_exec_on(dbname, "INSERT INTO interactor_connector.replicas VALUES (42, 1, 1000)");
	uint64_t removed = 9;
	assert_int_equal(exec_store_expire(a, time(NULL), &removed, &err), CN_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(db_value("SELECT count(*) FROM interactor_connector.replicas WHERE id = 42"), 0);
	assert_int_equal(db_value("SELECT count(*) FROM interactor_connector.replicas"), 2);
	/* the beat runs on the store's thread; a closed store's row is gone */
	atomic_store(&beats, 0);
	exec_store_set_beat(a, count_beat, NULL);
	for (int i = 0; i < 50 && atomic_load(&beats) == 0; i++)
		usleep(100000);
	exec_store_set_beat(a, NULL, NULL);
	assert_true(atomic_load(&beats) >= 1);
	exec_store_close(b);
	assert_int_equal(db_value("SELECT count(*) FROM interactor_connector.replicas"), 1);
	exec_store_close(a);
	assert_int_equal(db_value("SELECT count(*) FROM interactor_connector.replicas"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_migrations_concurrent, fresh_db, drop_db),
	    cmocka_unit_test_setup_teardown(test_claim_finish_replay, fresh_db, drop_db),
	    cmocka_unit_test_setup_teardown(test_race_two_replicas, fresh_db, drop_db),
	    cmocka_unit_test_setup_teardown(test_stale_takeover_and_release, fresh_db, drop_db),
	    cmocka_unit_test_setup_teardown(test_heartbeat_and_kept_answer, fresh_db, drop_db),
	    cmocka_unit_test_setup_teardown(test_expiry_batches, fresh_db, drop_db),
	    cmocka_unit_test_setup_teardown(test_snapshots_and_audit, fresh_db, drop_db),
	    cmocka_unit_test_setup_teardown(test_connection_killed, fresh_db, drop_db),
	    cmocka_unit_test_setup_teardown(test_secrets_and_replicas, fresh_db, drop_db),
	    cmocka_unit_test(test_bad_dsn),
	};
	return cmocka_run_group_tests(tests, h_setup, h_teardown);
}
