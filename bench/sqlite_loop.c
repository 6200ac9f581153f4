/*
 * sqlite_loop.c - the baseline for bench/sqlite.sh: one parameterized SELECT
 * run in a tight loop straight through the sqlite3 C API, on one thread,
 * reading every column of every row as text (roughly what any JSON answer
 * needs). Two modes, each for the given number of seconds:
 *
 *   reuse    prepare once, then bind / step to the end / reset
 *   prepare  prepare, bind, step, finalize every time (what a server does
 *            when it does not cache statements)
 *
 * Output, per mode: "sqlite_loop mode=... queries=N qps=... us_per_query=...
 * rows_per_query=..." then a human line. Exit 0, or 1 when the database or
 * the query cannot be opened/prepared, 2 on bad usage.
 *
 * usage: sqlite_loop DB SQL PARAM [SECONDS]
 *   PARAM binds to $1: as an integer when it is one, as text otherwise.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct param {
	bool is_int;
	sqlite3_int64 i;
	const char *text;
};

static struct param param_parse(const char *s)
{
	struct param p = {.text = s};
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*s && !*end && !errno) {
		p.is_int = true;
		p.i = v;
	}
	return p;
}

static int bind_param(sqlite3_stmt *st, const struct param *p)
{
	if (p->is_int)
		return sqlite3_bind_int64(st, 1, p->i);
	return sqlite3_bind_text(st, 1, p->text, -1, SQLITE_STATIC);
}

/* Steps to the end, touching every column; returns rows, or -1 on error. */
static long drain(sqlite3_stmt *st, size_t *bytes)
{
	long rows = 0;
	int rc;
	int ncol = sqlite3_column_count(st);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (int c = 0; c < ncol; c++) {
			const unsigned char *t = sqlite3_column_text(st, c);
			if (t)
				*bytes += (size_t)sqlite3_column_bytes(st, c);
		}
		rows++;
	}
	return rc == SQLITE_DONE ? rows : -1;
}

static int run_mode(sqlite3 *db, const char *sql, const struct param *p, double secs, bool reuse)
{
	sqlite3_stmt *st = NULL;
	long queries = 0, rows = 0;
	size_t bytes = 0;
	int ret = 1;
	if (reuse && sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		goto fail;
	double t0 = now_s(), t = t0;
	while (t - t0 < secs) {
		for (int k = 0; k < 64; k++) { /* check the clock every 64 queries */
			if (!reuse && sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
				goto fail;
			if (bind_param(st, p) != SQLITE_OK)
				goto fail;
			long r = drain(st, &bytes);
			if (r < 0)
				goto fail;
			rows += r;
			queries++;
			if (reuse) {
				sqlite3_reset(st);
			} else {
				sqlite3_finalize(st);
				st = NULL;
			}
		}
		t = now_s();
	}
	double el = t - t0;
	printf("sqlite_loop mode=%s queries=%ld seconds=%.3f qps=%.1f us_per_query=%.2f "
	       "rows_per_query=%.1f bytes_per_query=%.0f\n",
	       reuse ? "reuse" : "prepare", queries, el, (double)queries / el, el * 1e6 / (double)queries,
	       (double)rows / (double)queries, (double)bytes / (double)queries);
	printf("# sqlite3 C API, %s: %.0f queries/s, %.2f us per query, %.1f rows each\n",
	       reuse ? "prepared once" : "prepared every time", (double)queries / el,
	       el * 1e6 / (double)queries, (double)rows / (double)queries);
	ret = 0;
	goto out;
fail:
	fprintf(stderr, "sqlite_loop: %s\n", sqlite3_errmsg(db));
out:
	sqlite3_finalize(st);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fputs("usage: sqlite_loop DB SQL PARAM [SECONDS]\n", stderr);
		return 2;
	}
	double secs = argc == 5 ? strtod(argv[4], NULL) : 3.0;
	if (!(secs > 0 && secs <= 600)) {
		fputs("sqlite_loop: SECONDS must be from 0 to 600\n", stderr);
		return 2;
	}
	struct param p = param_parse(argv[3]);
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "sqlite_loop: cannot open %s: %s\n", argv[1], sqlite3_errmsg(db));
		sqlite3_close(db);
		return 1;
	}
	int rc = run_mode(db, argv[2], &p, secs, true);
	if (!rc)
		rc = run_mode(db, argv[2], &p, secs, false);
	sqlite3_close(db);
	return rc;
}
