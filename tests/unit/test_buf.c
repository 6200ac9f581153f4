/* test_buf.c - the bounded buffer: limits, growth, JSON strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static void test_init_and_empty_steal(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 10);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.max, 10);
	size_t len = 99;
	char *p = buf_steal(&b, &len);
	assert_non_null(p);
	assert_int_equal(len, 0);
	assert_string_equal(p, "");
	free(p);
	buf_free(&b);
	buf_free(&b); /* twice is fine */
	assert_int_equal(b.max, 10);
}

static void test_append_up_to_max(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 8);
	assert_int_equal(buf_append(&b, "abcd", 4), CN_OK);
	assert_int_equal(buf_append(&b, "efgh", 4), CN_OK);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.data, "abcdefgh");
	/* One byte past the limit fails and changes nothing. */
	assert_int_equal(buf_append(&b, "i", 1), CN_ETOOBIG);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.data, "abcdefgh");
	/* Zero bytes still fit. */
	assert_int_equal(buf_append(&b, "", 0), CN_OK);
	assert_int_equal(buf_puts(&b, ""), CN_OK);
	/* A huge length does not wrap around. */
	assert_int_equal(buf_append(&b, "x", SIZE_MAX), CN_ETOOBIG);
	assert_int_equal(buf_append(&b, "x", SIZE_MAX - 4), CN_ETOOBIG);
	assert_int_equal(b.len, 8);
	buf_free(&b);

	buf_init(&b, 0);
	assert_int_equal(buf_append(&b, "a", 1), CN_ETOOBIG);
	assert_int_equal(buf_append(&b, NULL, 0), CN_OK);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	buf_free(&b);
}

static void test_growth(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 100000);
	for (size_t i = 0; i < 100000; i++) {
		char c = (char)('a' + i % 26);
		assert_int_equal(buf_append(&b, &c, 1), CN_OK);
	}
	assert_int_equal(b.len, 100000);
	assert_true(b.cap > b.len);
	assert_int_equal(b.data[b.len], '\0');
	for (size_t i = 0; i < 100000; i++)
		assert_int_equal(b.data[i], 'a' + i % 26);
	assert_int_equal(buf_append(&b, "z", 1), CN_ETOOBIG);
	buf_free(&b);
}

static void test_printf(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 12);
	assert_int_equal(buf_printf(&b, "%d-%s", 42, "ab"), CN_OK);
	assert_string_equal(b.data, "42-ab");
	assert_int_equal(buf_printf(&b, "%s", ""), CN_OK);
	assert_int_equal(b.len, 5);
	/* "123456789" would make 14 > 12: refused, unchanged. */
	assert_int_equal(buf_printf(&b, "%d", 123456789), CN_ETOOBIG);
	assert_string_equal(b.data, "42-ab");
	assert_int_equal(b.len, 5);
	/* Exactly to the limit. */
	assert_int_equal(buf_printf(&b, "%07d", 1), CN_OK);
	assert_int_equal(b.len, 12);
	assert_string_equal(b.data, "42-ab0000001");
	buf_free(&b);

	/* A first printf on an empty buffer allocates. */
	buf_init(&b, 100);
	assert_int_equal(buf_printf(&b, "%s", ""), CN_OK);
	assert_non_null(b.data);
	assert_string_equal(b.data, "");
	buf_free(&b);
}

/* buf_put_i64 writes what %lld writes, the extremes included. */
static void test_put_i64(void **state)
{
	(void)state;
	const long long values[] = {0, 1, -1, 9, 10, -10, 99, 100, 123456789, -987654321,
				    2147483647LL, -2147483648LL, 4294967296LL, LLONG_MAX, LLONG_MIN};
	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		char want[32];
		struct buf b;
		buf_init(&b, 64);
		snprintf(want, sizeof want, "%lld", values[i]);
		assert_int_equal(buf_put_i64(&b, values[i]), CN_OK);
		assert_string_equal(b.data, want);
		buf_free(&b);
	}
	/* Past the limit: refused, unchanged. */
	struct buf b;
	buf_init(&b, 3);
	assert_int_equal(buf_put_i64(&b, 12), CN_OK);
	assert_int_equal(buf_put_i64(&b, 34), CN_ETOOBIG);
	assert_string_equal(b.data, "12");
	buf_free(&b);
}

