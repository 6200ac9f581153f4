/*
 * test_mysql_types.c - the MySQL/MariaDB driver's type mapping (my_types.h)
 * on a row of every type and a row of NULLs, the column types and origins
 * the core masks by (an alias keeps its origin; a view's column names its
 * base table), and long values that outgrow the first buffers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "my_harness.h"

static void *h;

static int setup(void **state)
{
	struct cn_error err = {0};
	if (h_setup(state))
		return -1;
	if (h_open(h_env.dsn, 2, 5000, false, &h, &err, NULL) != CN_OK) {
		fprintf(stderr, "open: %s\n", err.message);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	if (h_env.api)
		h_env.api->close(h);
	return h_teardown(state);
}

static void run(const char *sql, struct h_result *r)
{
	struct cn_error err = {0};
	if (h_exec(h, sql, NULL, 0, 5000, 0, r, &err) != CN_OK)
		fail_msg("%s: %s", sql, err.message);
}

static void test_every_type(void **state)
{
	(void)state;
	static const struct {
		const char *column, *type, *value;
	} want[] = {
		{"t_tinyint", "tinyint", "I:-128"},
		{"t_smallint", "smallint", "I:-32768"},
		{"t_mediumint", "mediumint", "I:-8388608"},
		{"t_int", "int", "I:-2147483648"},
		{"t_bigint", "bigint", "I:-9223372036854775808"},
		{"t_ubigint", "bigint unsigned", "N:18446744073709551615"},
		{"t_decimal", "decimal", "N:12345678901234567890.0123456789"},
		{"t_float", "float", "N:0.1"},
		{"t_double", "double", "D:3.1415926535897931"},
		{"t_bool", "tinyint", "I:1"},
		{"t_bit", "bit", "I:641"},
		{"t_date", "date", "T:2024-02-29"},
		{"t_datetime", "datetime", "T:2024-02-29T13:45:59.123456"},
		{"t_timestamp", "timestamp", "T:2024-02-29T13:45:59.125Z"},
		{"t_time", "time", "T:-838:59:59.000000"},
		{"t_year", "year", "I:2155"},
		{"t_char", "char", "T:ab"},
		{"t_varchar", "varchar", "T:héllo wörld"},
		{"t_text", "text", "T:long text ✓"},
		{"t_json", "json", "J:{\"a\": [1, 2.5, \"x\"], \"b\": null, \"c\": {\"d\": true}}"},
		{"t_blob", "blob", "X:00ff10"},
		{"t_binary", "binary", "X:cafe0000"},
		{"t_varbinary", "varbinary", "X:deadbeef00"},
		{"t_enum", "enum", "T:large"},
		{"t_set", "set", "T:a,c"},
		{"t_uuid", "uuid", "T:123e4567-e89b-12d3-a456-426614174000"},
		{"t_inet6", "inet6", "T:2001:db8::1"},
	};
	struct h_result r;
	run("SELECT * FROM type_zoo ORDER BY id", &r);
	assert_int_equal(r.nrows, 2);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		int c = h_col(&r, want[i].column);
		if (c < 0)
			fail_msg("no column %s", want[i].column);
		if (strcmp(r.cols[c].type, want[i].type))
			fail_msg("%s: type %s, want %s", want[i].column, r.cols[c].type, want[i].type);
		if (strcmp(h_cell(&r, 0, (size_t)c), want[i].value))
			fail_msg("%s: %s, want %s", want[i].column, h_cell(&r, 0, (size_t)c),
				 want[i].value);
		assert_string_equal(h_cell(&r, 1, (size_t)c), "NULL");
		assert_string_equal(r.cols[c].schema, "connector_test");
		assert_string_equal(r.cols[c].table, "type_zoo");
		assert_string_equal(r.cols[c].column, want[i].column);
	}
	h_result_free(&r);
}

static void test_computed_values(void **state)
{
	(void)state;
	struct h_result r;
	run("SELECT 1 + 1 AS two, 2.50 AS dec_literal, 1e0 / 3 AS third, CAST(0.1 AS FLOAT) AS f, "
	    "DATE '2024-01-02' AS d, TIME '25:00:00' AS t, JSON_OBJECT('k', 1) AS j, NULL AS n, "
	    "CAST(18446744073709551615 AS UNSIGNED) AS big, CAST(5 AS UNSIGNED) AS small, "
	    "b'1' AS bit1, _binary 'x' AS bin", &r);
	assert_string_equal(h_cell(&r, 0, 0), "I:2");
	assert_string_equal(h_cell(&r, 0, 1), "N:2.50");
	assert_string_equal(h_cell(&r, 0, 2), "D:0.33333333333333331");
	assert_string_equal(h_cell(&r, 0, 3), "N:0.1");
	assert_string_equal(h_cell(&r, 0, 4), "T:2024-01-02");
	assert_string_equal(h_cell(&r, 0, 5), "T:25:00:00");
	/* MariaDB's JSON_OBJECT() result carries no json format: it is text */
	assert_true(!strcmp(h_cell(&r, 0, 6), "T:{\"k\": 1}") || !strcmp(h_cell(&r, 0, 6), "J:{\"k\": 1}"));
	assert_string_equal(h_cell(&r, 0, 7), "NULL");
	assert_string_equal(h_cell(&r, 0, 8), "N:18446744073709551615");
	assert_string_equal(h_cell(&r, 0, 9), "I:5");
	assert_string_equal(h_cell(&r, 0, 11), "X:78");
	/* computed columns have no origin */
	assert_null(r.cols[0].table);
	assert_null(r.cols[0].column);
	h_result_free(&r);
}

static void test_origins(void **state)
{
	(void)state;
	struct h_result r;
	run("SELECT phone AS p, c.email AS e, upper(name) AS u FROM customers c LIMIT 1", &r);
	assert_string_equal(r.cols[0].name, "p");
	assert_string_equal(r.cols[0].table, "customers");
	assert_string_equal(r.cols[0].column, "phone");
	assert_string_equal(r.cols[1].table, "customers");
	assert_string_equal(r.cols[1].column, "email");
	assert_null(r.cols[2].table);
	h_result_free(&r);
	/* a view's column names the base table (with no database) */
	run("SELECT email FROM order_totals LIMIT 1", &r);
	assert_null(r.cols[0].schema);
	assert_string_equal(r.cols[0].table, "customers");
	assert_string_equal(r.cols[0].column, "email");
	h_result_free(&r);
}

static void test_long_values(void **state)
{
	(void)state;
	struct h_result r;
	run("SELECT REPEAT('ab', 5000) AS s, REPEAT('x', 10) AS short_one UNION ALL "
	    "SELECT REPEAT('cd', 20000), REPEAT('y', 300)", &r);
	assert_int_equal(r.nrows, 2);
	assert_int_equal(strlen(h_cell(&r, 0, 0)), 2 + 10000);
	assert_int_equal(strlen(h_cell(&r, 1, 0)), 2 + 40000);
	assert_int_equal(strncmp(h_cell(&r, 1, 0), "T:cdcd", 6), 0);
	assert_int_equal(strlen(h_cell(&r, 1, 1)), 2 + 300);
	h_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_type),
		cmocka_unit_test(test_computed_values),
		cmocka_unit_test(test_origins),
		cmocka_unit_test(test_long_values),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
