/* test_result_writer.c - the result body: value mapping, caps, hidden columns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "result_writer.h"

#define BIG_CAP (1024 * 1024)

static struct cn_value v_null(void)
{
	struct cn_value v = {.kind = CN_VAL_NULL};
	return v;
}

static struct cn_value v_bool(bool b)
{
	struct cn_value v = {.kind = CN_VAL_BOOL, .u.b = b};
	return v;
}

static struct cn_value v_int(int64_t i)
{
	struct cn_value v = {.kind = CN_VAL_INT, .u.i = i};
	return v;
}

static struct cn_value v_double(double d)
{
	struct cn_value v = {.kind = CN_VAL_DOUBLE, .u.d = d};
	return v;
}

static struct cn_value v_str(enum cn_value_kind kind, const char *s, size_t len)
{
	struct cn_value v = {.kind = kind};
	v.u.s.ptr = s;
	v.u.s.len = len;
	return v;
}

static struct cn_value v_text(enum cn_value_kind kind, const char *s)
{
	return v_str(kind, s, strlen(s));
}

static struct result_writer *writer_make(uint32_t max_rows, size_t max_bytes)
{
	struct result_writer_opts o = {.max_rows = max_rows, .max_bytes = max_bytes};
	struct result_writer *w = result_writer_new(&o);
	assert_non_null(w);
	return w;
}

static void add_column(struct result_writer *w, const char *name, const char *type)
{
	const struct cn_result_sink *s = result_writer_sink(w);
	struct cn_column_info c = {.name = name, .type = type};
	assert_int_equal(s->column(s->ctx, &c), CN_OK);
}

/* One row of n cells; returns what row_end answered. */
static int add_row(struct result_writer *w, const struct cn_value *cells, size_t n)
{
	const struct cn_result_sink *s = result_writer_sink(w);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(s->cell(s->ctx, &cells[i]), CN_OK);
	return s->row_end(s->ctx);
}

static char *writer_done(struct result_writer *w, long ms, size_t *len)
{
	/* Through an array: GCC 12 at -O3 otherwise warns of a dangling pointer
	 * to this local in the callers (a false positive). */
	char *out[1] = {NULL};
	size_t n = 0;
	int rc = result_writer_finish(w, ms, out, &n);
	assert_int_equal(rc, CN_OK);
	char *body = out[0];
	assert_non_null(body);
	assert_int_equal(strlen(body), n);
	if (len)
		*len = n;
	return body;
}

/* Parse body and check the shape every answer must have; returns the
 * "result" object's parent (caller deletes). */
static cJSON *parse_result(const char *body, size_t len)
{
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(body, len + 1, &end, 1);
	assert_non_null(root);
	assert_true(cJSON_IsObject(root));
	assert_int_equal(cJSON_GetArraySize(root), 1);
	cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "result");
	assert_true(cJSON_IsObject(r));
	assert_int_equal(cJSON_GetArraySize(r), 6);
	cJSON *cols = cJSON_GetObjectItemCaseSensitive(r, "columns");
	cJSON *types = cJSON_GetObjectItemCaseSensitive(r, "column_types");
	cJSON *rows = cJSON_GetObjectItemCaseSensitive(r, "rows");
	cJSON *count = cJSON_GetObjectItemCaseSensitive(r, "row_count");
	cJSON *trunc = cJSON_GetObjectItemCaseSensitive(r, "truncated");
	cJSON *ms = cJSON_GetObjectItemCaseSensitive(r, "execution_time_ms");
	assert_true(cJSON_IsArray(cols));
	assert_true(cJSON_IsArray(types));
	assert_true(cJSON_IsArray(rows));
	assert_true(cJSON_IsNumber(count));
	assert_true(cJSON_IsBool(trunc));
	assert_true(cJSON_IsNumber(ms));
	assert_int_equal(cJSON_GetArraySize(cols), cJSON_GetArraySize(types));
	assert_int_equal((int)count->valuedouble, cJSON_GetArraySize(rows));
	cJSON *row;
	cJSON_ArrayForEach(row, rows)
	{
		assert_true(cJSON_IsArray(row));
		assert_int_equal(cJSON_GetArraySize(row), cJSON_GetArraySize(cols));
	}
	return root;
}

static cJSON *result_item(cJSON *root, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "result"), key);
}

