/*
 * test_interactor_client.c - the platform client's pure parts (what it reads
 * from the platform's answers: headers, Retry-After, tokens, errors; its
 * backoff) and the register plan and the mappings payload of the sync, which
 * the e2e tests then run against the fake platform.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "interactor_client.h"
#include "interactor_sync.h"
#include "schema_model.h"

static cJSON *parse(const char *json)
{
	cJSON *j = cJSON_Parse(json);
	if (!j)
		fail_msg("bad test JSON: %s", json);
	return j;
}

static void header(struct ic_headers *h, const char *line)
{
	ic_header_line(h, line, strlen(line), 1700000000);
}

static void test_headers(void **state)
{
	(void)state;
	struct ic_headers h;
	ic_headers_init(&h);
	assert_int_equal(h.retry_after, -1);
	header(&h, "HTTP/1.1 429 Too Many Requests\r\n");
	header(&h, "x-request-id: req_abc123\r\n");
	header(&h, "X-Trace-Id:\ttrace_789def  \r\n");
	header(&h, "X-RateLimit-Limit: 100\r\n");
	header(&h, "X-RateLimit-Remaining: 0\r\n");
	header(&h, "X-RateLimit-Reset: 1705752000\r\n");
	header(&h, "X-RateLimit-Resource: agents:messages\r\n");
	header(&h, "Retry-After: 30\r\n");
	header(&h, "Set-Cookie: ignored=1\r\n");
	assert_string_equal(h.request_id, "req_abc123");
	assert_string_equal(h.trace_id, "trace_789def");
	assert_string_equal(h.ratelimit_remaining, "0");
	assert_string_equal(h.ratelimit_resource, "agents:messages");
	assert_int_equal(h.retry_after, 30);
	/* values are cut and kept printable */
	char line[400];
	snprintf(line, sizeof line, "X-Request-Id: %0300d\x01\x7f\r\n", 7);
	header(&h, line);
	assert_int_equal(strlen(h.request_id), sizeof h.request_id - 1);
	/* a new status line (after a proxy's CONNECT answer) starts over */
	header(&h, "HTTP/1.1 200 OK\r\n");
	assert_string_equal(h.request_id, "");
	assert_int_equal(h.retry_after, -1);
	/* junk */
	header(&h, "no colon here\r\n");
	header(&h, ":\r\n");
	header(&h, "Retry-After: \r\n");
	assert_int_equal(h.retry_after, -1);
}

static void test_retry_after(void **state)
{
	(void)state;
	time_t now = 1700000000; /* 2023-11-14T22:13:20Z */
	assert_int_equal(ic_retry_after("0", now), 0);
	assert_int_equal(ic_retry_after("120", now), 120);
	assert_int_equal(ic_retry_after("99999999999999", now), 999999999L);
	assert_int_equal(ic_retry_after("Tue, 14 Nov 2023 22:14:20 GMT", now), 60);
	assert_int_equal(ic_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now), 0);
	assert_int_equal(ic_retry_after("soon", now), -1);
	assert_int_equal(ic_retry_after("-5", now), -1);
}

static void test_backoff(void **state)
{
	(void)state;
	for (unsigned attempt = 1; attempt <= 10; attempt++) {
		unsigned ceiling = IC_BACKOFF_BASE_MS << (attempt - 1 > 5 ? 5 : attempt - 1);
		if (ceiling > IC_BACKOFF_CAP_MS)
			ceiling = IC_BACKOFF_CAP_MS;
		assert_int_equal(ic_backoff_ms(attempt, ceiling), ceiling);
		assert_int_equal(ic_backoff_ms(attempt, ceiling + 1), 0);
		for (unsigned r = 0; r < 5000; r += 37)
			assert_true(ic_backoff_ms(attempt, r * 2654435761u) <= ceiling);
	}
	assert_true(ic_backoff_ms(100, 0xffffffffu) <= IC_BACKOFF_CAP_MS);
}

