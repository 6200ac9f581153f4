/*
 * state_loop.c - what the execution store costs one callback, SQLite against
 * the shared PostgreSQL store, in-process (no HTTP, no source database):
 * exec_store_claim + exec_store_finish of a 700-byte answer under a fresh
 * execution_id, from T threads, then a replay (claim of an answered id).
 *
 * usage: state_loop sqlite DIR N T
 *        state_loop postgres DSN N T
 * Output: one line per phase, "state_loop backend=... phase=... threads=...
 * per_s=... p50_us=... p99_us=...", and for postgres the transactions the
 * database committed per execution (pg_stat_database.xact_commit, read
 * before and after: every statement of the store is one).
 * Built by bench/state.sh against its build's libcn_core.a.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "execution_store.h"

static struct exec_store *store;
static long per_thread;
static char answer[700];
static int run_no;

struct worker {
	int no;
	bool replay;
	double *lat; /* us, per_thread of them */
	int failures;
};

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	for (long i = 0; i < per_thread; i++) {
		char id[64];
		snprintf(id, sizeof id, "bench_%d_%d_%d_%ld", (int)getpid(), run_no, w->no, i);
		enum exec_claim st;
		int status;
		char *body = NULL;
		size_t len;
		struct cn_error err = {0};
		double t0 = now_us();
		int rc = exec_store_claim(store, id, 0, &st, &status, &body, &len, &err);
		if (rc == CN_OK && st == EXEC_CLAIMED && !w->replay)
			rc = exec_store_finish(store, id, 200, answer, sizeof answer, &err);
		w->lat[i] = now_us() - t0;
		free(body);
		if (rc || st != (w->replay ? EXEC_DONE : EXEC_CLAIMED))
			w->failures++;
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static long long commits(PGconn *c)
{
	if (!c)
		return 0;
	PQclear(PQexec(c, "SELECT pg_stat_clear_snapshot()"));
	PGresult *r = PQexec(c, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()");
	long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : 0;
	PQclear(r);
	return n;
}

static int phase(const char *backend, int threads, bool replay, PGconn *stats)
{
	pthread_t t[64];
	struct worker w[64];
	double *all = calloc((size_t)(per_thread * threads), sizeof *all);
	if (!all)
		return 1;
	long long c0 = commits(stats);
	double t0 = now_us();
	for (int i = 0; i < threads; i++) {
		w[i] = (struct worker){.no = i, .replay = replay, .lat = all + i * per_thread};
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	int failures = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		failures += w[i].failures;
	}
	double secs = (now_us() - t0) / 1e6;
	long n = per_thread * threads;
	qsort(all, (size_t)n, sizeof *all, cmp);
	printf("state_loop backend=%s phase=%s threads=%d n=%ld per_s=%.0f p50_us=%.0f p99_us=%.0f failures=%d",
	       backend, replay ? "replay" : "claim_finish", threads, n, n / secs, all[n / 2], all[n * 99 / 100],
	       failures);
	if (stats) {
		/* an idle backend sends its statistics within 10 s (PGSTAT_IDLE_INTERVAL) */
		sleep(11);
		printf(" commits_per_execution=%.2f", (double)(commits(stats) - c0) / (double)n);
	}
	printf("\n");
	free(all);
	return failures != 0;
}

int main(int argc, char **argv)
{
	if (argc != 5 || (strcmp(argv[1], "sqlite") && strcmp(argv[1], "postgres"))) {
		fprintf(stderr, "usage: state_loop sqlite DIR N T | state_loop postgres DSN N T\n");
		return 2;
	}
	bool pg = strcmp(argv[1], "postgres") == 0;
	int threads = atoi(argv[4]);
	if (threads < 1 || threads > 64)
		return 2;
	per_thread = atol(argv[3]) / threads;
	memset(answer, 'x', sizeof answer);
	char path[4096];
	snprintf(path, sizeof path, "%s/state_loop.db", pg ? "/nonexistent" : argv[2]);
	struct exec_store_opts o = {.dsn = pg ? argv[2] : NULL, .pool = (uint32_t)threads};
	struct cn_error err = {0};
	if (exec_store_open(path, &o, &store, &err)) {
		fprintf(stderr, "state_loop: %s\n", err.message);
		return 1;
	}
	PGconn *stats = pg ? PQconnectdb(argv[2]) : NULL;
	run_no = threads;
	int rc = phase(argv[1], threads, false, pg ? stats : NULL);
	rc |= phase(argv[1], threads, true, pg ? stats : NULL);
	PQfinish(stats);
	exec_store_close(store);
	return rc;
}
