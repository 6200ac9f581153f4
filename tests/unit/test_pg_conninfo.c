/*
 * test_pg_conninfo.c - drivers/common/pg_conninfo without a server: URIs
 * and key=value pairs parsed as libpq reads them, defaults that never
 * override the dsn, session options after the user's, the target string,
 * bad dsns refused without a word of their password, and passwords zeroed
 * before they are freed (free is wrapped for this test: tests/CMakeLists.txt).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../drivers/common/pg_conninfo.h"

/* ---- free, watched ---- */

void __real_free(void *p);
void __wrap_free(void *p);

static struct watch {
	const void *p;
	size_t len;
	bool freed, zeroed;
} watches[4];
static size_t nwatches;

static void watch(const void *p, size_t len)
{
	assert_true(nwatches < sizeof watches / sizeof watches[0]);
	watches[nwatches++] = (struct watch){.p = p, .len = len};
}

void __wrap_free(void *p)
{
	for (size_t i = 0; p && i < nwatches; i++) {
		if (watches[i].p != p)
			continue;
		const unsigned char *b = p;
		size_t j = 0;
		while (j < watches[i].len && b[j] == 0)
			j++;
		watches[i].freed = true;
		watches[i].zeroed = j == watches[i].len;
		watches[i].p = NULL;
	}
	__real_free(p);
}

static const char *password_val(const struct pg_conninfo *ci)
{
	for (size_t i = 0; i < ci->n; i++)
		if (!strcmp(ci->keys[i], "password"))
			return ci->vals[i];
	return NULL;
}

static void parse_ok(struct pg_conninfo *ci, const char *dsn)
{
	struct cn_error err = {0};
	*ci = (struct pg_conninfo){0};
	if (pg_conninfo_parse(ci, dsn, "bad dsn", &err) != CN_OK)
		fail_msg("%s: %s", dsn, err.message);
}

/* ---- parsing ---- */

static void test_parse(void **state)
{
	(void)state;
	static const struct {
		const char *dsn, *key, *want; /* want NULL: unset */
	} cases[] = {
	    {"host=db.example port=6543 dbname=app user=ro password=pw", "host", "db.example"},
	    {"host=db.example port=6543 dbname=app user=ro password=pw", "port", "6543"},
	    {"host=db.example port=6543 dbname=app user=ro password=pw", "dbname", "app"},
	    {"host=db.example port=6543 dbname=app user=ro password=pw", "password", "pw"},
	    {"host=h password='a b\\'c'", "password", "a b'c"},
	    {"host=h user=", "user", NULL},
	    {"host=h options='-c work_mem=8MB'", "options", "-c work_mem=8MB"},
	    {"postgresql://ro:p%40ss@db.example:6543/app?sslmode=require", "user", "ro"},
	    {"postgresql://ro:p%40ss@db.example:6543/app?sslmode=require", "password", "p@ss"},
	    {"postgresql://ro:p%40ss@db.example:6543/app?sslmode=require", "host", "db.example"},
	    {"postgresql://ro:p%40ss@db.example:6543/app?sslmode=require", "port", "6543"},
	    {"postgresql://ro:p%40ss@db.example:6543/app?sslmode=require", "dbname", "app"},
	    {"postgresql://ro:p%40ss@db.example:6543/app?sslmode=require", "sslmode", "require"},
	    {"postgres:///app?host=/run/postgresql", "host", "/run/postgresql"},
	    {"postgres:///app?host=/run/postgresql", "password", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pg_conninfo ci;
		parse_ok(&ci, cases[i].dsn);
		const char *got = pg_conninfo_get(&ci, cases[i].key);
		if (cases[i].want ? !got || strcmp(got, cases[i].want) : got != NULL)
			fail_msg("%s: %s is '%s', not '%s'", cases[i].dsn, cases[i].key,
				 got ? got : "(unset)", cases[i].want ? cases[i].want : "(unset)");
		/* the password is kept apart too, for scrubbing */
		if (!strcmp(cases[i].key, "password")) {
			if (cases[i].want)
				assert_string_equal(ci.password, cases[i].want);
			else
				assert_null(ci.password);
		}
		/* as PQconnectdbParams wants them: both arrays end in NULL */
		assert_non_null(ci.keys);
		assert_null(ci.keys[ci.n]);
		assert_null(ci.vals[ci.n]);
		pg_conninfo_free(&ci);
		assert_null(ci.keys);
		assert_int_equal(ci.n, 0);
	}
}

static void test_set_grows(void **state)
{
	(void)state;
	struct pg_conninfo ci = {0};
	char key[32], val[32];
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof key, "k%d", i);
		snprintf(val, sizeof val, "v%d", i);
		assert_int_equal(pg_conninfo_set(&ci, key, val), CN_OK);
	}
	assert_int_equal(pg_conninfo_set(&ci, "k7", "seven"), CN_OK); /* replaces, adds nothing */
	assert_int_equal(ci.n, 100);
	assert_string_equal(pg_conninfo_get(&ci, "k7"), "seven");
	assert_string_equal(pg_conninfo_get(&ci, "k99"), "v99");
	assert_null(pg_conninfo_get(&ci, "k100"));
	assert_null(ci.keys[ci.n]);
	assert_null(ci.vals[ci.n]);
	pg_conninfo_free(&ci);
	pg_conninfo_free(&ci); /* a zeroed one: nothing to do */
}

