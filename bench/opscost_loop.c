/*
 * opscost_loop.c - what the metrics and the audit log add to one callback,
 * in-process, without HTTP, a database or other tenants' noise in between:
 * the calls the request path makes, in a loop, timed by the process's CPU
 * clock (all threads: the store's writer included).
 *
 *   store        exec_store_claim + exec_store_finish of a 700-byte answer
 *                (what every callback does with the state file already)
 *   store_audit  the same, plus what an audited call adds: the statement's
 *                fingerprint and exec_store_audit_add of its record
 *   metrics_off  metrics_inflight x2, metrics_query, metrics_tool_call with
 *                metrics.enabled false (an atomic load each)
 *   metrics_on   the same calls with the registry on
 *
 * usage: opscost_loop DIR N   (DIR: where the state files go)
 * Output: one line per mode, "opscost_loop mode=... us_per_call=...", then
 * the difference lines. Rounds alternate the modes; the best of 3 is kept.
 * Built by bench/opscost.sh against build-bench/libcn_core.a.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "execution_store.h"
#include "metrics.h"

static double cpu_s(void)
{
	struct rusage r;
	getrusage(RUSAGE_SELF, &r);
	return (double)r.ru_utime.tv_sec + (double)r.ru_stime.tv_sec +
	       ((double)r.ru_utime.tv_usec + (double)r.ru_stime.tv_usec) / 1e6;
}

static const char statement[] = "SELECT * FROM orders WHERE customer_id = $1";

/* CPU us per callback's store work, with or without its audit record;
 * close() included, so every queued row is written and counted. */
static double store_loop(const char *dir, long n, bool audit, int round)
{
	char path[512], id[64];
	snprintf(path, sizeof path, "%s/loop-%d-%d.db", dir, audit, round);
	struct exec_store *s = NULL;
	struct cn_error err = {0};
	if (exec_store_open(path, NULL, &s, &err)) {
		fprintf(stderr, "opscost_loop: %s\n", err.message);
		exit(1);
	}
	char body[700];
	memset(body, 'x', sizeof body);
	double start = cpu_s();
	for (long i = 0; i < n; i++) {
		enum exec_claim st;
		int status;
		char *old;
		size_t len;
		snprintf(id, sizeof id, "exec_loop_%d_%ld", round, i);
		if (exec_store_claim(s, id, 0, &st, &status, &old, &len, &err) ||
		    exec_store_finish(s, id, 200, body, sizeof body, &err)) {
			fprintf(stderr, "opscost_loop: %s\n", err.message);
			exit(1);
		}
		if (audit) {
			char fp[AUDIT_FINGERPRINT_LEN + 1];
			audit_fingerprint(statement, sizeof statement - 1, fp);
			struct audit_record r = {.at_ms = 1765000000000LL + i, .execution_id = id,
						 .assistant_id = "asst_abc", .room_id = "room_xyz",
						 .tool = "run_query", .source = "demo", .fingerprint = fp,
						 .rows = 3, .bytes = 700, .status = 200, .duration_us = 400};
			if (exec_store_audit_add(s, &r, &err)) {
				fprintf(stderr, "opscost_loop: %s\n", err.message);
				exit(1);
			}
		}
		if (i % 64 == 0)
			usleep(100); /* requests arrive, the writer gathers them: not one endless batch */
	}
	exec_store_close(s);
	double us = (cpu_s() - start) * 1e6 / (double)n;
	char wal[600];
	snprintf(wal, sizeof wal, "%s-wal", path);
	unlink(path);
	unlink(wal);
	return us;
}

static double metrics_loop(long n, bool on)
{
	if (on)
		metrics_init();
	double start = cpu_s();
	for (long i = 0; i < n; i++) {
		metrics_inflight(1);
		metrics_query("demo", 0.0003, 3);
		metrics_inflight(-1);
		metrics_tool_call("run_query", "demo", 200, NULL, 0.0004, 700);
	}
	double us = (cpu_s() - start) * 1e6 / (double)n;
	metrics_shutdown();
	return us;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fputs("usage: opscost_loop DIR N\n", stderr);
		return 2;
	}
	long n = strtol(argv[2], NULL, 10);
	if (n < 1000)
		n = 1000;
	double best[4] = {1e9, 1e9, 1e9, 1e9};
	static const char *const names[] = {"store", "store_audit", "metrics_off", "metrics_on"};
	for (int round = 0; round < 3; round++) {
		double v[4];
		/* alternate which goes first */
		if (round % 2) {
			v[1] = store_loop(argv[1], n, true, round);
			v[0] = store_loop(argv[1], n, false, round);
		} else {
			v[0] = store_loop(argv[1], n, false, round);
			v[1] = store_loop(argv[1], n, true, round);
		}
		v[2] = metrics_loop(n * 10, false);
		v[3] = metrics_loop(n * 10, true);
		for (int k = 0; k < 4; k++)
			if (v[k] < best[k])
				best[k] = v[k];
	}
	for (int k = 0; k < 4; k++)
		printf("opscost_loop mode=%s us_per_call=%.3f\n", names[k], best[k]);
	printf("opscost_loop audit_us_per_call=%.3f metrics_us_per_call=%.3f\n", best[1] - best[0],
	       best[3] - best[2]);
	return 0;
}
