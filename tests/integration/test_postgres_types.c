/*
 * test_postgres_types.c - the PostgreSQL driver's cell mapping (every type of
 * docs/postgres.md), column types and origins, parameters, and error
 * statuses, against the fixture database of tests/support/pg.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_harness.h"

static void *handle;

static int group_setup(void **state)
{
	struct cn_error err = {0};
	if (h_setup(state))
		return -1;
	if (h_open(h_env.dsn, 2, 5000, true, &handle, &err, NULL) != CN_OK) {
		fprintf(stderr, "open failed: %s\n", err.message);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	if (h_env.api) /* setup may have failed before loading it */
		h_env.api->close(handle);
	return h_teardown(state);
}

struct expect_cell {
	const char *column;
	const char *type;
	const char *row1; /* the full row */
	const char *row3; /* edge values */
};

/* One entry per column of public.type_samples (tests/fixtures/postgres). */
static const struct expect_cell type_cases[] = {
	{"c_int2", "smallint", "I:-32768", "I:0"},
	{"c_int4", "integer", "I:2147483647", "I:0"},
	{"c_int8", "bigint", "I:9223372036854775807", "I:-9223372036854775808"},
	{"c_oid", "oid", "I:4294967295", "I:0"},
	{"c_float4", "real", "N:1.5", "N:Infinity"},
	{"c_float8", "double precision", "N:0.1", "N:NaN"},
	{"c_numeric", "numeric", "N:123456789012345678901234567890.123456789", "N:NaN"},
	{"c_bool", "boolean", "B:true", "B:false"},
	{"c_date", "date", "T:2024-02-29", "T:infinity"},
	{"c_time", "time without time zone", "T:13:45:30.5", "T:00:00:00"},
	{"c_timetz", "time with time zone", "T:13:45:30+02", "T:00:00:00+00"},
	{"c_ts", "timestamp without time zone", "T:2024-02-29T13:45:30.123456", "T:-infinity"},
	{"c_tstz", "timestamp with time zone", "T:2024-02-29T11:45:30+00:00",
	 "T:1999-12-31T18:29:59.999+00:00"},
	{"c_interval", "interval", "T:1 day 02:03:04", "T:-1 mons"},
	{"c_uuid", "uuid", "T:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
	 "T:00000000-0000-0000-0000-000000000000"},
	{"c_json", "json", "J:{\"a\": [1, 2, {\"b\": null}]}", "J:[]"},
	{"c_jsonb", "jsonb", "J:{\"a\": \"x\", \"z\": 1}", "J:[]"},
	{"c_bytea", "bytea", "X:00ff10", "X:"},
	{"c_text", "text", "T:h\xc3\xa9llo \"quoted\" \\ back", "T:"},
	{"c_varchar", "character varying(20)", "T:short", "T:"},
	{"c_char", "character(3)", "T:ab ", "T:   "},
	{"c_int_arr", "integer[]", "J:[1,2,3]", "J:[]"},
	{"c_text_arr", "text[]", "J:[\"a b\",\"c,d\",null,\"NULL\",\"q\\\"x\"]", "J:[]"},
	{"c_float_arr", "double precision[]", "J:[1.5,\"NaN\",\"-Infinity\"]", "J:[]"},
	{"c_bool_arr", "boolean[]", "J:[true,false,null]", "J:[]"},
	{"c_int_arr2", "integer[]", "J:[[1,2],[3,4]]", "J:[]"},
	{"c_jsonb_arr", "jsonb[]", "J:[{\"k\": 1},[true]]", "J:[]"},
	{"c_ts_arr", "timestamp without time zone[]", "J:[\"2024-01-01T00:00:00\",null]", "J:[]"},
	{"c_mood", "mood", "T:happy", "T:sad"},
	{"c_posint", "integer", "I:42", "I:1"}, /* domains arrive as their base type */
	{"c_inet", "inet", "T:192.168.0.1/24", "T:::1"},
	{"c_money", "money", "T:$12.34", "T:$0.00"},
};

