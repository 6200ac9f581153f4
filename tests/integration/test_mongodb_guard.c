/*
 * test_mongodb_guard.c - the attack corpus (tests/fixtures/mongodb/attacks.txt)
 * and the must-allow list (allowed.txt) against the test server, which really
 * applies writes. Every attack goes through check() and through execute()
 * (which runs the guard again: there is no path to the server around it);
 * both must refuse. Every must-allow line passes check() and, unless the
 * test server lacks its stage, runs for real. Before and after each corpus
 * every collection of the database (documents, indexes) is compared, and
 * the server's command log must show nothing but reads and the driver's own
 * monitoring: no write command, no $out or $merge stage ever arrived.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mongo_harness.h"

static struct h_corpus attacks, allowed;
static void *guarded; /* hides secrets and customers.email/ssn/address.street; introspected */

/* A corpus line is CLASS<TAB>QUERY or CLASS<TAB>PARAMS<TAB>QUERY, PARAMS a
 * JSON array of scalars: its query, with the parameters in v (*n of them;
 * texts point into *keep, which the caller deletes). */
static const char *entry_parse(const struct h_entry *e, cJSON **keep, struct cn_value *v, size_t max,
			       size_t *n)
{
	const char *tab = strchr(e->sql, '\t');
	*keep = tab ? cJSON_ParseWithLength(e->sql, (size_t)(tab - e->sql)) : NULL;
	*n = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, *keep) {
		if (*n == max)
			break;
		struct cn_value *p = &v[(*n)++];
		if (cJSON_IsString(it)) {
			*p = (struct cn_value){.kind = CN_VAL_TEXT};
			p->u.s.ptr = it->valuestring;
			p->u.s.len = strlen(it->valuestring);
		} else if (cJSON_IsBool(it)) {
			*p = (struct cn_value){.kind = CN_VAL_BOOL, .u.b = cJSON_IsTrue(it)};
		} else if (cJSON_IsNull(it)) {
			*p = (struct cn_value){.kind = CN_VAL_NULL};
		} else if (it->valuedouble == (double)(int64_t)it->valuedouble) {
			*p = (struct cn_value){.kind = CN_VAL_INT, .u.i = (int64_t)it->valuedouble};
		} else {
			*p = (struct cn_value){.kind = CN_VAL_DOUBLE, .u.d = it->valuedouble};
		}
	}
	return tab ? tab + 1 : e->sql;
}

static int group_setup(void **state)
{
	struct cn_error err = {0};
	if (h_setup(state) || h_corpus_load("mongodb", "attacks.txt", false, &attacks) ||
	    h_corpus_load("mongodb", "allowed.txt", false, &allowed))
		return -1;
	if (h_open(h_env.dsn, 2, 5000, true, &guarded, &err, NULL) != CN_OK) {
		fprintf(stderr, "open: %s\n", err.message);
		return -1;
	}
	if (h_introspect_quietly(guarded, &err) < 5) {
		fprintf(stderr, "introspect: %s\n", err.message);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	h_env.api->close(guarded);
	h_corpus_free(&attacks);
	h_corpus_free(&allowed);
	return h_teardown(state);
}

/* Commands the server may see while a corpus runs: the reads, and what
 * libmongoc sends on its own (handshake, monitoring, sessions). */
static const char *const read_cmds[] = {"find", "aggregate", "count", "distinct", "explain",
					"getMore", "killCursors", "hello", "isMaster", "ismaster",
					"ping", "endSessions", "buildInfo", "buildinfo",
					"listCollections", "listIndexes", "serverStatus"};

/* Every "cmd=NAME" in the log text is a read; no stage list names $out or $merge. */
static void assert_log_only_reads(const char *log, bool allow_side)
{
	for (const char *p = strstr(log, "cmd="); p; p = strstr(p + 4, "cmd=")) {
		char name[64];
		size_t n = strcspn(p + 4, " \n");
		snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p + 4);
		bool ok = false;
		for (size_t i = 0; i < sizeof read_cmds / sizeof read_cmds[0]; i++)
			ok = ok || !strcmp(name, read_cmds[i]);
		if (!ok) {
			const char *eol = strchr(p, '\n');
			fail_msg("the server received '%s': %.*s", name, (int)(eol ? eol - p : 80), p);
		}
		(void)allow_side;
	}
	assert_null(strstr(log, "$out"));
	assert_null(strstr(log, "$merge"));
	assert_null(strstr(log, "writeErrors"));
}