static void test_token(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		const char *token; /* NULL: refused */
		long expires_in;
	} cases[] = {
	    {"{\"data\":{\"access_token\":\"tok_1\",\"token_type\":\"Bearer\",\"expires_in\":900}}", "tok_1",
	     900},
	    {"{\"access_token\":\"tok_2\",\"token_type\":\"bearer\",\"expires_in\":60}", "tok_2", 60},
	    {"{\"data\":{\"access_token\":\"tok_3\"}}", "tok_3", 900},
	    {"{\"data\":{\"access_token\":\"\"}}", NULL, 0},
	    {"{\"data\":{\"access_token\":\"a b\"}}", NULL, 0},
	    {"{\"data\":{\"access_token\":\"t\",\"token_type\":\"mac\"}}", NULL, 0},
	    {"{\"data\":{\"access_token\":\"t\",\"expires_in\":-1}}", NULL, 0},
	    {"{\"data\":{\"access_token\":\"t\",\"expires_in\":\"900\"}}", NULL, 0},
	    {"[]", NULL, 0},
	    {"not json", NULL, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *tok = NULL, why[200] = "";
		long exp = 0;
		int rc = ic_parse_token(cases[i].body, strlen(cases[i].body), &tok, &exp, why, sizeof why);
		if (cases[i].token) {
			if (rc != CN_OK)
				fail_msg("case %zu: %s", i, why);
			assert_string_equal(tok, cases[i].token);
			assert_int_equal(exp, cases[i].expires_in);
		} else {
			assert_int_equal(rc, CN_EINVAL);
			assert_null(tok);
			assert_true(why[0] != '\0');
		}
		free(tok);
	}
}

static void test_error_text(void **state)
{
	(void)state;
	char out[100];
	cJSON *b =
	    parse("{\"error\":{\"code\":\"rate_limit_exceeded\",\"message\":\"Rate limit\\nexceeded\"}}");
	ic_error_text(b, out, sizeof out);
	assert_string_equal(out, "rate_limit_exceeded: Rate limit exceeded");
	cJSON_Delete(b);
	b = parse("{\"error\":\"plain\"}");
	ic_error_text(b, out, sizeof out);
	assert_string_equal(out, "plain");
	cJSON_Delete(b);
	ic_error_text(NULL, out, sizeof out);
	assert_string_equal(out, "");
	b = parse("{\"error\":{\"code\":1}}");
	ic_error_text(b, out, 5);
	assert_string_equal(out, "");
	cJSON_Delete(b);
}

/* ---- the register plan ---- */

#define TOOL(name, desc, url)                                                                                \
	"{\"name\":\"" name "\",\"description\":\"" desc "\",\"parameters\":{\"type\":\"object\"},"          \
	"\"callback_url\":\"" url "\"}"
#define HAVE(id, name, desc, url)                                                                            \
	"{\"id\":\"" id "\",\"name\":\"" name "\",\"description\":\"" desc "\","                             \
	"\"parameters\":{\"type\":\"object\"},\"callback_url\":\"" url "\"}"

static void test_plan(void **state)
{
	(void)state;
	cJSON *desired = parse("[" TOOL("db_a", "A", "https://c/v1/tools/db_a") "," TOOL(
	    "db_b",
	    "B", "https://c/v1/tools/db_b") "," TOOL("db_c", "C",
						     "https://c/v1/tools/db_c") "," TOOL("db_d", "D",
											 "https://c/v1/tools/"
											 "db_d") "]");
	cJSON *existing = parse("[" HAVE("t1", "db_a", "A", "https://c/v1/tools/db_a") "," HAVE(
	    "t2", "db_b", "B old",
	    "https://old/v1/tools/db_b") ","
					 "{\"id\":\"t3\",\"name\":\"db_c\",\"description\":\"C\","
					 "\"parameters\":"
					 "{\"type\":\"object\",\"x\":1},\"callback_url\":\"https://c/v1/"
					 "tools/db_c\"}," HAVE(
					     "t4", "db_gone", "G",
					     "https://c/v1/tools/db_gone") "," HAVE("t5", "hr_other", "O",
										    "https://h/v1/tools/"
										    "hr_other") "," HAVE("t6",
													 "db_"
													 "a",
													 "A",
													 "htt"
													 "ps:"
													 "//"
													 "c/"
													 "v1/"
													 "too"
													 "ls/"
													 "db_"
													 "a") "]");
	struct sync_plan plan;
	struct cn_error err = {0};
	assert_int_equal(sync_plan_tools(desired, existing, "db_", false, &plan, &err), CN_OK);
	static const struct {
		enum sync_kind kind;
		const char *name, *id, *changed;
	} want[] = {
	    {SYNC_UNCHANGED, "db_a", "t1", ""},
	    {SYNC_UPDATE, "db_b", "t2", "description, callback_url"},
	    {SYNC_UPDATE, "db_c", "t3", "parameters"},
	    {SYNC_CREATE, "db_d", NULL, ""},
	    {SYNC_STALE, "db_gone", "t4", "no longer offered"},
	    {SYNC_STALE, "db_a", "t6", "a second tool of this name"},
	};
	assert_int_equal(plan.n, sizeof want / sizeof want[0]);
	for (size_t i = 0; i < plan.n; i++) {
		const struct sync_action *a = &plan.items[i];
		if (a->kind != want[i].kind || strcmp(a->name, want[i].name) != 0 ||
		    (want[i].id ? !a->id || strcmp(a->id, want[i].id) != 0 : a->id != NULL) ||
		    strcmp(a->changed, want[i].changed) != 0)
			fail_msg("action %zu: %d %s %s '%s'", i, a->kind, a->name, a->id ? a->id : "-",
				 a->changed);
	}
	assert_non_null(plan.items[3].want);
	sync_plan_free(&plan);

	assert_int_equal(sync_plan_tools(desired, existing, "db_", true, &plan, &err), CN_OK);
	assert_int_equal(plan.items[4].kind, SYNC_DELETE);
	assert_int_equal(plan.items[5].kind, SYNC_DELETE);
	sync_plan_free(&plan);

	/* an empty prefix never prunes, and never takes other tools for stale */
	assert_int_equal(sync_plan_tools(desired, existing, "", true, &plan, &err), CN_EINVAL);
	assert_non_null(strstr(err.message, "tool_prefix is empty"));
	assert_int_equal(sync_plan_tools(desired, existing, "", false, &plan, &err), CN_OK);
	for (size_t i = 0; i < plan.n; i++)
		assert_true(plan.items[i].kind != SYNC_STALE || strcmp(plan.items[i].name, "db_a") == 0);
	sync_plan_free(&plan);
	cJSON_Delete(desired);
	cJSON_Delete(existing);
}

