/*
 * test_mongodb_exec.c - the MongoDB driver against the wire-protocol test
 * server: every result type, parameters, the row and byte caps with the
 * server's cursor killed, a query over its time budget (fail point), pool
 * exhaustion, the server paused and resumed, dropped connections, server
 * errors, cancel() at shutdown, a failing sink, hidden fields scrubbed from
 * results, and dsn errors that never show the password.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mongo_harness.h"
#include "result_writer.h"

#define TXT(text) {.kind = CN_VAL_TEXT, .u.s = {text, sizeof(text) - 1}}

/* The cell of the row whose _id cell is id, in column col. */
static const char *cell_of(const struct h_result *r, const char *id, const char *col)
{
	int ci = h_col(r, "_id"), cv = h_col(r, col);
	for (size_t row = 0; ci >= 0 && cv >= 0 && row < r->nrows; row++)
		if (!strcmp(h_cell(r, row, (size_t)ci), id))
			return h_cell(r, row, (size_t)cv);
	return "(no such row)";
}

static void test_every_type(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 5000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	assert_int_equal(h_exec(h, "{\"find\": \"type_zoo\"}", NULL, 0, 5000, 100, &r, &err), CN_OK);
	assert_int_equal(r.nrows, 20);
	assert_string_equal(r.cols[0].name, "_id");
	assert_string_equal(r.cols[h_col(&r, "value")].table, "type_zoo");
	assert_string_equal(r.cols[h_col(&r, "value")].schema, "connector_test");
	static const char *const want[][2] = {
		{"T:double", "D:3.1415926535897931"},
		{"T:string", "T:h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \"quoted\""},
		{"T:object", "J:{\"a\":1,\"nested\":{\"b\":\"c\",\"list\":[1,2]}}"},
		{"T:array", "J:[1,\"two\",3.5,{\"four\":4},[5]]"},
		{"T:binary", "X:00010203feff48656c6c6f"},
		{"T:uuid", "T:123e4567-e89b-12d3-a456-426614174000"},
		{"T:objectId", "T:65d000000000000000000001"},
		{"T:bool", "B:true"},
		{"T:date", "T:2024-02-29T12:34:56.789Z"},
		{"T:null", "NULL"},
		{"T:regex", "T:/^ab+c$/i"},
		{"T:int32", "I:-2147483648"},
		{"T:timestamp", "J:{\"$timestamp\":{\"t\":1700000000,\"i\":7}}"},
		{"T:int64", "I:9007199254740993"},
		{"T:decimal128", "N:1234567890.123456789012345678901234"},
		{"T:minKey", "J:{\"$minKey\":1}"},
		{"T:maxKey", "J:{\"$maxKey\":1}"},
		{"T:infinity", "D:inf"},
		{"T:negInfinity", "D:-inf"},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		const char *got = cell_of(&r, want[i][0], "value");
		if (strcmp(got, want[i][1]))
			fail_msg("%s: %s, want %s", want[i][0], got, want[i][1]);
	}
	assert_string_equal(cell_of(&r, "T:nan", "value"), "D:nan");
	/* the column's type names every BSON type seen */
	const char *type = r.cols[h_col(&r, "value")].type;
	assert_non_null(strstr(type, "decimal"));
	assert_non_null(strstr(type, "timestamp"));
	assert_non_null(strstr(type, "|null"));
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_parameters_are_values(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 5000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	struct cn_value p[2] = {TXT("shipped")};
	assert_int_equal(h_exec(h, "{\"find\": \"orders\", \"filter\": {\"status\": {\"$param\": 1}}}", p,
				1, 5000, 100, &r, &err), CN_OK);
	assert_int_equal(r.nrows, 12);
	h_result_free(&r);
	/* an operator as text matches nothing: it is a value */
	struct cn_value op[1] = {TXT("$ne")};
	assert_int_equal(h_exec(h, "{\"find\": \"orders\", \"filter\": {\"status\": {\"$param\": 1}}}", op,
				1, 5000, 100, &r, &err), CN_OK);
	assert_int_equal(r.nrows, 0);
	h_result_free(&r);
	/* a field path as text in an expression stays text ($literal) */
	struct cn_value path[1] = {TXT("$status")};
	assert_int_equal(h_exec(h, "{\"aggregate\": \"orders\", \"pipeline\": [{\"$limit\": 1}, "
				"{\"$project\": {\"_id\": 0, \"x\": {\"$param\": 1}}}]}", path, 1, 5000, 100,
				&r, &err), CN_OK);
	assert_int_equal(r.nrows, 1);
	assert_string_equal(h_cell(&r, 0, 0), "T:$status");
	h_result_free(&r);
	/* typed parameters */
	struct cn_value d[2] = {TXT("2024-06-01T00:00:00Z"), TXT("65a000000000000000000001")};
	assert_int_equal(h_exec(h, "{\"count\": \"orders\", \"query\": {\"placed_at\": {\"$gte\": "
				"{\"$date\": {\"$param\": 1}}}, \"customer_id\": {\"$oid\": {\"$param\": 2}}}}",
				d, 2, 5000, 100, &r, &err), CN_OK);
	assert_string_equal(r.cols[0].name, "n");
	h_result_free(&r);
	/* parameters that do not fit */
	struct cn_value bad[1] = {TXT("not a date")};
	assert_int_equal(h_exec(h, "{\"find\": \"orders\", \"filter\": {\"placed_at\": {\"$date\": "
				"{\"$param\": 1}}}}", bad, 1, 5000, 100, &r, &err), CN_EINVAL);
	assert_non_null(strstr(err.message, "ISO 8601"));
	h_result_free(&r);
	assert_int_equal(h_exec(h, "{\"find\": \"orders\"}", p, 1, 5000, 100, &r, &err), CN_EINVAL);
	assert_non_null(strstr(err.message, "not used"));
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_row_cap_kills_the_cursor(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 5000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	assert_true(h_cursors_reach_zero(2000));
	long off = h_log_size();
	assert_int_equal(h_exec(h, "{\"find\": \"orders\", \"sort\": {\"_id\": 1}}", NULL, 0, 5000, 5, &r,
				&err), CN_OK);
	assert_int_equal(r.nrows, 5);
	assert_true(r.ended_early);
	assert_string_equal(h_cell(&r, 4, 0), "T:65b000000000000000000005");
	h_result_free(&r);
	assert_true(h_cursors_reach_zero(1000));
	char *log = h_log_since(off);
	assert_non_null(strstr(log, "cmd=killCursors"));
	assert_null(strstr(log, "cmd=getMore"));
	free(log);
	/* an aggregate too */
	assert_int_equal(h_exec(h, "{\"aggregate\": \"orders\", \"pipeline\": [{\"$unwind\": \"$items\"}]}",
				NULL, 0, 5000, 7, &r, &err), CN_OK);
	assert_int_equal(r.nrows, 7);
	assert_true(r.ended_early);
	h_result_free(&r);
	assert_true(h_cursors_reach_zero(1000));
	/* fewer documents than the cap: everything, no extra column, no cursor left */
	assert_int_equal(h_exec(h, "{\"find\": \"customers\"}", NULL, 0, 5000, 100, &r, &err), CN_OK);
	assert_int_equal(r.nrows, 20);
	assert_false(r.ended_early);
	h_result_free(&r);
	assert_true(h_cursors_reach_zero(1000));
	/* the row past the cap brings no column of its own */
	assert_int_equal(h_exec(h, "{\"aggregate\": \"orders\", \"pipeline\": [{\"$sort\": {\"_id\": 1}}, "
				"{\"$limit\": 2}, {\"$project\": {\"_id\": 1}}, {\"$unionWith\": {\"coll\": "
				"\"products\", \"pipeline\": [{\"$project\": {\"sku\": 1}}]}}]}", NULL, 0, 5000, 2,
				&r, &err), CN_OK);
	assert_int_equal(r.ncols, 1);
	assert_int_equal(r.nrows, 2);
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_byte_cap(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 5000, h_env.dsn);
	struct result_writer_opts opts = {.max_rows = 1000, .max_bytes = 2048};
	struct result_writer *w = result_writer_new(&opts);
	struct cn_query q = {.text = "{\"find\": \"orders\"}", .timeout_ms = 5000, .max_rows = 1000};
	struct cn_error err = {0};
	assert_int_equal(h_env.api->execute(h, &q, result_writer_sink(w), &err), CN_OK);
	char *body;
	size_t len;
	assert_int_equal(result_writer_finish(w, 1, &body, &len), CN_OK);
	assert_true(len <= 2048);
	assert_true(result_writer_truncated(w));
	assert_true(result_writer_row_count(w) > 0 && result_writer_row_count(w) < 60);
	free(body);
	result_writer_free(w);
	assert_true(h_cursors_reach_zero(1000));
	h_env.api->close(h);
}

static void test_time_budget(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 5000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	assert_true(h_failpoint("\"alwaysOn\"", "[\"find\", \"aggregate\"]",
				"\"blockConnection\": true, \"blockTimeMS\": 3000"));
	int64_t t0 = h_now_ms();
	int rc = h_exec(h, "{\"find\": \"orders\"}", NULL, 0, 400, 10, &r, &err);
	int64_t elapsed = h_now_ms() - t0;
	h_result_free(&r);
	assert_true(h_failpoint_off());
	assert_int_equal(rc, CN_ETIMEOUT);
	assert_non_null(strstr(err.message, "time limit of 400 ms"));
	assert_true(elapsed >= 350 && elapsed < 2500);
	/* the next query is fine */
	assert_int_equal(h_exec(h, "{\"count\": \"orders\"}", NULL, 0, 2000, 10, &r, &err), CN_OK);
	assert_string_equal(h_cell(&r, 0, 0), "I:60");
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_pool_exhaustion_is_busy(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 8000, h_env.dsn);
	assert_true(h_failpoint("{\"times\": 1}", "[\"find\"]",
				"\"blockConnection\": true, \"blockTimeMS\": 2500"));
	struct h_job slow;
	h_job_start(&slow, h, "{\"find\": \"orders\"}", 8000);
	h_sleep_ms(300);
	struct h_result r;
	struct cn_error err = {0};
	int64_t t0 = h_now_ms();
	int rc = h_exec(h, "{\"count\": \"orders\"}", NULL, 0, 800, 10, &r, &err);
	int64_t waited = h_now_ms() - t0;
	h_result_free(&r);
	h_job_join(&slow);
	h_failpoint_off();
	assert_int_equal(rc, CN_EBUSY);
	assert_non_null(strstr(err.message, "busy"));
	assert_true(waited >= 700 && waited < 1800);
	assert_int_equal(slow.rc, CN_OK);
	/* and free again */
	assert_int_equal(h_exec(h, "{\"count\": \"orders\"}", NULL, 0, 800, 10, &r, &err), CN_OK);
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_cancel_at_shutdown(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 8000, h_env.dsn);
	assert_true(h_failpoint("{\"times\": 1}", "[\"find\"]",
				"\"blockConnection\": true, \"blockTimeMS\": 1500"));
	struct h_job slow, waiting;
	h_job_start(&slow, h, "{\"find\": \"orders\"}", 8000);
	h_sleep_ms(300);
	h_job_start(&waiting, h, "{\"find\": \"customers\"}", 8000);
	h_sleep_ms(200);
	h_env.api->cancel(h);
	h_job_join(&waiting);
	h_job_join(&slow);
	h_failpoint_off();
	assert_int_equal(waiting.rc, CN_ECANCELED);
	assert_true(waiting.elapsed_ms < 1000);
	assert_int_equal(slow.rc, CN_ECANCELED);
	h_env.api->close(h);
}

static void test_server_paused_and_resumed(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 1500, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	assert_int_equal(h_exec(h, "{\"count\": \"orders\"}", NULL, 0, 1500, 10, &r, &err), CN_OK);
	h_result_free(&r);
	assert_int_equal(h_system("%s/tests/support/mongo.sh pause %s >/dev/null", CN_TEST_SOURCE_DIR,
				  h_env.env_dir), 0);
	int64_t t0 = h_now_ms();
	int rc = h_exec(h, "{\"count\": \"orders\"}", NULL, 0, 1500, 10, &r, &err);
	int64_t elapsed = h_now_ms() - t0;
	h_result_free(&r);
	int resumed = h_system("%s/tests/support/mongo.sh resume %s >/dev/null", CN_TEST_SOURCE_DIR,
			       h_env.env_dir);
	assert_int_equal(resumed, 0);
	assert_int_equal(rc, CN_EUNAVAILABLE);
	assert_non_null(strstr(err.message, "127.0.0.1"));
	assert_true(elapsed < 4000);
	/* the very next request after the server is back succeeds */
	rc = h_exec(h, "{\"count\": \"orders\"}", NULL, 0, 1500, 10, &r, &err);
	if (rc)
		fail_msg("after resume: %s", err.message);
	assert_string_equal(h_cell(&r, 0, 0), "I:60");
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_dropped_connection(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 3000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	/* twice: libmongoc retries a read once after a network error */
	assert_true(h_failpoint("{\"times\": 2}", "[\"find\"]", "\"closeConnection\": true"));
	int rc = h_exec(h, "{\"find\": \"orders\"}", NULL, 0, 3000, 10, &r, &err);
	h_result_free(&r);
	h_failpoint_off();
	assert_int_equal(rc, CN_EUNAVAILABLE);
	/* once: the retry hides it */
	assert_true(h_failpoint("{\"times\": 1}", "[\"find\"]", "\"closeConnection\": true"));
	rc = h_exec(h, "{\"find\": \"orders\"}", NULL, 0, 3000, 10, &r, &err);
	h_failpoint_off();
	assert_int_equal(rc, CN_OK);
	assert_int_equal(r.nrows, 10);
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_server_errors(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 3000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	assert_true(h_failpoint("{\"times\": 1}", "[\"aggregate\"]", "\"errorCode\": 2"));
	int rc = h_exec(h, "{\"aggregate\": \"orders\", \"pipeline\": []}", NULL, 0, 3000, 10, &r, &err);
	h_result_free(&r);
	h_failpoint_off();
	assert_int_equal(rc, CN_EQUERY);
	assert_true(err.message[0] != '\0');
	/* the server's own refusal of a bad argument */
	rc = h_exec(h, "{\"aggregate\": \"orders\", \"pipeline\": [{\"$bucket\": {\"groupBy\": \"$quantity\", "
		    "\"boundaries\": [5, 1]}}]}", NULL, 0, 3000, 10, &r, &err);
	h_result_free(&r);
	assert_int_equal(rc, CN_EQUERY);
	/* a collection that does not exist is empty, as on a real server */
	assert_int_equal(h_exec(h, "{\"find\": \"no_such_collection\"}", NULL, 0, 3000, 10, &r, &err),
			 CN_OK);
	assert_int_equal(r.nrows, 0);
	assert_int_equal(r.ncols, 0);
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_failing_sink(void **state)
{
	(void)state;
	void *h = h_open_or_fail(1, 3000, h_env.dsn);
	int cells = 0;
	struct cn_result_sink sink;
	h_sink_failing(&sink, &cells);
	struct cn_query q = {.text = "{\"find\": \"orders\"}", .timeout_ms = 3000, .max_rows = 50};
	struct cn_error err = {0};
	assert_int_equal(h_env.api->execute(h, &q, &sink, &err), CN_ETOOBIG);
	assert_int_equal(cells, 3);
	assert_true(h_cursors_reach_zero(1000));
	h_env.api->close(h);
}

static void test_hidden_fields_scrubbed(void **state)
{
	(void)state;
	void *h = NULL;
	struct h_result r;
	struct cn_error err = {0};
	if (h_open(h_env.dsn, 2, 5000, true, &h, &err, NULL) != CN_OK)
		fail_msg("open failed: %s", err.message);
	if (h_introspect_quietly(h, &err) <= 0)
		fail_msg("introspect: %s", err.message);
	assert_int_equal(h_exec(h, "{\"find\": \"customers\"}", NULL, 0, 5000, 100, &r, &err), CN_OK);
	assert_int_equal(h_col(&r, "email"), -1);
	assert_int_equal(h_col(&r, "ssn"), -1);
	assert_true(h_col(&r, "address") >= 0);
	char *text = h_result_text(&r);
	assert_null(strstr(text, "street"));
	assert_null(strstr(text, "@example.com"));
	assert_null(strstr(text, "Hauptstra"));
	assert_non_null(strstr(text, "\"city\":\"Berlin\""));
	free(text);
	h_result_free(&r);
	/* kept at its path by a projection, still scrubbed */
	assert_int_equal(h_exec(h, "{\"aggregate\": \"customers\", \"pipeline\": [{\"$project\": "
				"{\"address\": 1, \"name\": 1}}]}", NULL, 0, 5000, 100, &r, &err), CN_OK);
	text = h_result_text(&r);
	assert_null(strstr(text, "street"));
	free(text);
	h_result_free(&r);
	/* moved elsewhere: refused, since introspection told the guard */
	assert_int_equal(h_exec(h, "{\"aggregate\": \"customers\", \"pipeline\": [{\"$project\": "
				"{\"a\": \"$address\"}}]}", NULL, 0, 5000, 100, &r, &err), CN_EREJECTED);
	h_result_free(&r);
	assert_int_equal(h_exec(h, "{\"find\": \"secrets\"}", NULL, 0, 5000, 100, &r, &err), CN_EREJECTED);
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_count_distinct_explain(void **state)
{
	(void)state;
	void *h = h_open_or_fail(2, 5000, h_env.dsn);
	struct h_result r;
	struct cn_error err = {0};
	assert_int_equal(h_exec(h, "{\"distinct\": \"orders\", \"key\": \"items.sku\"}", NULL, 0, 5000, 3,
				&r, &err), CN_OK);
	assert_int_equal(r.nrows, 3);
	assert_true(r.ended_early);
	assert_string_equal(r.cols[0].name, "items.sku");
	assert_string_equal(r.cols[0].column, "items.sku");
	h_result_free(&r);
	assert_int_equal(h_exec(h, "{\"count\": \"orders\", \"query\": {\"status\": \"paid\"}, \"limit\": 5}",
				NULL, 0, 5000, 10, &r, &err), CN_OK);
	assert_string_equal(h_cell(&r, 0, 0), "I:5");
	assert_null(r.cols[0].table); /* a count is no field of the collection */
	h_result_free(&r);
	assert_int_equal(h_exec(h, "{\"explain\": {\"find\": \"orders\"}, \"verbosity\": \"queryPlanner\"}",
				NULL, 0, 5000, 10, &r, &err), CN_OK);
	assert_int_equal(r.nrows, 1);
	assert_int_equal(h_col(&r, "serverInfo"), -1);
	h_result_free(&r);
	h_env.api->close(h);
}

static void test_dsn_errors(void **state)
{
	(void)state;
	void *h = NULL;
	struct cn_error err = {0};
	assert_int_equal(h_open("mongodb://127.0.0.1:1", 1, 1000, false, &h, &err, NULL), CN_ECONFIG);
	assert_non_null(strstr(err.message, "names no database"));
	assert_int_equal(h_open("mongodb://127.0.0.1:1/admin", 1, 1000, false, &h, &err, NULL),
			 CN_ECONFIG);
	assert_int_equal(h_open("mongodb://u:S3cretPw@127.0.0.1:1/x?badOption=%zz", 1, 1000, false, &h,
				&err, NULL), CN_ECONFIG);
	assert_null(strstr(err.message, "S3cretPw"));
	assert_int_equal(h_open("postgres://x/y", 1, 1000, false, &h, &err, NULL), CN_ECONFIG);
	int64_t t0 = h_now_ms();
	int rc = h_open("mongodb://u:S3cretPw@127.0.0.1:1/connector_test", 1, 800, false, &h, &err, NULL);
	assert_int_equal(rc, CN_EUNAVAILABLE);
	assert_true(h_now_ms() - t0 < 4000);
	assert_null(strstr(err.message, "S3cretPw"));
	assert_non_null(strstr(err.message, "127.0.0.1:1"));
	assert_int_equal(h_open(h_env.dsn, 1, 1000, false, &h, &err, "sample_size", "-1", NULL), CN_ECONFIG);
	assert_int_equal(h_open(h_env.dsn, 1, 1000, false, &h, &err, "schemas", "x", NULL), CN_ECONFIG);
	assert_non_null(strstr(err.message, "unknown option 'schemas'"));
	/* the dsn's read preference and read concern are accepted and used */
	char uri[300];
	snprintf(uri, sizeof uri, "%s?readPreference=primaryPreferred&readConcernLevel=local", h_env.dsn);
	assert_int_equal(h_open(uri, 1, 3000, false, &h, &err, NULL), CN_OK);
	struct h_result r;
	assert_int_equal(h_exec(h, "{\"find\": \"orders\", \"limit\": 2}", NULL, 0, 3000, 10, &r, &err),
			 CN_OK);
	assert_int_equal(r.nrows, 2);
	h_result_free(&r);
	h_env.api->close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_type),
		cmocka_unit_test(test_parameters_are_values),
		cmocka_unit_test(test_row_cap_kills_the_cursor),
		cmocka_unit_test(test_byte_cap),
		cmocka_unit_test(test_time_budget),
		cmocka_unit_test(test_pool_exhaustion_is_busy),
		cmocka_unit_test(test_cancel_at_shutdown),
		cmocka_unit_test(test_dropped_connection),
		cmocka_unit_test(test_server_errors),
		cmocka_unit_test(test_failing_sink),
		cmocka_unit_test(test_hidden_fields_scrubbed),
		cmocka_unit_test(test_count_distinct_explain),
		cmocka_unit_test(test_dsn_errors),
		cmocka_unit_test(test_server_paused_and_resumed),
	};
	return cmocka_run_group_tests(tests, h_setup, h_teardown);
}
