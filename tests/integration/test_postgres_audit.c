/*
 * test_postgres_audit.c - the driver's least-privilege audit: silent for the
 * SELECT-only role, a warning naming what a superuser role can write, and
 * never the password.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "pg_harness.h"

static void audit(const char *dsn, char *warning, size_t len)
{
	void *h = NULL;
	struct cn_error err = {0};
	assert_int_equal(h_open(dsn, 1, 5000, false, &h, &err, NULL), CN_OK);
	assert_non_null(h_env.api->audit);
	memset(warning, 'x', len);
	assert_int_equal(h_env.api->audit(h, warning, len, &err), CN_OK);
	h_env.api->close(h);
}

static void test_read_only_role_is_silent(void **state)
{
	(void)state;
	char warning[600];
	audit(h_env.dsn, warning, sizeof warning);
	assert_string_equal(warning, "");
}

static void test_superuser_is_named(void **state)
{
	(void)state;
	char warning[600];
	audit(h_env.super_dsn, warning, sizeof warning);
	assert_non_null(strstr(warning, "role 'connector_admin' can write"));
	assert_non_null(strstr(warning, "superuser"));
	assert_non_null(strstr(warning, "INSERT/UPDATE/DELETE/TRUNCATE on"));
	assert_non_null(strstr(warning, "SELECT-only role"));
	const char *pw = strstr(h_env.super_dsn, "password=");
	assert_non_null(pw);
	assert_null(strstr(warning, pw + strlen("password=")));
}

static void test_warning_fits_a_small_buffer(void **state)
{
	(void)state;
	char warning[40];
	audit(h_env.super_dsn, warning, sizeof warning);
	assert_true(strlen(warning) < sizeof warning);
	assert_non_null(strstr(warning, "connector_admin"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_only_role_is_silent),
		cmocka_unit_test(test_superuser_is_named),
		cmocka_unit_test(test_warning_fits_a_small_buffer),
	};
	return cmocka_run_group_tests(tests, h_setup, h_teardown);
}