/* ---- the callers' policies ---- */

static void test_defaults_keep_the_dsn(void **state)
{
	(void)state;
	static const char *const defaults[][2] = {
	    {"connect_timeout", "10"},
	    {"keepalives_idle", "60"},
	    {"fallback_application_name", "interactor-connector"},
	};
	struct pg_conninfo ci;
	parse_ok(&ci, "host=h connect_timeout=3 fallback_application_name=mine");
	assert_int_equal(pg_conninfo_defaults(&ci, defaults, 3), CN_OK);
	assert_string_equal(pg_conninfo_get(&ci, "connect_timeout"), "3");
	assert_string_equal(pg_conninfo_get(&ci, "fallback_application_name"), "mine");
	assert_string_equal(pg_conninfo_get(&ci, "keepalives_idle"), "60");
	pg_conninfo_free(&ci);

	parse_ok(&ci, "postgresql://u@h/d?connect_timeout=7");
	assert_int_equal(pg_conninfo_defaults(&ci, defaults, 3), CN_OK);
	assert_string_equal(pg_conninfo_get(&ci, "connect_timeout"), "7");
	assert_string_equal(pg_conninfo_get(&ci, "fallback_application_name"), "interactor-connector");
	pg_conninfo_free(&ci);
}

static void test_options_after_the_users(void **state)
{
	(void)state;
	struct pg_conninfo ci;
	parse_ok(&ci, "host=h options='-c work_mem=8MB -c DateStyle=German'");
	assert_int_equal(pg_conninfo_options_add(&ci, "-c DateStyle=ISO,YMD"), CN_OK);
	assert_int_equal(pg_conninfo_options_add(&ci, "-c statement_timeout=100"), CN_OK);
	assert_string_equal(
	    pg_conninfo_get(&ci, "options"),
	    "-c work_mem=8MB -c DateStyle=German -c DateStyle=ISO,YMD -c statement_timeout=100");
	pg_conninfo_free(&ci);

	parse_ok(&ci, "postgresql://h/d?options=-c%20geqo%3Doff");
	assert_int_equal(pg_conninfo_options_add(&ci, "-c a=1"), CN_OK);
	assert_string_equal(pg_conninfo_get(&ci, "options"), "-c geqo=off -c a=1");
	pg_conninfo_free(&ci);

	parse_ok(&ci, "host=h");
	assert_int_equal(pg_conninfo_options_add(&ci, "-c a=1"), CN_OK);
	assert_string_equal(pg_conninfo_get(&ci, "options"), "-c a=1");
	pg_conninfo_free(&ci);
}