/* ---- the mappings payload ---- */

static void test_mappings_payload(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	struct cn_schema_builder b;
	schema_model_builder(m, &b);
	int t1 = b.table(b.ctx, "public", "customers", CN_OBJ_TABLE, "People", -1);
	b.column(b.ctx, t1, "id", "int", false, NULL, NULL, 1);
	b.column(b.ctx, t1, "email", "text", false, NULL, "Login", 0);
	b.column(b.ctx, t1, "phone", "text", true, NULL, "Private", 0);
	int t2 = b.table(b.ctx, "public", "orders", CN_OBJ_TABLE, NULL, -1);
	b.column(b.ctx, t2, "total", "numeric", false, NULL, "Sum", 0);
	int t3 = b.table(b.ctx, "archive", "orders", CN_OBJ_TABLE, "Old orders", -1);
	b.column(b.ctx, t3, "total", "numeric", false, NULL, NULL, 0);
	int t4 = b.table(b.ctx, "public", "audit", CN_OBJ_TABLE, "Secret log", -1);
	(void)t4;
	struct sm_table *cust = schema_model_find_table(m, "public", "customers");
	cust->synonyms = calloc(1, sizeof *cust->synonyms);
	cust->synonyms[0] = strdup("clients");
	cust->nsynonyms = 1;
	schema_model_find_column(cust, "phone")->hidden = true;
	schema_model_find_table(m, "public", "audit")->hidden = true;

	cJSON *p = sync_mappings_payload(m);
	cJSON *want = parse("{\"mappings\":{"
			    "\"customers\":{\"description\":\"People\",\"synonyms\":[\"clients\"]},"
			    "\"customers.email\":{\"description\":\"Login\"},"
			    "\"public.orders.total\":{\"description\":\"Sum\"},"
			    "\"archive.orders\":{\"description\":\"Old orders\"}}}");
	if (!cJSON_Compare(p, want, true))
		fail_msg("payload: %s", cJSON_PrintUnformatted(p));
	char h1[65], h2[65], h3[65];
	sync_mappings_hash("ds_1", p, h1);
	sync_mappings_hash("ds_1", want, h2);
	sync_mappings_hash("ds_2", p, h3);
	assert_int_equal(strlen(h1), 64);
	assert_string_not_equal(h1, h3); /* another data source is another push */
	(void)h2;
	char h4[65];
	cJSON *again = sync_mappings_payload(m);
	sync_mappings_hash("ds_1", again, h4);
	assert_string_equal(h1, h4); /* the same model, the same hash */
	cJSON_Delete(again);
	cJSON_Delete(want);
	cJSON_Delete(p);
	schema_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_headers),	     cmocka_unit_test(test_retry_after),
	    cmocka_unit_test(test_backoff),	     cmocka_unit_test(test_token),
	    cmocka_unit_test(test_error_text),	     cmocka_unit_test(test_plan),
	    cmocka_unit_test(test_mappings_payload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
