/*
 * test_mongodb_audit.c - the driver's least-privilege audit from
 * connectionStatus with showPrivileges: silent for a user with the read
 * role, a warning naming the roles and write actions of readWrite, dbOwner
 * and root, and one for a server without authentication. The test server's
 * cnTestSetRoles command sets the roles it reports.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mongo_harness.h"

static void audit_with(const char *roles, char *warning, size_t len)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "{\"cnTestSetRoles\": %s}", roles);
	assert_true(h_command("admin", cmd, NULL));
	void *h = NULL;
	struct cn_error err = {0};
	assert_int_equal(h_open(h_env.dsn, 1, 5000, false, &h, &err, NULL), CN_OK);
	assert_non_null(h_env.api->audit);
	memset(warning, 'x', len);
	assert_int_equal(h_env.api->audit(h, warning, len, &err), CN_OK);
	h_env.api->close(h);
}

static int restore_read(void **state)
{
	(void)state;
	return h_command("admin", "{\"cnTestSetRoles\": [\"read\"]}", NULL) ? 0 : -1;
}

static void test_read_role_is_silent(void **state)
{
	(void)state;
	char warning[600];
	audit_with("[\"read\"]", warning, sizeof warning);
	assert_string_equal(warning, "");
	audit_with("[\"readAnyDatabase\"]", warning, sizeof warning);
	assert_string_equal(warning, "");
}

static void test_write_roles_are_named(void **state)
{
	(void)state;
	char warning[600];
	audit_with("[\"readWrite\"]", warning, sizeof warning);
	assert_non_null(strstr(warning, "can write to database 'connector_test'"));
	assert_non_null(strstr(warning, "readWrite@connector_test"));
	assert_non_null(strstr(warning, "insert"));
	assert_non_null(strstr(warning, "read role"));
	audit_with("[\"dbOwner\"]", warning, sizeof warning);
	assert_non_null(strstr(warning, "dbOwner@connector_test"));
	assert_non_null(strstr(warning, "dropDatabase"));
	audit_with("[\"root\"]", warning, sizeof warning);
	assert_non_null(strstr(warning, "root@admin"));
	/* a role on another database does not write here */
	audit_with("[\"readWrite@otherdb\", \"read\"]", warning, sizeof warning);
	assert_string_equal(warning, "");
}

static void test_no_user(void **state)
{
	(void)state;
	char warning[600];
	audit_with("[]", warning, sizeof warning);
	assert_non_null(strstr(warning, "no user is authenticated"));
}

static void test_warning_fits_a_small_buffer(void **state)
{
	(void)state;
	char warning[40];
	audit_with("[\"root\", \"readWrite\"]", warning, sizeof warning);
	assert_true(strlen(warning) < sizeof warning);
	assert_non_null(strstr(warning, "user"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_read_role_is_silent, restore_read),
		cmocka_unit_test_teardown(test_write_roles_are_named, restore_read),
		cmocka_unit_test_teardown(test_no_user, restore_read),
		cmocka_unit_test_teardown(test_warning_fits_a_small_buffer, restore_read),
	};
	return cmocka_run_group_tests(tests, h_setup, h_teardown);
}
