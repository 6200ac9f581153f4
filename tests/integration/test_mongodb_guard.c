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

struct line {
	char *a, *params, *query;
	int no;
};

struct corpus {
	struct line *v;
	size_t n;
};

static struct corpus attacks, allowed;
static void *guarded; /* hides secrets and customers.email/ssn/address.street; introspected */

static int corpus_load(const char *name, struct corpus *c)
{
	char path[512];
	snprintf(path, sizeof path, "%s/tests/fixtures/mongodb/%s", CN_TEST_SOURCE_DIR, name);
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "cannot read %s\n", path);
		return -1;
	}
	char buf[8192];
	int no = 0;
	while (fgets(buf, sizeof buf, f)) {
		no++;
		buf[strcspn(buf, "\n")] = '\0';
		if (!buf[0] || buf[0] == '#')
			continue;
		char *t1 = strchr(buf, '\t');
		if (!t1) {
			fprintf(stderr, "%s:%d: no tab\n", name, no);
			fclose(f);
			return -1;
		}
		*t1 = '\0';
		char *rest = t1 + 1, *t2 = strchr(rest, '\t');
		struct line l = {strdup(buf), NULL, NULL, no};
		if (t2) {
			*t2 = '\0';
			l.params = strdup(rest);
			l.query = strdup(t2 + 1);
		} else {
			l.query = strdup(rest);
		}
		struct line *v = realloc(c->v, (c->n + 1) * sizeof *v);
		if (!v) {
			fclose(f);
			return -1;
		}
		c->v = v;
		c->v[c->n++] = l;
	}
	fclose(f);
	return 0;
}

static void corpus_free(struct corpus *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].a);
		free(c->v[i].params);
		free(c->v[i].query);
	}
	free(c->v);
	memset(c, 0, sizeof *c);
}

static size_t params_parse(const char *json, cJSON **keep, struct cn_value *v, size_t max)
{
	*keep = NULL;
	if (!json)
		return 0;
	cJSON *arr = cJSON_Parse(json);
	size_t n = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, arr) {
		if (n == max)
			break;
		struct cn_value *p = &v[n++];
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
	*keep = arr;
	return n;
}

static int group_setup(void **state)
{
	struct cn_error err = {0};
	if (h_setup(state) || corpus_load("attacks.txt", &attacks) || corpus_load("allowed.txt", &allowed))
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
	corpus_free(&attacks);
	corpus_free(&allowed);
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
		const struct line *l = &attacks.v[i];
		struct cn_value params[8];
		cJSON *keep;
		size_t np = params_parse(l->params, &keep, params, 8);
		struct cn_error err = {0};
		int rc = h_env.api->check(guarded, l->query, &err);
		if (rc != CN_EREJECTED)
			fail_msg("attacks.txt:%d: check() answered %d: %s", l->no, rc, err.message);
		if (!strstr(err.message, l->a))
			fail_msg("attacks.txt:%d: '%s' lacks '%s'", l->no, err.message, l->a);
		struct h_result r;
		memset(&err, 0, sizeof err);
		rc = h_exec(guarded, l->query, params, np, 2000, 10, &r, &err);
		if (rc != CN_EREJECTED && rc != CN_EINVAL)
			fail_msg("attacks.txt:%d: execute() answered %d (%s)", l->no, rc, err.message);
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
		const struct line *l = &allowed.v[i];
		struct cn_value params[8];
		cJSON *keep;
		size_t np = params_parse(l->params, &keep, params, 8);
		struct cn_error err = {0};
		int rc = h_env.api->check(guarded, l->query, &err);
		if (rc != CN_OK)
			fail_msg("allowed.txt:%d: check() refused: %s", l->no, err.message);
		if (!strncmp(l->a, "run", 3)) {
			struct h_result r;
			rc = h_exec(guarded, l->query, params, np, 5000, 100, &r, &err);
			if (rc != CN_OK)
				fail_msg("allowed.txt:%d: execute() answered %d: %s", l->no, rc, err.message);
			if (l->a[3] == '=' && r.nrows != (size_t)atoi(l->a + 4))
				fail_msg("allowed.txt:%d: %zu rows, want %s", l->no, r.nrows, l->a + 4);
			/* hidden values never come back */
			char *text = h_result_text(&r);
			if (strstr(text, "@example.com") || strstr(text, "street") || strstr(text, "not_real"))
				fail_msg("allowed.txt:%d returned a hidden value:\n%s", l->no, text);
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