/* The JSON text of one value written alone as a one-column row. */
static char *one_cell(const struct cn_value *v)
{
	struct result_writer *w = writer_make(10, BIG_CAP);
	add_column(w, "c", "t");
	assert_int_equal(add_row(w, v, 1), CN_OK);
	size_t len;
	char *body = writer_done(w, 0, &len);
	cJSON *root = parse_result(body, len);
	cJSON_Delete(root);
	result_writer_free(w);
	const char *start = strstr(body, "\"rows\":[[") + 9;
	const char *end = strstr(body, "]],\"row_count\":");
	assert_non_null(end);
	size_t n = (size_t)(end - start);
	char *cell = malloc(n + 1);
	assert_non_null(cell);
	memcpy(cell, start, n);
	cell[n] = '\0';
	free(body);
	return cell;
}

static void expect_cell(const struct cn_value *v, const char *want)
{
	char *got = one_cell(v);
	assert_string_equal(got, want);
	free(got);
}

static void test_every_value_kind(void **state)
{
	(void)state;
	struct result_writer *w = writer_make(10, BIG_CAP);
	const char *names[] = {"n", "b", "i", "d", "num", "t", "j", "by"};
	const char *types[] = {"null", "bool", "int8", "float8", "numeric", "text", "jsonb", "bytea"};
	for (size_t i = 0; i < 8; i++)
		add_column(w, names[i], types[i]);
	static const unsigned char bytes[] = {0x00, 0x01, 0x02, 0xff};
	struct cn_value row[8] = {
	    v_null(),
	    v_bool(true),
	    v_int(INT64_MIN),
	    v_double(0.1),
	    v_text(CN_VAL_NUMERIC, "12345678901234567890.123"),
	    v_text(CN_VAL_TEXT, "h\xc3\xa9llo"),
	    v_text(CN_VAL_JSON, "{\"a\":[1,2,{\"b\":null}]}"),
	    v_str(CN_VAL_BYTES, (const char *)bytes, sizeof bytes),
	};
	assert_int_equal(add_row(w, row, 8), CN_OK);
	row[1] = v_bool(false);
	row[2] = v_int(INT64_MAX);
	assert_int_equal(add_row(w, row, 8), CN_OK);
	size_t len;
	char *body = writer_done(w, 45, &len);
	assert_string_equal(body,
			    "{\"result\":{\"columns\":[\"n\",\"b\",\"i\",\"d\",\"num\",\"t\",\"j\",\"by\"],"
			    "\"column_types\":[\"null\",\"bool\",\"int8\",\"float8\",\"numeric\",\"text\","
			    "\"jsonb\",\"bytea\"],\"rows\":["
			    "[null,true,-9223372036854775808,0.1,12345678901234567890.123,\"h\xc3\xa9llo\","
			    "{\"a\":[1,2,{\"b\":null}]},\"AAEC/w==\"],"
			    "[null,false,9223372036854775807,0.1,12345678901234567890.123,\"h\xc3\xa9llo\","
			    "{\"a\":[1,2,{\"b\":null}]},\"AAEC/w==\"]],"
			    "\"row_count\":2,\"truncated\":false,\"execution_time_ms\":45}}");
	cJSON *root = parse_result(body, len);
	assert_true(cJSON_IsFalse(result_item(root, "truncated")));
	assert_int_equal(result_item(root, "execution_time_ms")->valueint, 45);
	assert_int_equal(result_writer_row_count(w), 2);
	assert_false(result_writer_truncated(w));
	cJSON_Delete(root);
	free(body);
	result_writer_free(w);
}

static void test_null_type_and_name(void **state)
{
	(void)state;
	struct result_writer *w = writer_make(10, BIG_CAP);
	const struct cn_result_sink *s = result_writer_sink(w);
	struct cn_column_info c = {.name = "expr", .type = NULL};
	assert_int_equal(s->column(s->ctx, &c), CN_OK);
	struct cn_column_info unnamed = {.name = NULL, .type = "int"};
	assert_int_equal(s->column(s->ctx, &unnamed), CN_OK);
	char *body = writer_done(w, -5, NULL);
	assert_string_equal(body, "{\"result\":{\"columns\":[\"expr\",\"\"],\"column_types\":[null,"
				  "\"int\"],\"rows\":[],\"row_count\":0,\"truncated\":false,"
				  "\"execution_time_ms\":0}}");
	free(body);
	result_writer_free(w);
}

