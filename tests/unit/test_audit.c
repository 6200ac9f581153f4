/* test_audit.c - the audit log's pure parts: the fingerprint, the --since,
 * --source and --status parsers, the filter word the daemon reads, the JSON
 * of a record; and audit_answer's pages over a real store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "execution_store.h"

static void fp(const char *text, char out[AUDIT_FINGERPRINT_LEN + 1])
{
	audit_fingerprint(text, strlen(text), out);
}

static void test_fingerprint(void **state)
{
	(void)state;
	char a[AUDIT_FINGERPRINT_LEN + 1], b[AUDIT_FINGERPRINT_LEN + 1];
	/* sha256("SELECT * FROM t WHERE a = $1")[:16], from Python's hashlib */
	fp("SELECT * FROM t WHERE a = $1", a);
	assert_string_equal(a, "522a736e60590fea");
	/* whitespace runs are one space, the ends trimmed */
	fp("  SELECT *\n\tFROM t\r\n  WHERE a = $1 \n", b);
	assert_string_equal(a, b);
	fp("", a);
	assert_string_equal(a, "e3b0c44298fc1c14"); /* sha256("") */
	fp(" \n\t ", b);
	assert_string_equal(a, b);
	/* another literal, another case: another fingerprint */
	fp("SELECT * FROM t WHERE a = 1", a);
	fp("SELECT * FROM t WHERE a = 2", b);
	assert_string_not_equal(a, b);
	fp("select * from t where a = 1", b);
	assert_string_not_equal(a, b);
	/* longer than the hashing chunk, spaces across its edges */
	size_t n = 5000;
	char *big = malloc(n + 1), *squeezed = malloc(n + 1);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		big[i] = i % 7 == 0 || i % 7 == 1 ? ' ' : (char)('a' + i % 26);
		if (big[i] != ' ' || (m && squeezed[m - 1] != ' '))
			squeezed[m++] = big[i];
	}
	while (m && squeezed[m - 1] == ' ')
		m--;
	big[n] = squeezed[m] = '\0';
	audit_fingerprint(big, n, a);
	audit_fingerprint(squeezed, m, b);
	assert_string_equal(a, b);
	free(big);
	free(squeezed);
}

static void test_copy_id(void **state)
{
	(void)state;
	char out[AUDIT_ID_MAX + 1], in[400];
	audit_copy_id(out, "asst_abc");
	assert_string_equal(out, "asst_abc");
	memset(in, 'x', sizeof in);
	in[sizeof in - 1] = '\0';
	audit_copy_id(out, in);
	assert_int_equal(strlen(out), AUDIT_ID_MAX);
	/* a two-byte character across the cut is left out whole */
	memset(in, 'x', AUDIT_ID_MAX - 1);
	memcpy(in + AUDIT_ID_MAX - 1, "\xc3\xa9tail", 7);
	audit_copy_id(out, in);
	assert_int_equal(strlen(out), AUDIT_ID_MAX - 1);
}

