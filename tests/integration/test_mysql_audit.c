/*
 * test_mysql_audit.c - the MySQL driver's least-privilege audit: silent for
 * the SELECT-only user, a warning naming what an ALL PRIVILEGES user can
 * do, and never a password or a password hash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "my_harness.h"

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

static void test_select_only_user_is_silent(void **state)
{
	(void)state;
	char warning[600];
	audit(h_env.dsn, warning, sizeof warning);
	assert_string_equal(warning, "");
}

static void test_all_privileges_are_named(void **state)
{
	(void)state;
	char warning[600];
	audit(h_env.super_dsn, warning, sizeof warning);
	assert_non_null(strstr(warning, "user 'connector_admin' can write or administer: "
					 "GRANT OPTION, ALL PRIVILEGES"));
	assert_non_null(strstr(warning, "SELECT-only user"));
	assert_null(strstr(warning, getenv("CN_TEST_MYSQL_ADMIN_PASSWORD")));
	assert_null(strstr(warning, "*")); /* no password hash */
}

static void test_single_privileges_are_named(void **state)
{
	(void)state;
	MYSQL *a = h_admin();
	assert_non_null(a);
	h_admin_exec(a, "DROP USER IF EXISTS 'cn_audit'@'%'");
	assert_int_equal(h_admin_exec(a, "CREATE USER 'cn_audit'@'%' IDENTIFIED BY 'cn-audit-pw-1'"), 0);
	assert_int_equal(h_admin_exec(a, "GRANT SELECT, INSERT, UPDATE (msg) ON connector_test.audit_log "
					 "TO 'cn_audit'@'%'"), 0);
	assert_int_equal(h_admin_exec(a, "GRANT FILE, PROCESS ON *.* TO 'cn_audit'@'%'"), 0);
	char dsn[256];
	snprintf(dsn, sizeof dsn, "mysql://cn_audit:cn-audit-pw-1@127.0.0.1:%s/connector_test",
		 getenv("CN_TEST_MYSQL_PORT"));
	char warning[600];
	audit(dsn, warning, sizeof warning);
	assert_non_null(strstr(warning, "FILE"));
	assert_non_null(strstr(warning, "PROCESS"));
	assert_non_null(strstr(warning, "INSERT"));
	assert_non_null(strstr(warning, "UPDATE"));
	assert_null(strstr(warning, "cn-audit-pw-1"));
	assert_int_equal(h_admin_exec(a, "DROP USER 'cn_audit'@'%'"), 0);
	mysql_close(a);
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
		cmocka_unit_test(test_select_only_user_is_silent),
		cmocka_unit_test(test_all_privileges_are_named),
		cmocka_unit_test(test_single_privileges_are_named),
		cmocka_unit_test(test_warning_fits_a_small_buffer),
	};
	return cmocka_run_group_tests(tests, h_setup, h_teardown);
}