static void test_doubles(void **state)
{
	(void)state;
	const struct {
		double d;
		const char *want;
	} cases[] = {
	    {0.1, "0.1"},
	    {1.0 / 3.0, "0.3333333333333333"},
	    {2.0 / 3.0, "0.6666666666666666"},
	    {1e300, "1e+300"},
	    {-1.5e-7, "-1.5e-07"},
	    {-0.0, "-0"},
	    {0.0, "0"},
	    {100.0, "100"},
	    {123456789012345678.0, "1.2345678901234568e+17"},
	    {5e-324, "4.94065645841247e-324"},
	    {1.7976931348623157e308, "1.7976931348623157e+308"},
	    {NAN, "\"NaN\""},
	    {INFINITY, "\"Infinity\""},
	    {-INFINITY, "\"-Infinity\""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct cn_value v = v_double(cases[i].d);
		print_message("double case %zu\n", i);
		expect_cell(&v, cases[i].want);
	}
	/* Every finite double reads back exactly. */
	srand(7);
	for (int i = 0; i < 2000; i++) {
		uint64_t bits = 0;
		for (int k = 0; k < 4; k++)
			bits = bits << 16 | (uint64_t)(rand() & 0xffff);
		double d;
		memcpy(&d, &bits, sizeof d);
		if (!isfinite(d))
			continue;
		struct cn_value v = v_double(d);
		char *cell = one_cell(&v);
		assert_true(strtod(cell, NULL) == d);
		free(cell);
	}
}

static void test_numerics(void **state)
{
	(void)state;
	const struct {
		const char *text;
		const char *want;
	} cases[] = {
	    {"12345678901234567890.123", "12345678901234567890.123"},
	    {"-0.5", "-0.5"},
	    {"0", "0"},
	    {"-0", "-0"},
	    {"1e5", "1e5"},
	    {"1E-5", "1E-5"},
	    {"2.50e+10", "2.50e+10"},
	    {"NaN", "\"NaN\""},
	    {"Infinity", "\"Infinity\""},
	    {"-Infinity", "\"-Infinity\""},
	    {"01", "\"01\""},
	    {"1.", "\"1.\""},
	    {".5", "\".5\""},
	    {"+1", "\"+1\""},
	    {"1e", "\"1e\""},
	    {"1e+", "\"1e+\""},
	    {"-", "\"-\""},
	    {"0x10", "\"0x10\""},
	    {" 1", "\" 1\""},
	    {"1 ", "\"1 \""},
	    {"", "\"\""},
	    {"1,5", "\"1,5\""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct cn_value v = v_text(CN_VAL_NUMERIC, cases[i].text);
		print_message("numeric '%s'\n", cases[i].text);
		expect_cell(&v, cases[i].want);
	}
	/* The length is honoured: the text need not be NUL-terminated. */
	struct cn_value v = v_str(CN_VAL_NUMERIC, "42abc", 2);
	expect_cell(&v, "42");
}

static void test_text_escapes_and_bad_utf8(void **state)
{
	(void)state;
	const struct {
		const char *text;
		size_t len;
		const char *want;
	} cases[] = {
	    {"plain", 5, "\"plain\""},
	    {"q\"b\\s/", 6, "\"q\\\"b\\\\s/\""},
	    {"\n\r\t\b\f", 5, "\"\\n\\r\\t\\u0008\\u000c\""},
	    {"a\x01z\x1f", 4, "\"a\\u0001z\\u001f\""},
	    {"nul\0byte", 8, "\"nul\\u0000byte\""},
	    {"bad\xff", 4, "\"bad\xef\xbf\xbd\""},
	    {"trunc\xc3", 6, "\"trunc\xef\xbf\xbd\""},
	    {"overlong\xc0\xaf", 10, "\"overlong\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"surrogate\xed\xa0\x80", 12, "\"surrogate\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"emoji\xf0\x9f\x98\x80", 9, "\"emoji\xf0\x9f\x98\x80\""},
	    {"del\x7f", 4, "\"del\x7f\""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct cn_value v = v_str(CN_VAL_TEXT, cases[i].text, cases[i].len);
		print_message("text case %zu\n", i);
		expect_cell(&v, cases[i].want);
	}
	/* cJSON reads the NUL case back as the same bytes up to the NUL. */
	struct result_writer *w = writer_make(10, 4096);
	add_column(w, "t", "text");
	struct cn_value v = v_str(CN_VAL_TEXT, "x\x01y\"", 4);
	assert_int_equal(add_row(w, &v, 1), CN_OK);
	size_t len;
	char *body = writer_done(w, 1, &len);
	cJSON *root = parse_result(body, len);
	cJSON *cell = cJSON_GetArrayItem(cJSON_GetArrayItem(result_item(root, "rows"), 0), 0);
	assert_true(cJSON_IsString(cell));
	assert_string_equal(cell->valuestring, "x\x01y\"");
	cJSON_Delete(root);
	free(body);
	result_writer_free(w);
}

static char *nested(int depth)
{
	char *s = malloc((size_t)depth * 2 + 1);
	assert_non_null(s);
	for (int i = 0; i < depth; i++) {
		s[i] = '[';
		s[depth + i] = ']';
	}
	s[depth * 2] = '\0';
	return s;
}

static void test_json_cells(void **state)
{
	(void)state;
	static const char *const embedded[][2] = {
	    {"{\"a\":1}", "{\"a\":1}"},
	    {"[1,2.5,-3e2,true,false,null,\"s\"]", "[1,2.5,-3e2,true,false,null,\"s\"]"},
	    {"\"str\"", "\"str\""},
	    {"123", "123"},
	    {"null", "null"},
	    {"  {\"a\" : [ ] , \"b\":{}}\n", "{\"a\" : [ ] , \"b\":{}}"},
	    {"\"\\u00e9\\ud83d\\ude00\\n\\/\"", "\"\\u00e9\\ud83d\\ude00\\n\\/\""},
	    {"{\"k\\\"\":\"h\xc3\xa9\"}", "{\"k\\\"\":\"h\xc3\xa9\"}"},
	    {"[[[[{\"x\":[{}]}]]]]", "[[[[{\"x\":[{}]}]]]]"},
	};
	for (size_t i = 0; i < sizeof embedded / sizeof embedded[0]; i++) {
		struct cn_value v = v_text(CN_VAL_JSON, embedded[i][0]);
		print_message("embedded json case %zu\n", i);
		expect_cell(&v, embedded[i][1]);
	}
	/* Not valid JSON (some of them cJSON would take): written as strings. */
	static const char *const as_string[] = {
	    "",
	    "   ",
	    "{",
	    "}",
	    "[1,]",
	    "[,1]",
	    "{\"a\"}",
	    "{\"a\":}",
	    "{a:1}",
	    "{\"a\":1,}",
	    "nul",
	    "tru",
	    "01",
	    "1.",
	    "-",
	    "+1",
	    ".5",
	    "NaN",
	    "Infinity",
	    "'s'",
	    "\"\x01\"",
	    "\"bad\xff\"",
	    "\"\\ud800\"",
	    "\"\\udc00\"",
	    "\"\\ud800\\u0041\"",
	    "\"\\x41\"",
	    "\"\\u12\"",
	    "\"open",
	    "{} {}",
	    "[1] x",
	    "1 2",
	    "[1}",
	    "{\"a\":1]",
	    "[\"a\"\"b\"]",
	    "{\"a\" 1}",
	    "truex",
	    "[true false]",
	};
	for (size_t i = 0; i < sizeof as_string / sizeof as_string[0]; i++) {
		struct cn_value v = v_text(CN_VAL_JSON, as_string[i]);
		print_message("json-as-string case %zu\n", i);
		char *cell = one_cell(&v);
		cJSON *parsed = cJSON_Parse(cell);
		assert_non_null(parsed);
		assert_true(cJSON_IsString(parsed));
		cJSON_Delete(parsed);
		free(cell);
	}
	/* A NUL inside the given length is not valid JSON text. */
	struct cn_value v = v_str(CN_VAL_JSON, "{}\0{}", 5);
	expect_cell(&v, "\"{}\\u0000{}\"");
	/* Depth: 512 levels are embedded, 513 become a string. */
	char *ok = nested(512), *deep = nested(513);
	v = v_text(CN_VAL_JSON, ok);
	expect_cell(&v, ok);
	v = v_text(CN_VAL_JSON, deep);
	char *cell = one_cell(&v);
	assert_true(cell[0] == '"');
	free(cell);
	free(ok);
	free(deep);
}

/* Decode base64 for the round-trip check (test-only, tolerant of nothing). */
static size_t b64_decode(const char *s, size_t n, unsigned char *out)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	assert_int_equal(n % 4, 0);
	for (size_t i = 0; i < n; i += 4) {
		uint32_t v = 0;
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			v <<= 6;
			if (s[i + k] == '=') {
				pad++;
				continue;
			}
			const char *p = strchr(alphabet, s[i + k]);
			assert_non_null(p);
			assert_int_equal(pad, 0);
			v |= (uint32_t)(p - alphabet);
		}
		out[o++] = (unsigned char)(v >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(v >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)v;
	}
	return o;
}

static void test_base64(void **state)
{
	(void)state;
	static const char *const rfc4648[][2] = {
	    {"", ""},
	    {"f", "Zg=="},
	    {"fo", "Zm8="},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="},
	    {"foobar", "Zm9vYmFy"},
	};
	for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
		struct buf b;
		buf_init(&b, 100);
		assert_int_equal(
		    base64_encode(&b, (const unsigned char *)rfc4648[i][0], strlen(rfc4648[i][0])), CN_OK);
		assert_int_equal(b.len, strlen(rfc4648[i][1]));
		if (b.len)
			assert_string_equal(b.data, rfc4648[i][1]);
		buf_free(&b);
	}
	/* Every length across the internal chunk size round-trips. */
	unsigned char in[1000], back[1000];
	for (size_t i = 0; i < sizeof in; i++)
		in[i] = (unsigned char)(i * 37 + 11);
	for (size_t n = 0; n <= sizeof in; n += (n < 200 ? 1 : 97)) {
		struct buf b;
		buf_init(&b, 4096);
		assert_int_equal(buf_puts(&b, "pre"), CN_OK);
		assert_int_equal(base64_encode(&b, in, n), CN_OK);
		assert_int_equal(b.len, 3 + (n + 2) / 3 * 4);
		assert_int_equal(b64_decode(b.data + 3, b.len - 3, back), n);
		assert_memory_equal(back, in, n);
		buf_free(&b);
	}
	/* Past the cap: CN_ETOOBIG and the buffer is unchanged. */
	struct buf b;
	buf_init(&b, 10);
	assert_int_equal(buf_puts(&b, "ab"), CN_OK);
	assert_int_equal(base64_encode(&b, in, 7), CN_ETOOBIG); /* needs 12 */
	assert_int_equal(b.len, 2);
	assert_string_equal(b.data, "ab");
	assert_int_equal(base64_encode(&b, in, 6), CN_OK); /* exactly 8 */
	assert_int_equal(b.len, 10);
	buf_free(&b);
	/* In a cell. */
	struct cn_value v = v_str(CN_VAL_BYTES, "foobar", 6);
	expect_cell(&v, "\"Zm9vYmFy\"");
	v = v_str(CN_VAL_BYTES, NULL, 0);
	expect_cell(&v, "\"\"");
}

static void test_row_cap(void **state)
{
	(void)state;
	for (uint32_t cap = 0; cap <= 5; cap++) {
		for (uint32_t nrows = 0; nrows <= 7; nrows++) {
			struct result_writer *w = writer_make(cap, BIG_CAP);
			add_column(w, "i", "int");
			int last = CN_OK;
			uint32_t fed = 0;
			/* Feed like a driver: stop at the first CN_SINK_FULL. */
			while (fed < nrows && last == CN_OK) {
				struct cn_value v = v_int(fed);
				last = add_row(w, &v, 1);
				fed++;
			}
			uint32_t kept = nrows < cap ? nrows : cap;
			assert_int_equal(last, nrows > cap ? CN_SINK_FULL : CN_OK);
			assert_int_equal(fed, nrows > cap ? cap + 1 : nrows);
			assert_int_equal(result_writer_row_count(w), kept);
			assert_int_equal(result_writer_truncated(w), nrows > cap);
			size_t len;
			char *body = writer_done(w, 3, &len);
			cJSON *root = parse_result(body, len);
			assert_int_equal(cJSON_GetArraySize(result_item(root, "rows")), kept);
			assert_int_equal(cJSON_IsTrue(result_item(root, "truncated")), nrows > cap);
			cJSON *last_row = cJSON_GetArrayItem(result_item(root, "rows"), (int)kept - 1);
			if (kept)
				assert_int_equal(cJSON_GetArrayItem(last_row, 0)->valueint, kept - 1);
			cJSON_Delete(root);
			free(body);
			result_writer_free(w);
		}
	}
}

/* A varied row: its i-th instance differs in length and kinds. */
static void make_row(int i, char *text, size_t text_cap, struct cn_value row[5])
{
	size_t tl = (size_t)(i * 7919) % (text_cap - 1);
	for (size_t k = 0; k < tl; k++)
		text[k] = (char)(k % 5 == 0 ? '"' : k % 7 == 0 ? '\n' : 'a' + (int)(k % 26));
	text[tl] = '\0';
	row[0] = v_int(i);
	row[1] = v_str(CN_VAL_TEXT, text, tl);
	row[2] = v_double(i * 1.1);
	row[3] = i % 3 ? v_null() : v_text(CN_VAL_JSON, "{\"k\":[1,2,3]}");
	row[4] = v_str(CN_VAL_BYTES, text, tl / 2);
}

static void test_byte_cap(void **state)
{
	(void)state;
	enum { NROWS = 150, TEXT_CAP = 300 };
	size_t prev_rows = 0;
	for (size_t max_bytes = 200; max_bytes <= 70000; max_bytes += 173) {
		struct result_writer *w = writer_make(100000, max_bytes);
		const char *names[] = {"id", "note", "score", "doc", "blob"};
		for (size_t c = 0; c < 5; c++)
			add_column(w, names[c], "t");
		char text[TEXT_CAP];
		struct cn_value row[5];
		int fed = 0, rc = CN_OK;
		while (fed < NROWS && rc == CN_OK) {
			make_row(fed, text, sizeof text, row);
			rc = add_row(w, row, 5);
			fed++;
		}
		size_t len;
		char *body = writer_done(w, LONG_MAX, &len);
		assert_true(len <= max_bytes);
		cJSON *root = parse_result(body, len);
		size_t kept = (size_t)cJSON_GetArraySize(result_item(root, "rows"));
		bool truncated = cJSON_IsTrue(result_item(root, "truncated"));
		assert_int_equal(kept, result_writer_row_count(w));
		assert_int_equal(truncated, kept < NROWS);
		assert_int_equal(rc == CN_SINK_FULL, kept < NROWS);
		/* More room never means fewer rows. */
		assert_true(kept >= prev_rows);
		prev_rows = kept;
		/* Rows are kept in order. */
		cJSON *r;
		int expect = 0;
		cJSON_ArrayForEach(r, result_item(root, "rows"))
		{
			assert_int_equal(cJSON_GetArrayItem(r, 0)->valueint, expect);
			expect++;
		}
		/* Little room is wasted: no row is longer than about 800 bytes,
		 * and at most 45 bytes are reserved for the numbers. */
		if (truncated)
			assert_true(len + 800 + 45 > max_bytes);
		cJSON_Delete(root);
		free(body);
		result_writer_free(w);
	}
	assert_true(prev_rows == NROWS);
}

static void test_columns_do_not_fit(void **state)
{
	(void)state;
	char longname[120];
	memset(longname, 'c', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	struct result_writer *w = writer_make(10, 200);
	add_column(w, "a", "int");
	add_column(w, longname, "text");
	add_column(w, "b", "int");
	struct cn_value cells[3] = {v_int(1), v_int(2), v_int(3)};
	assert_int_equal(add_row(w, cells, 3), CN_SINK_FULL);
	assert_true(result_writer_truncated(w));
	size_t len;
	char *body = writer_done(w, 9, &len);
	assert_true(len <= 200);
	assert_string_equal(body, "{\"result\":{\"columns\":[],\"column_types\":[],\"rows\":[],"
				  "\"row_count\":0,\"truncated\":true,\"execution_time_ms\":9}}");
	free(body);
	result_writer_free(w);

	/* Room for the empty answer but not for the reserved numbers. */
	w = writer_make(10, 120);
	add_column(w, "a", "int");
	body = writer_done(w, 1, &len);
	assert_true(len <= 120);
	assert_non_null(strstr(body, "\"truncated\":true"));
	free(body);
	result_writer_free(w);

	/* Truly impossible. */
	w = writer_make(10, 50);
	add_column(w, "a", "int");
	char *none = NULL;
	assert_int_equal(result_writer_finish(w, 1, &none, &len), CN_ETOOBIG);
	assert_null(none);
	result_writer_free(w);
}

static void test_huge_cells(void **state)
{
	(void)state;
	size_t n = 1024 * 1024;
	char *big = malloc(n);
	assert_non_null(big);
	memset(big, '7', n);
	const enum cn_value_kind kinds[] = {CN_VAL_TEXT, CN_VAL_NUMERIC, CN_VAL_JSON, CN_VAL_BYTES};
	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		struct result_writer *w = writer_make(100, 65536);
		add_column(w, "i", "int");
		add_column(w, "big", "text");
		struct cn_value small[2] = {v_int(1), v_text(CN_VAL_TEXT, "x")};
		assert_int_equal(add_row(w, small, 2), CN_OK);
		struct cn_value row[2] = {v_int(2), v_str(kinds[k], big, n)};
		assert_int_equal(add_row(w, row, 2), CN_SINK_FULL);
		size_t len;
		char *body = writer_done(w, 1, &len);
		assert_true(len <= 65536);
		cJSON *root = parse_result(body, len);
		assert_int_equal(cJSON_GetArraySize(result_item(root, "rows")), 1);
		assert_true(cJSON_IsTrue(result_item(root, "truncated")));
		cJSON_Delete(root);
		free(body);
		result_writer_free(w);
	}
	free(big);
}

struct hidden_call {
	char table[32];
	char column[32];
	bool column_null;
};

struct hidden_ctx {
	struct hidden_call calls[16];
	size_t ncalls;
};

/* Hidden: users.email, users.ssn, and the whole table secrets. */
static int hide(void *ctx, const char *schema, const char *table, const char *column)
{
	struct hidden_ctx *h = ctx;
	assert_string_equal(schema, "main");
	if (h->ncalls < 16) {
		struct hidden_call *c = &h->calls[h->ncalls++];
		snprintf(c->table, sizeof c->table, "%s", table);
		snprintf(c->column, sizeof c->column, "%s", column ? column : "");
		c->column_null = column == NULL;
	}
	if (strcmp(table, "secrets") == 0)
		return 1;
	return column && strcmp(table, "users") == 0 &&
	       (strcmp(column, "email") == 0 || strcmp(column, "ssn") == 0);
}

static void test_hidden_columns(void **state)
{
	(void)state;
	struct hidden_ctx h = {.ncalls = 0};
	struct result_writer_opts o = {
	    .max_rows = 10, .max_bytes = 4096, .hidden_ctx = &h, .is_hidden = hide};
	struct result_writer *w = result_writer_new(&o);
	assert_non_null(w);
	const struct cn_result_sink *s = result_writer_sink(w);
	const struct cn_column_info cols[] = {
	    {"id", "integer", "main", "users", "id"},
	    {"contact", "text", "main", "users", "email"}, /* aliased: hidden by origin */
	    {"email", "text", NULL, NULL, NULL},	   /* an expression named email */
	    {"k", "text", "main", "secrets", "k"},	   /* hidden table */
	    {"ssn", "text", "main", "users", "ssn"},
	    {"name", "text", "main", "users", "name"},
	};
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(s->column(s->ctx, &cols[i]), CN_OK);
	struct cn_value row[6] = {
	    v_int(1),
	    v_text(CN_VAL_TEXT, "alice@example.com"),
	    v_text(CN_VAL_TEXT, "expr"),
	    v_text(CN_VAL_TEXT, "topsecret"),
	    v_text(CN_VAL_TEXT, "123-45-6789"),
	    v_text(CN_VAL_TEXT, "Alice"),
	};
	assert_int_equal(add_row(w, row, 6), CN_OK);
	char *body = writer_done(w, 2, NULL);
	assert_string_equal(body, "{\"result\":{\"columns\":[\"id\",\"email\",\"name\"],"
				  "\"column_types\":[\"integer\",\"text\",\"text\"],"
				  "\"rows\":[[1,\"expr\",\"Alice\"]],\"row_count\":1,"
				  "\"truncated\":false,\"execution_time_ms\":2}}");
	assert_null(strstr(body, "alice@"));
	assert_null(strstr(body, "topsecret"));
	assert_null(strstr(body, "6789"));
	/* The table is asked about (column NULL) before the column. */
	assert_string_equal(h.calls[0].table, "users");
	assert_true(h.calls[0].column_null);
	assert_string_equal(h.calls[1].column, "id");
	assert_false(h.calls[1].column_null);
	free(body);
	result_writer_free(w);
}

static void test_protocol_errors(void **state)
{
	(void)state;
	struct cn_value one = v_int(1);
	char *body = NULL;
	size_t len;

	/* More cells than columns. */
	struct result_writer *w = writer_make(10, 4096);
	const struct cn_result_sink *s = result_writer_sink(w);
	add_column(w, "a", "int");
	assert_int_equal(s->cell(s->ctx, &one), CN_OK);
	assert_int_equal(s->cell(s->ctx, &one), CN_EINVAL);
	assert_int_equal(result_writer_finish(w, 0, &body, &len), CN_EINVAL);
	result_writer_free(w);

	/* Fewer cells than columns. */
	w = writer_make(10, 4096);
	s = result_writer_sink(w);
	add_column(w, "a", "int");
	add_column(w, "b", "int");
	assert_int_equal(s->cell(s->ctx, &one), CN_OK);
	assert_int_equal(s->row_end(s->ctx), CN_EINVAL);
	result_writer_free(w);

	/* A column after the first cell. */
	w = writer_make(10, 4096);
	s = result_writer_sink(w);
	add_column(w, "a", "int");
	assert_int_equal(s->cell(s->ctx, &one), CN_OK);
	struct cn_column_info late = {.name = "late", .type = "int"};
	assert_int_equal(s->column(s->ctx, &late), CN_EINVAL);
	result_writer_free(w);

	/* Finish twice. */
	w = writer_make(10, 4096);
	add_column(w, "a", "int");
	body = writer_done(w, 0, &len);
	free(body);
	body = NULL;
	assert_int_equal(result_writer_finish(w, 0, &body, &len), CN_EINVAL);
	result_writer_free(w);
	result_writer_free(NULL);

	/* The driver stopped inside a row: the partial row is not shown. */
	w = writer_make(10, 4096);
	s = result_writer_sink(w);
	add_column(w, "a", "int");
	add_column(w, "b", "int");
	struct cn_value cells[2] = {v_int(1), v_int(2)};
	assert_int_equal(add_row(w, cells, 2), CN_OK);
	assert_int_equal(s->cell(s->ctx, &one), CN_OK);
	body = writer_done(w, 0, &len);
	cJSON *root = parse_result(body, len);
	assert_int_equal(cJSON_GetArraySize(result_item(root, "rows")), 1);
	cJSON_Delete(root);
	free(body);
	result_writer_free(w);
}

static void test_zero_columns(void **state)
{
	(void)state;
	struct result_writer *w = writer_make(2, 4096);
	assert_int_equal(add_row(w, NULL, 0), CN_OK);
	assert_int_equal(add_row(w, NULL, 0), CN_OK);
	assert_int_equal(add_row(w, NULL, 0), CN_SINK_FULL);
	char *body = writer_done(w, 0, NULL);
	assert_string_equal(body, "{\"result\":{\"columns\":[],\"column_types\":[],\"rows\":[[],[]],"
				  "\"row_count\":2,\"truncated\":true,\"execution_time_ms\":0}}");
	free(body);
	result_writer_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_value_kind),
	    cmocka_unit_test(test_null_type_and_name),
	    cmocka_unit_test(test_doubles),
	    cmocka_unit_test(test_numerics),
	    cmocka_unit_test(test_text_escapes_and_bad_utf8),
	    cmocka_unit_test(test_json_cells),
	    cmocka_unit_test(test_base64),
	    cmocka_unit_test(test_row_cap),
	    cmocka_unit_test(test_byte_cap),
	    cmocka_unit_test(test_columns_do_not_fit),
	    cmocka_unit_test(test_huge_cells),
	    cmocka_unit_test(test_hidden_columns),
	    cmocka_unit_test(test_protocol_errors),
	    cmocka_unit_test(test_zero_columns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