static void test_every_type(void **state)
{
	(void)state;
	struct h_result r;
	struct cn_error err = {0};
	int rc = h_exec(handle, "SELECT * FROM public.type_samples ORDER BY id", NULL, 0, 5000, 0, &r,
			&err);
	assert_int_equal(rc, CN_OK);
	assert_int_equal(r.nrows, 3);
	for (size_t i = 0; i < sizeof type_cases / sizeof type_cases[0]; i++) {
		const struct expect_cell *e = &type_cases[i];
		int c = h_col(&r, e->column);
		if (c < 0)
			fail_msg("column %s missing", e->column);
		const struct h_column *col = &r.cols[c];
		if (strcmp(col->type, e->type) != 0)
			fail_msg("%s: type '%s', expected '%s'", e->column, col->type, e->type);
		assert_string_equal(col->schema, "public");
		assert_string_equal(col->table, "type_samples");
		assert_string_equal(col->column, e->column);
		if (strcmp(h_cell(&r, 0, (size_t)c), e->row1) != 0)
			fail_msg("%s row 1: '%s', expected '%s'", e->column, h_cell(&r, 0, (size_t)c),
				 e->row1);
		if (strcmp(h_cell(&r, 1, (size_t)c), "NULL") != 0)
			fail_msg("%s row 2: '%s', expected NULL", e->column, h_cell(&r, 1, (size_t)c));
		if (strcmp(h_cell(&r, 2, (size_t)c), e->row3) != 0)
			fail_msg("%s row 3: '%s', expected '%s'", e->column, h_cell(&r, 2, (size_t)c),
				 e->row3);
	}
	h_result_free(&r);
}

static void test_expressions_and_arrays(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		const char *type;
		const char *cell;
	} cases[] = {
		{"SELECT 1 + 1", "integer", "I:2"},
		{"SELECT 10000000000", "bigint", "I:10000000000"},
		{"SELECT 1.50::numeric(10,2)", "numeric(10,2)", "N:1.50"},
		{"SELECT 'x'::varchar(5)", "character varying(5)", "T:x"},
		{"SELECT '{}'::int[]", "integer[]", "J:[]"},
		{"SELECT '[0:1]={7,8}'::int[]", "integer[]", "J:[7,8]"},
		{"SELECT ARRAY['a\\b', 'x y']", "text[]", "J:[\"a\\\\b\",\"x y\"]"},
		{"SELECT ARRAY[1.5, 2]::numeric[]", "numeric[]", "J:[1.5,2]"},
		{"SELECT ARRAY['2024-01-02 03:04:05+00'::timestamptz]", "timestamp with time zone[]",
		 "J:[\"2024-01-02T03:04:05+00:00\"]"},
		{"SELECT '{\"(1,2)\"}'::point[]", "point[]", "J:[\"(1,2)\"]"},
		{"SELECT '{(1,2),(3,4);(5,6),(7,8)}'::box[]", "box[]",
		 "J:[\"(3,4),(1,2)\",\"(7,8),(5,6)\"]"},
		{"SELECT ARRAY['ok'::public.mood]", "mood[]", "J:[\"ok\"]"},
		{"SELECT ARRAY[3::public.posint]", "posint[]", "J:[3]"},
		{"SELECT '2024-06-01 12:00:00-07'::timestamptz", "timestamp with time zone",
		 "T:2024-06-01T19:00:00+00:00"},
		{"SELECT '0044-03-15 12:00:00 BC'::timestamp", "timestamp without time zone",
		 "T:0044-03-15 12:00:00 BC"},
		{"SELECT NULL::text", "text", "NULL"},
		{"SELECT 'a'::\"char\"", "\"char\"", "T:a"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct h_result r;
		struct cn_error err = {0};
		int rc = h_exec(handle, cases[i].sql, NULL, 0, 5000, 0, &r, &err);
		if (rc != CN_OK)
			fail_msg("%s: %d %s", cases[i].sql, rc, err.message);
		assert_int_equal(r.ncols, 1);
		if (strcmp(r.cols[0].type, cases[i].type) || strcmp(h_cell(&r, 0, 0), cases[i].cell))
			fail_msg("%s: got %s '%s', expected %s '%s'", cases[i].sql, r.cols[0].type,
				 h_cell(&r, 0, 0), cases[i].type, cases[i].cell);
		assert_null(r.cols[0].table); /* expressions have no origin */
		h_result_free(&r);
	}
}