static void test_reset_and_steal(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 64);
	assert_int_equal(buf_puts(&b, "hello"), CN_OK);
	char *mem = b.data;
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_ptr_equal(b.data, mem);
	assert_string_equal(b.data, "");
	assert_int_equal(buf_puts(&b, "again"), CN_OK);
	size_t len = 0;
	char *p = buf_steal(&b, &len);
	assert_int_equal(len, 5);
	assert_string_equal(p, "again");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	assert_int_equal(b.max, 64);
	/* The buffer is usable after a steal. */
	assert_int_equal(buf_puts(&b, "new"), CN_OK);
	assert_string_equal(b.data, "new");
	assert_string_equal(p, "again");
	free(p);
	buf_free(&b);
	buf_reset(&b); /* on an empty buffer */
	assert_null(b.data);
}

static void test_json_string(void **state)
{
	(void)state;
	const struct {
		const char *in;
		size_t len;
		const char *want;
	} cases[] = {
	    {"", 0, "\"\""},
	    {"plain text", 10, "\"plain text\""},
	    {"\"quoted\" \\back", 14, "\"\\\"quoted\\\" \\\\back\""},
	    {"/", 1, "\"/\""},
	    {"\n\r\t", 3, "\"\\n\\r\\t\""},
	    {"\x01\x08\x0c\x1f", 4, "\"\\u0001\\u0008\\u000c\\u001f\""},
	    {"a\0b", 3, "\"a\\u0000b\""},
	    {"\x7f", 1, "\"\x7f\""},
	    /* valid UTF-8 at each length, including the edges */
	    {"\xc2\x80", 2, "\"\xc2\x80\""},
	    {"\xdf\xbf", 2, "\"\xdf\xbf\""},
	    {"\xe0\xa0\x80", 3, "\"\xe0\xa0\x80\""},
	    {"\xef\xbf\xbf", 3, "\"\xef\xbf\xbf\""},
	    {"\xf0\x90\x80\x80", 4, "\"\xf0\x90\x80\x80\""},
	    {"\xf4\x8f\xbf\xbf", 4, "\"\xf4\x8f\xbf\xbf\""},
	    {"\xe2\x80\xa8", 3, "\"\xe2\x80\xa8\""},
	    /* invalid: each bad byte becomes U+FFFD */
	    {"\x80", 1, "\"\xef\xbf\xbd\""},
	    {"\xbf", 1, "\"\xef\xbf\xbd\""},
	    {"\xc0\x80", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xc1\xbf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xe0\x80\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xed\xbf\xbf", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xf0\x80\x80\x80", 4, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xf4\x90\x80\x80", 4, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xf5", 1, "\"\xef\xbf\xbd\""},
	    {"\xff", 1, "\"\xef\xbf\xbd\""},
	    {"a\xe2\x82", 3, "\"a\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xc3(", 2, "\"\xef\xbf\xbd(\""},
	    {"\xe2\x82\xac!", 4, "\"\xe2\x82\xac!\""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf b;
		buf_init(&b, 1000);
		print_message("json string case %zu\n", i);
		assert_int_equal(buf_json_string(&b, cases[i].in, cases[i].len), CN_OK);
		assert_int_equal(b.len, strlen(cases[i].want));
		assert_string_equal(b.data, cases[i].want);
		buf_free(&b);
	}
	/* The length is what counts, not a NUL. */
	struct buf b;
	buf_init(&b, 100);
	assert_int_equal(buf_json_string(&b, "abcdef", 3), CN_OK);
	assert_string_equal(b.data, "\"abc\"");
	buf_free(&b);
}

/* At every limit the result is either the whole string or no change. */
static void test_json_string_limit_is_atomic(void **state)
{
	(void)state;
	static const char in[] = "pre\"x\\y\n\x01\xc3\xa9\xff tail";
	static const char want[] = "\"pre\\\"x\\\\y\\n\\u0001\xc3\xa9\xef\xbf\xbd tail\"";
	size_t full = sizeof want - 1;
	for (size_t max = 0; max <= full + 3; max++) {
		struct buf b;
		buf_init(&b, max);
		int pre = max >= 2 ? buf_puts(&b, "[,") : CN_OK;
		size_t before = b.len;
		int rc = buf_json_string(&b, in, sizeof in - 1);
		if (before + full <= max) {
			assert_int_equal(rc, CN_OK);
			assert_int_equal(b.len, before + full);
			assert_memory_equal(b.data + before, want, full);
		} else {
			assert_int_equal(rc, CN_ETOOBIG);
			assert_int_equal(b.len, before);
			if (b.data)
				assert_int_equal(b.data[before], '\0');
		}
		assert_int_equal(pre, CN_OK);
		buf_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_and_empty_steal),
	    cmocka_unit_test(test_append_up_to_max),
	    cmocka_unit_test(test_growth),
	    cmocka_unit_test(test_printf),
	    cmocka_unit_test(test_put_i64),
	    cmocka_unit_test(test_reset_and_steal),
	    cmocka_unit_test(test_json_string),
	    cmocka_unit_test(test_json_string_limit_is_atomic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