static void test_parse_since(void **state)
{
	(void)state;
	const int64_t now = 1800000000000LL;
	char why[300];
	int64_t ms;
	static const struct {
		const char *text;
		int64_t want;
	} ok[] = {
		{"2026-01-20T12:00:00Z", 1768910400000LL},
		{"2026-01-20T13:00:00+01:00", 1768910400000LL},
		{"2026-01-20T12:00:00.750Z", 1768910400000LL},
		{"2026-01-20", 1768867200000LL},
		{"30s", now - 30000},
		{"90m", now - 90 * 60000LL},
		{"24h", now - 24 * 3600000LL},
		{"7d", now - 7 * 86400000LL},
		{"2w", now - 14 * 86400000LL},
		{"0h", now},
		{"100000000w", 0}, /* before 1970: from the first record */
		{"1960-01-01", 0},
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		assert_int_equal(audit_parse_since(ok[i].text, now, &ms, why, sizeof why), CN_OK);
		if (ms != ok[i].want)
			fail_msg("%s: %lld, want %lld", ok[i].text, (long long)ms, (long long)ok[i].want);
	}
	static const char *const bad[] = {
		"", "h", "7", "7x", "-7d", "7 d", "7dd", "1000000000w", "2026-01-20T12:00:00",
		"2026-13-01", "2026-01-20 12:00:00Z", "yesterday", "99999999999999999999s",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why[0] = '\0';
		if (audit_parse_since(bad[i], now, &ms, why, sizeof why) != CN_EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_non_null(strstr(why, "24h")); /* the message says what to write */
	}
}

static void test_filter_options(void **state)
{
	(void)state;
	struct audit_filter f = {0};
	char why[300];
	assert_int_equal(audit_filter_set_source(&f, "sales-db_2", why, sizeof why), CN_OK);
	assert_string_equal(f.source, "sales-db_2");
	assert_int_equal(audit_filter_set_source(&f, "a b", why, sizeof why), CN_EINVAL);
	assert_non_null(strstr(why, "not a source name"));
	assert_int_equal(audit_filter_set_source(&f, "", why, sizeof why), CN_EINVAL);
	char long_name[80];
	memset(long_name, 'a', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	assert_int_equal(audit_filter_set_source(&f, long_name, why, sizeof why), CN_EINVAL);

	assert_int_equal(audit_filter_set_status(&f, "401", why, sizeof why), CN_OK);
	assert_int_equal(f.status, 401);
	assert_string_equal(f.code, "");
	assert_int_equal(audit_filter_set_status(&f, "query_rejected", why, sizeof why), CN_OK);
	assert_int_equal(f.status, 0);
	assert_string_equal(f.code, "query_rejected");
	static const char *const bad[] = {"99", "600", "4O1", "Query", "query-rejected", "", "2000"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (audit_filter_set_status(&f, bad[i], why, sizeof why) != CN_EINVAL)
			fail_msg("--status '%s' was accepted", bad[i]);
}

static void test_filter_word(void **state)
{
	(void)state;
	struct audit_filter f = {.after_ms = 1768910400123LL, .after_id = 42, .status = 0}, g;
	strcpy(f.source, "demo");
	strcpy(f.code, "replayed");
	char word[AUDIT_FILTER_MAX];
	audit_filter_format(&f, word);
	assert_string_equal(word, "after=1768910400123:42,source=demo,code=replayed");
	assert_int_equal(audit_filter_parse(word, &g), CN_OK);
	assert_memory_equal(&f, &g, sizeof f);

	/* the longest filter fits */
	struct audit_filter big = {.after_ms = INT64_MAX, .after_id = INT64_MAX, .status = 599};
	memset(big.source, 'S', AUDIT_NAME_MAX);
	audit_filter_format(&big, word);
	assert_int_equal(audit_filter_parse(word, &g), CN_OK);
	assert_memory_equal(&big, &g, sizeof big);
	memset(big.code, 'c', AUDIT_NAME_MAX);
	big.status = 0;
	audit_filter_format(&big, word);
	assert_int_equal(audit_filter_parse(word, &g), CN_OK);
	assert_memory_equal(&big, &g, sizeof big);

	static const char *const bad[] = {
		"",
		"source=demo",                 /* no cursor */
		"after=1",                     /* no id */
		"after=1:2,",                  /* an empty item */
		"after=1:2,after=3:4",         /* twice */
		"after=-1:2",
		"after=1:2,status=200,code=ok", /* both */
		"after=1:2,source=a b",
		"after=1:2,source=",
		"after=1:2,code=Query",
		"after=1:2,status=2000",
		"after=1:2,limit=5",
		"after=1:2 ,source=demo",
		"after=99999999999999999999:1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (audit_filter_parse(bad[i], &g) != CN_EINVAL)
			fail_msg("filter '%s' was accepted", bad[i]);
}

static void test_filter_match(void **state)
{
	(void)state;
	struct audit_record ok = {.source = "demo", .status = 200};
	struct audit_record replayed = {.source = "demo", .status = 200, .code = "replayed"};
	struct audit_record none = {.status = 401, .code = "invalid_request"};
	struct audit_filter f = {0};
	assert_true(audit_filter_match(&f, &ok) && audit_filter_match(&f, &none));
	strcpy(f.source, "demo");
	assert_true(audit_filter_match(&f, &ok));
	assert_false(audit_filter_match(&f, &none));
	f = (struct audit_filter){.status = 200};
	assert_true(audit_filter_match(&f, &ok) && audit_filter_match(&f, &replayed));
	assert_false(audit_filter_match(&f, &none));
	f = (struct audit_filter){0};
	strcpy(f.code, "ok");
	assert_true(audit_filter_match(&f, &ok));
	assert_false(audit_filter_match(&f, &replayed) || audit_filter_match(&f, &none));
	strcpy(f.code, "replayed");
	assert_true(audit_filter_match(&f, &replayed));
	assert_false(audit_filter_match(&f, &ok));
}

static void test_record_json(void **state)
{
	(void)state;
	struct audit_record r = {
		.id = 7, .at_ms = 1768910400123LL, .execution_id = "exec_1", .assistant_id = "asst_a",
		.room_id = NULL, .tool = "run_query", .source = "demo", .fingerprint = "0123456789abcdef",
		.statement = NULL, .rows = 3, .bytes = 120, .status = 200, .code = NULL,
		.duration_us = 2500,
	};
	cJSON *o = audit_record_to_json(&r);
	char *text = cJSON_PrintUnformatted(o);
	assert_string_equal(text, "{\"id\":7,\"time\":\"2026-01-20T12:00:00.123Z\",\"execution_id\":\"exec_1\","
				  "\"assistant_id\":\"asst_a\",\"room_id\":null,\"tool\":\"run_query\","
				  "\"source\":\"demo\",\"fingerprint\":\"0123456789abcdef\",\"rows\":3,"
				  "\"bytes\":120,\"status\":200,\"code\":null,\"duration_ms\":2.5}");
	free(text);
	cJSON_Delete(o);
	r.statement = "SELECT 1";
	r.rows = -1;
	o = audit_record_to_json(&r);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "statement")), "SELECT 1");
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "rows")));
	cJSON_Delete(o);
}