static void test_parameters(void **state)
{
	(void)state;
	static const char bytes[] = {0, 1, 2, (char)0xff};
	struct cn_value p[8] = {
		{.kind = CN_VAL_INT, .u.i = 41},
		{.kind = CN_VAL_TEXT, .u.s = {"h\xc3\xa9llo; DROP", 12}},
		{.kind = CN_VAL_DOUBLE, .u.d = 1.25},
		{.kind = CN_VAL_BOOL, .u.b = true},
		{.kind = CN_VAL_BYTES, .u.s = {bytes, sizeof bytes}},
		{.kind = CN_VAL_NUMERIC, .u.s = {"1.10", 4}},
		{.kind = CN_VAL_JSON, .u.s = {"{\"a\":\"b\"}", 9}},
		{.kind = CN_VAL_NULL},
	};
	struct h_result r;
	struct cn_error err = {0};
	int rc = h_exec(handle,
			"SELECT $1::int + 1, $2::text, $3::float8 * 2, NOT $4::bool, $5::bytea, "
			"$6::numeric, $7::jsonb ->> 'a', $8::text IS NULL",
			p, 8, 5000, 0, &r, &err);
	if (rc != CN_OK)
		fail_msg("%s", err.message);
	static const char *const want[] = {"I:42", "T:h\xc3\xa9llo; DROP", "N:2.5", "B:false",
					   "X:000102ff", "N:1.10", "T:b", "B:true"};
	for (size_t i = 0; i < 8; i++)
		if (strcmp(h_cell(&r, 0, i), want[i]))
			fail_msg("param %zu: '%s', expected '%s'", i + 1, h_cell(&r, 0, i), want[i]);
	h_result_free(&r);

	/* $1 used twice; a parameter compared with a table column */
	struct cn_value seven = {.kind = CN_VAL_INT, .u.i = 7};
	assert_int_equal(h_exec(handle, "SELECT $1::int * $1::int", &seven, 1, 5000, 0, &r, &err), CN_OK);
	assert_string_equal(h_cell(&r, 0, 0), "I:49");
	h_result_free(&r);
	struct cn_value sku = {.kind = CN_VAL_TEXT, .u.s = {"MUG-1", 5}};
	assert_int_equal(h_exec(handle, "SELECT name FROM shop.products WHERE sku = $1", &sku, 1, 5000,
				0, &r, &err), CN_OK);
	assert_string_equal(h_cell(&r, 0, 0), "T:Mug; DELETE proof");
	h_result_free(&r);
	struct cn_value inf = {.kind = CN_VAL_DOUBLE, .u.d = -1.0 / 0.0};
	assert_int_equal(h_exec(handle, "SELECT $1::float8", &inf, 1, 5000, 0, &r, &err), CN_OK);
	assert_string_equal(h_cell(&r, 0, 0), "N:-Infinity");
	h_result_free(&r);
}

static void test_parameter_errors(void **state)
{
	(void)state;
	struct h_result r;
	struct cn_error err = {0};
	struct cn_value one = {.kind = CN_VAL_INT, .u.i = 1};
	assert_int_equal(h_exec(handle, "SELECT $1, $2", &one, 1, 5000, 0, &r, &err), CN_EINVAL);
	assert_non_null(strstr(err.message, "uses 2 parameters ($1..$2) but 1 was given"));
	h_result_free(&r);
	assert_int_equal(h_exec(handle, "SELECT 1", &one, 1, 5000, 0, &r, &err), CN_EINVAL);
	assert_non_null(strstr(err.message, "uses 0 parameters"));
	h_result_free(&r);
	struct cn_value nul = {.kind = CN_VAL_TEXT, .u.s = {"a\0b", 3}};
	assert_int_equal(h_exec(handle, "SELECT $1::text", &nul, 1, 5000, 0, &r, &err), CN_EINVAL);
	assert_non_null(strstr(err.message, "NUL byte"));
	h_result_free(&r);
	/* a type the server cannot read: its own message, as a query error */
	struct cn_value word = {.kind = CN_VAL_TEXT, .u.s = {"abc", 3}};
	assert_int_equal(h_exec(handle, "SELECT $1::int", &word, 1, 5000, 0, &r, &err), CN_EQUERY);
	assert_non_null(strstr(err.message, "invalid input syntax for type integer"));
	h_result_free(&r);
}

