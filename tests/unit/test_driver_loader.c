/* The driver loader: a good module loads, every bad one is refused with a
 * message that names the file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "driver_loader.h"

static void test_loads_sqlite(void **state)
{
	(void)state;
	struct driver_module *m = NULL;
	struct cn_error err = {0};
	assert_int_equal(driver_load(CN_TEST_DRIVER_DIR, "sqlite", &m, &err), CN_OK);
	assert_non_null(m);
	assert_string_equal(m->api->name, "sqlite");
	assert_int_equal(m->api->abi_version, CN_DRIVER_ABI_VERSION);
	assert_true(m->api->caps & CN_CAP_SQL);
	assert_non_null(strstr(m->path, "/sqlite.so"));
	driver_unload(m);
}

static const struct {
	const char *name;
	int code;
	const char *needle;
} refused[] = {
	{"bad_abi", CN_EABI, "ABI version"},
	{"no_entry", CN_EABI, "not a connector driver"},
	{"wrong_name", CN_EABI, "expected 'wrong_name'"},
	{"missing", CN_ENOTFOUND, "no such driver module"},
};

static void test_refuses_bad_modules(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		struct driver_module *m = NULL;
		struct cn_error err = {0};
		int rc = driver_load(CN_TEST_BAD_DRIVER_DIR, refused[i].name, &m, &err);
		assert_int_equal(rc, refused[i].code);
		assert_null(m);
		assert_non_null(strstr(err.message, refused[i].needle));
		/* the message names the file */
		assert_non_null(strstr(err.message, CN_TEST_BAD_DRIVER_DIR));
		assert_non_null(strstr(err.message, refused[i].name));
	}
}

static void test_refuses_bad_names(void **state)
{
	(void)state;
	static const char *const names[] = {"", "../sqlite", "SQLite", "a/b", "sqlite.so",
					    "averyveryveryveryverylongdrivername"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		struct driver_module *m = NULL;
		struct cn_error err = {0};
		assert_int_equal(driver_load(CN_TEST_DRIVER_DIR, names[i], &m, &err), CN_EINVAL);
		assert_null(m);
	}
}

static void test_check_table(void **state)
{
	(void)state;
	struct cn_driver t = {.abi_version = CN_DRIVER_ABI_VERSION, .struct_size = sizeof t, .name = "x"};
	struct cn_error err = {0};
	/* no functions */
	assert_int_equal(driver_check_table(&t, "x", "/p/x.so", &err), CN_EABI);
	assert_non_null(strstr(err.message, "/p/x.so"));
	/* too small a table: built against an older, shorter ABI */
	t.struct_size = sizeof t - 8;
	assert_int_equal(driver_check_table(&t, "x", "/p/x.so", &err), CN_EABI);
	assert_non_null(strstr(err.message, "bytes"));
	assert_int_equal(driver_check_table(NULL, "x", "/p/x.so", &err), CN_EABI);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loads_sqlite),
		cmocka_unit_test(test_refuses_bad_modules),
		cmocka_unit_test(test_refuses_bad_names),
		cmocka_unit_test(test_check_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
