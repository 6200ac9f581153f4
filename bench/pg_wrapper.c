/*
 * pg_wrapper.c - what the PostgreSQL driver's wrapper around a query costs,
 * on the client and on the server, measured on one connection.
 *
 * The same parameterized query runs N times per variant, one after another on
 * one libpq connection, and for each variant the tool prints the wall time,
 * its own CPU (getrusage) and the server backend's CPU (/proc/<backend
 * pid>/stat) per query. Both processes are measured by their own CPU clocks,
 * so the differences between variants are the wrapper's cost even on a busy
 * machine. Each variant runs twice, interleaved, to show the noise.
 *
 * Variants:
 *   bare         the query alone (Parse/Bind/Describe/Execute/Sync), as
 *                pgbench -M extended sends it
 *   begin_rb     BEGIN READ ONLY ...; query; ROLLBACK; Sync
 *   driver       BEGIN READ ONLY ...; query; ROLLBACK; DISCARD ALL; Sync: the
 *                driver's batch (drivers/postgres/pg_exec.c), single-row mode
 *   three_syncs  BEGIN; query; Sync; ROLLBACK; Sync; DISCARD ALL; Sync with the
 *                socket corked while written: the driver's earlier batch
 *
 * usage: pg_wrapper CONNINFO QUERY PARAM_HI [N]
 *   QUERY takes one parameter, a random integer from 1 to PARAM_HI.
 * Prints one key=value line per variant and round; exit 1 on any error.
 */
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BEGIN_SQL "BEGIN TRANSACTION READ ONLY ISOLATION LEVEL REPEATABLE READ"

static PGconn *conn;
static const char *query;
static long param_hi;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The backend's user+system CPU seconds, or -1 when /proc cannot tell
 * (a server on another machine or in another PID namespace). */
static double backend_cpu_s(void)
{
	char path[64], line[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", PQbackendPID(conn));
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(line, 1, sizeof line - 1, f);
	fclose(f);
	line[n] = '\0';
	const char *p = strrchr(line, ')');
	unsigned long ut = 0, st = 0;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void die(const char *what)
{
	fprintf(stderr, "pg_wrapper: %s: %s", what, PQerrorMessage(conn));
	exit(1);
}

static void send_sql(const char *sql)
{
	if (!PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0))
		die(sql);
}

static void send_query(bool single_row)
{
	char p[24];
	snprintf(p, sizeof p, "%ld", 1 + random() % param_hi);
	const char *v[1] = {p};
	if (!PQsendQueryParams(conn, query, 1, NULL, v, NULL, NULL, 0))
		die("the query");
	if (single_row && !PQsetSingleRowMode(conn))
		die("single-row mode");
}

static void sync_or_die(void)
{
	if (!PQpipelineSync(conn))
		die("Sync");
}

/* Reads results until the syncs-th PIPELINE_SYNC (0: outside a pipeline,
 * until the end). Returns the rows seen. */
static long drain(int syncs)
{
	long rows = 0;
	int seen = 0;
	for (;;) {
		PGresult *r = PQgetResult(conn);
		if (!r) {
			if (syncs == 0)
				return rows;
			continue;
		}
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE)
			rows += PQntuples(r);
		else if (st == PGRES_FATAL_ERROR)
			die(PQresultErrorMessage(r));
		PQclear(r);
		if (st == PGRES_PIPELINE_SYNC && ++seen == syncs)
			break;
	}
	if (!PQexitPipelineMode(conn))
		die("leaving pipeline mode");
	return rows;
}

static long v_bare(void)
{
	send_query(false);
	return drain(0);
}

/* BEGIN READ ONLY ...; query; ROLLBACK; [DISCARD ALL;] Sync */
static long one_sync(bool discard)
{
	if (!PQenterPipelineMode(conn))
		die("pipeline mode");
	send_sql(BEGIN_SQL);
	send_query(true);
	send_sql("ROLLBACK");
	if (discard)
		send_sql("DISCARD ALL");
	sync_or_die();
	return drain(1);
}

static long v_begin_rb(void) { return one_sync(false); }
static long v_driver(void) { return one_sync(true); }

static void cork(int on)
{
	(void)setsockopt(PQsocket(conn), IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

static long v_three_syncs(void)
{
	cork(1);
	if (!PQenterPipelineMode(conn))
		die("pipeline mode");
	send_sql(BEGIN_SQL);
	send_query(true);
	sync_or_die();
	send_sql("ROLLBACK");
	sync_or_die();
	send_sql("DISCARD ALL");
	sync_or_die();
	cork(0);
	return drain(3);
}

static const struct variant {
	const char *name;
	long (*run)(void);
} variants[] = {
	{"bare", v_bare},
	{"begin_rb", v_begin_rb},
	{"driver", v_driver},
	{"three_syncs", v_three_syncs},
};

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: pg_wrapper CONNINFO QUERY PARAM_HI [N]\n");
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
		die("connect");
	query = argv[2];
	param_hi = atol(argv[3]);
	long n = argc > 4 ? atol(argv[4]) : 5000;
	if (param_hi < 1 || n < 1) {
		fprintf(stderr, "pg_wrapper: PARAM_HI and N must be positive\n");
		return 2;
	}
	for (int round = 1; round <= 2; round++) {
		for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
			const struct variant *v = &variants[i];
			for (int w = 0; w < 200; w++)
				v->run();
			double t0 = now_s(), c0 = self_cpu_s(), s0 = backend_cpu_s();
			long rows = 0;
			for (long k = 0; k < n; k++)
				rows += v->run();
			double t1 = now_s(), c1 = self_cpu_s(), s1 = backend_cpu_s();
			char server[32] = "-";
			if (s0 >= 0 && s1 >= 0)
				snprintf(server, sizeof server, "%.1f", (s1 - s0) * 1e6 / (double)n);
			printf("pg_wrapper variant=%s round=%d n=%ld rows_per_query=%.1f wall_us=%.1f "
			       "client_cpu_us=%.1f server_cpu_us=%s\n",
			       v->name, round, n, (double)rows / (double)n, (t1 - t0) * 1e6 / (double)n,
			       (c1 - c0) * 1e6 / (double)n, server);
		}
	}
	PQfinish(conn);
	return 0;
}