static void test_attacks_never_reach_the_server(void **state)
{
	(void)state;
	char *before = h_snapshot();
	long off = h_log_size();
	for (size_t i = 0; i < attacks.n; i++) {
		const struct h_entry *l = &attacks.items[i];
		struct cn_value params[8];
		cJSON *keep;
		size_t np;
		const char *query = entry_parse(l, &keep, params, 8, &np);
		struct cn_error err = {0};
		int rc = h_env.api->check(guarded, query, &err);
		if (rc != CN_EREJECTED)
			fail_msg("attacks.txt:%d: check() answered %d: %s", l->line, rc, err.message);
		if (!strstr(err.message, l->cls))
			fail_msg("attacks.txt:%d: '%s' lacks '%s'", l->line, err.message, l->cls);
		if (err.reject == CN_REJECT_OTHER)
			fail_msg("attacks.txt:%d: refused without a class: %s", l->line, err.message);
		struct h_result r;
		memset(&err, 0, sizeof err);
		rc = h_exec(guarded, query, params, np, 2000, 10, &r, &err);
		if (rc != CN_EREJECTED && rc != CN_EINVAL)
			fail_msg("attacks.txt:%d: execute() answered %d (%s)", l->line, rc, err.message);
		if (rc == CN_EREJECTED && err.reject == CN_REJECT_OTHER)
			fail_msg("attacks.txt:%d: execute() refused without a class: %s", l->line,
				 err.message);
		assert_int_equal(r.ncols, 0);
		h_result_free(&r);
		cJSON_Delete(keep);
	}
	char *log = h_log_since(off);
	/* refused before any command: the server saw at most monitoring */
	for (const char *p = strstr(log, "cmd="); p; p = strstr(p + 4, "cmd=")) {
		if (!strncmp(p + 4, "find", 4) || !strncmp(p + 4, "aggregate", 9) || !strncmp(p + 4, "count", 5) ||
		    !strncmp(p + 4, "distinct", 8))
			fail_msg("a refused query reached the server: %.60s", p);
	}
	assert_log_only_reads(log, false);
	free(log);
	char *after = h_snapshot();
	assert_string_equal(after, before);
	assert_non_null(strstr(before, "secrets"));
	free(before);
	free(after);
}

static void test_allowed_run_for_real(void **state)
{
	(void)state;
	char *before = h_snapshot();
	long off = h_log_size();
	size_t ran = 0;
	for (size_t i = 0; i < allowed.n; i++) {
		const struct h_entry *l = &allowed.items[i];
		struct cn_value params[8];
		cJSON *keep;
		size_t np;
		const char *query = entry_parse(l, &keep, params, 8, &np);
		struct cn_error err = {0};
		int rc = h_env.api->check(guarded, query, &err);
		if (rc != CN_OK)
			fail_msg("allowed.txt:%d: check() refused: %s", l->line, err.message);
		if (!strncmp(l->cls, "run", 3)) {
			struct h_result r;
			rc = h_exec(guarded, query, params, np, 5000, 100, &r, &err);
			if (rc != CN_OK)
				fail_msg("allowed.txt:%d: execute() answered %d: %s", l->line, rc, err.message);
			if (l->cls[3] == '=' && r.nrows != (size_t)atoi(l->cls + 4))
				fail_msg("allowed.txt:%d: %zu rows, want %s", l->line, r.nrows, l->cls + 4);
			/* hidden values never come back */
			char *text = h_result_text(&r);
			if (strstr(text, "@example.com") || strstr(text, "street") || strstr(text, "not_real"))
				fail_msg("allowed.txt:%d returned a hidden value:\n%s", l->line, text);
			free(text);
			h_result_free(&r);
			ran++;
		}
		cJSON_Delete(keep);
	}
	assert_true(ran > 45);
	assert_true(h_cursors_reach_zero(2000));
	char *log = h_log_since(off);
	assert_log_only_reads(log, true);
	free(log);
	char *after = h_snapshot();
	assert_string_equal(after, before);
	free(before);
	free(after);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attacks_never_reach_the_server),
		cmocka_unit_test(test_allowed_run_for_real),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