/* audit_answer over a store: pages of AUDIT_PAGE_RECORDS, the next page's
 * filter, and a bad filter refused. */
static void test_answer_pages(void **state)
{
	(void)state;
	char dir[] = "/tmp/cn_audit_test_XXXXXX", path[64];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/state.db", dir);
	struct exec_store *s = NULL;
	struct cn_error err = {0};
	assert_int_equal(exec_store_open(path, NULL, &s, &err), CN_OK);
	enum { N = AUDIT_PAGE_RECORDS + 300 };
	for (int i = 0; i < N; i++) {
		struct audit_record r = {.at_ms = 1000 + i / 3, .tool = "run_query",
					 .source = i % 2 ? "odd" : "even", .rows = i, .status = 200};
		assert_int_equal(exec_store_audit_add(s, &r, &err), CN_OK);
	}
	char word[AUDIT_FILTER_MAX];
	struct audit_filter f = {0};
	int seen = 0, pages = 0;
	int64_t last = -1;
	for (;;) {
		audit_filter_format(&f, word);
		cJSON *a = audit_answer(s, word, &err);
		assert_non_null(a);
		pages++;
		const cJSON *rec;
		cJSON_ArrayForEach(rec, cJSON_GetObjectItem(a, "records")) {
			int64_t rows = (int64_t)cJSON_GetObjectItem(rec, "rows")->valuedouble;
			assert_true(rows > last); /* oldest first, none twice */
			last = rows;
			seen++;
		}
		bool more = cJSON_IsTrue(cJSON_GetObjectItem(a, "more"));
		if (more)
			assert_int_equal(audit_filter_parse(cJSON_GetStringValue(cJSON_GetObjectItem(a, "next")), &f),
					 CN_OK);
		cJSON_Delete(a);
		if (!more)
			break;
	}
	assert_int_equal(seen, N);
	assert_int_equal(pages, 2);

	/* a filter keeps its source on the next page */
	f = (struct audit_filter){0};
	strcpy(f.source, "odd");
	audit_filter_format(&f, word);
	cJSON *a = audit_answer(s, word, &err);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(a, "records")), N / 2);
	assert_false(cJSON_IsTrue(cJSON_GetObjectItem(a, "more")));
	cJSON_Delete(a);

	assert_null(audit_answer(s, "after=1", &err));
	assert_int_equal(err.code, CN_EINVAL);
	assert_null(audit_answer(NULL, "after=0:0", &err));
	exec_store_close(s);
	unlink(path);
	char wal[80];
	snprintf(wal, sizeof wal, "%s-wal", path);
	unlink(wal);
	snprintf(wal, sizeof wal, "%s-shm", path);
	unlink(wal);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fingerprint),   cmocka_unit_test(test_copy_id),
		cmocka_unit_test(test_parse_since),   cmocka_unit_test(test_filter_options),
		cmocka_unit_test(test_filter_word),   cmocka_unit_test(test_filter_match),
		cmocka_unit_test(test_record_json),   cmocka_unit_test(test_answer_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