static void test_origins(void **state)
{
	(void)state;
	struct h_result r;
	struct cn_error err = {0};
	/* the hidden column is sent with its origin, so the core can mask it */
	assert_int_equal(h_exec(handle, "SELECT * FROM crm.customers ORDER BY id", NULL, 0, 5000, 0,
				&r, &err), CN_OK);
	int email = h_col(&r, "email");
	assert_true(email >= 0);
	assert_string_equal(r.cols[email].schema, "crm");
	assert_string_equal(r.cols[email].table, "customers");
	assert_string_equal(r.cols[email].column, "email");
	assert_int_equal(r.nrows, 3);
	h_result_free(&r);
	/* through a subquery the origin is the base table; a view is its own origin */
	assert_int_equal(h_exec(handle, "SELECT x.n AS renamed FROM (SELECT name AS n FROM crm.customers) x",
				NULL, 0, 5000, 0, &r, &err), CN_OK);
	assert_string_equal(r.cols[0].name, "renamed");
	assert_string_equal(r.cols[0].table, "customers");
	assert_string_equal(r.cols[0].column, "name");
	h_result_free(&r);
	assert_int_equal(h_exec(handle, "SELECT order_id, amount FROM shop.order_totals ORDER BY 1",
				NULL, 0, 5000, 0, &r, &err), CN_OK);
	assert_string_equal(r.cols[0].schema, "shop");
	assert_string_equal(r.cols[0].table, "order_totals");
	assert_string_equal(h_cell(&r, 0, 1), "N:25.00");
	h_result_free(&r);
	/* a catalog relation, looked up on demand */
	assert_int_equal(h_exec(handle, "SELECT relname FROM pg_catalog.pg_class WHERE relname = 'pg_type'",
				NULL, 0, 5000, 0, &r, &err), CN_OK);
	assert_string_equal(r.cols[0].schema, "pg_catalog");
	assert_string_equal(r.cols[0].table, "pg_class");
	assert_string_equal(r.cols[0].column, "relname");
	assert_string_equal(r.cols[0].type, "name");
	h_result_free(&r);
	/* a table created after the source was opened */
	PGconn *su = h_super();
	assert_non_null(su);
	PQclear(PQexec(su, "DROP TABLE IF EXISTS public.late_table"));
	PGresult *res = PQexec(su, "CREATE TABLE public.late_table (a int, dropped int, b text);"
				   "ALTER TABLE public.late_table DROP COLUMN dropped;"
				   "INSERT INTO public.late_table VALUES (1, 'x');"
				   "GRANT SELECT ON public.late_table TO connector_ro");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	assert_int_equal(h_exec(handle, "SELECT b, a FROM public.late_table", NULL, 0, 5000, 0, &r,
				&err), CN_OK);
	assert_string_equal(r.cols[0].table, "late_table");
	assert_string_equal(r.cols[0].column, "b");
	assert_string_equal(r.cols[1].column, "a");
	assert_string_equal(h_cell(&r, 0, 0), "T:x");
	h_result_free(&r);
	PQclear(PQexec(su, "DROP TABLE public.late_table"));
	PQfinish(su);
}

static void test_error_statuses(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		int status;
		const char *message;
		enum cn_reject why; /* for CN_EREJECTED: the statement gate's, or 25006 from the server */
	} cases[] = {
		{"SELECT * FROM no_such_table", CN_EQUERY,
		 "relation \"no_such_table\" does not exist (at character 15)", CN_REJECT_OTHER},
		{"SELECT 1/0", CN_EQUERY, "division by zero", CN_REJECT_OTHER},
		{"SELEC 1", CN_EREJECTED, "syntax error at or near \"SELEC\"", CN_REJECT_SYNTAX},
		{"SELECT 1; SELECT 2", CN_EREJECTED, "exactly one statement", CN_REJECT_STATEMENTS},
		{"SELECT * FROM pg_authid", CN_EQUERY, "permission denied for table pg_authid",
		 CN_REJECT_OTHER},
		{"SELECT * FROM shop.supplier_feed", CN_EQUERY, "has no handler", CN_REJECT_OTHER},
		{"WITH d AS (DELETE FROM shop.orders RETURNING 1) SELECT * FROM d", CN_EREJECTED,
		 "read-only transaction", CN_REJECT_WRITE},
		{"SELECT * FROM shop.orders FOR UPDATE", CN_EREJECTED, "read-only transaction",
		 CN_REJECT_WRITE},
		{"DELETE FROM shop.orders", CN_EREJECTED, "DELETE is not allowed", CN_REJECT_WRITE},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct h_result r;
		struct cn_error err = {0};
		int rc = h_exec(handle, cases[i].sql, NULL, 0, 5000, 0, &r, &err);
		if (rc != cases[i].status || !strstr(err.message, cases[i].message))
			fail_msg("%s: %d '%s', expected %d '%s'", cases[i].sql, rc, err.message,
				 cases[i].status, cases[i].message);
		assert_int_equal(err.code, rc);
		if (rc == CN_EREJECTED && err.reject != (int)cases[i].why)
			fail_msg("%s: class %d, expected %d", cases[i].sql, err.reject, (int)cases[i].why);
		h_result_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_type),
		cmocka_unit_test(test_expressions_and_arrays),
		cmocka_unit_test(test_parameters),
		cmocka_unit_test(test_parameter_errors),
		cmocka_unit_test(test_origins),
		cmocka_unit_test(test_error_statuses),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