static void test_target(void **state)
{
	(void)state;
	static const struct {
		const char *dsn, *want;
	} cases[] = {
	    {"host=127.0.0.1 port=1 dbname=connector_test user=u password=Sekr1tPw",
	     "host 127.0.0.1 port 1 database connector_test user u"},
	    {"postgresql://u:s3cretpw@127.0.0.1:1/x?connect_timeout=2",
	     "host 127.0.0.1 port 1 database x user u"},
	    {"hostaddr=10.0.0.9 dbname=d", "host 10.0.0.9 port 5432 database d"},
	    {"host=h hostaddr=10.0.0.9", "host h port 5432 database (default)"},
	    {"user=u password=Sekr1tPw", "host (local socket) port 5432 database u user u"},
	    {"", "host (local socket) port 5432 database (default)"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pg_conninfo ci;
		parse_ok(&ci, cases[i].dsn);
		char *t = pg_conninfo_target(&ci);
		assert_non_null(t);
		assert_string_equal(t, cases[i].want);
		free(t);
		pg_conninfo_free(&ci);
	}
}

/* ---- bad dsns ---- */

static void test_bad_dsn_never_quoted(void **state)
{
	(void)state;
	static const char *const dsns[] = {
	    "postgresql://u:Sekr1t%zz@127.0.0.1:1/db",
	    /* libpq quotes "Sekr1t%zz" here: a guess at the password from the
	     * raw text ("Sekr1t%zz&x=1") would not have scrubbed it */
	    "postgresql://h/db?password=Sekr1t%zz&x=1",
	    "postgresql://u:Sekr1t@h/db?bogus=1",
	    "host=h password=Sekr1t bogus=1",
	    "password=Sekr1t host='unterminated",
	    "Sekr1t",
	};
	const char *wording = "state.dsn is not a PostgreSQL connection string";
	for (size_t i = 0; i < sizeof dsns / sizeof dsns[0]; i++) {
		struct pg_conninfo ci = {0};
		struct cn_error err = {0};
		assert_int_equal(pg_conninfo_parse(&ci, dsns[i], wording, &err), CN_ECONFIG);
		assert_int_equal(err.code, CN_ECONFIG);
		assert_string_equal(err.message, wording);
		if (strstr(err.message, "Sekr1t"))
			fail_msg("%s: the message quotes the password: %s", dsns[i], err.message);
		pg_conninfo_free(&ci);
	}
	/* the caller's text is a message, not a format */
	struct pg_conninfo ci = {0};
	struct cn_error err = {0};
	assert_int_equal(pg_conninfo_parse(&ci, "host='x", "100% wrong: %s", &err), CN_ECONFIG);
	assert_string_equal(err.message, "100% wrong: %s");
	pg_conninfo_free(&ci);
}

/* ---- passwords zeroed ---- */

static void test_free_zeroes_passwords(void **state)
{
	(void)state;
	struct pg_conninfo ci;
	parse_ok(&ci, "host=h user=u password=Sekr1tPw");
	/* a replaced password is zeroed as it goes */
	nwatches = 0;
	watch(ci.password, strlen(ci.password));
	watch(password_val(&ci), strlen(password_val(&ci)));
	assert_int_equal(pg_conninfo_set(&ci, "password", "0ther"), CN_OK);
	for (size_t i = 0; i < 2; i++)
		assert_true(watches[i].freed && watches[i].zeroed);
	assert_string_equal(ci.password, "0ther");
	assert_string_equal(pg_conninfo_get(&ci, "password"), "0ther");

	nwatches = 0;
	watch(ci.password, strlen(ci.password));
	watch(password_val(&ci), strlen(password_val(&ci)));
	watch(pg_conninfo_get(&ci, "user"), 1); /* the control: other values are freed, not zeroed */
	pg_conninfo_free(&ci);
	for (size_t i = 0; i < 2; i++)
		assert_true(watches[i].freed && watches[i].zeroed);
	assert_true(watches[2].freed && !watches[2].zeroed);
	assert_null(ci.password);
	nwatches = 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_set_grows),
	    cmocka_unit_test(test_defaults_keep_the_dsn),
	    cmocka_unit_test(test_options_after_the_users),
	    cmocka_unit_test(test_target),
	    cmocka_unit_test(test_bad_dsn_never_quoted),
	    cmocka_unit_test(test_free_zeroes_passwords),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
