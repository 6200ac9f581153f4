/*
 * test_mongo_types.c - BSON values as cells and documents as JSON, for every
 * BSON type, with hidden fields scrubbed at any depth; dates across the
 * whole range; text that is not UTF-8.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mongo_types.h"

/* One document with a field of each type; each case names a field. */
static bson_t *zoo(void)
{
	bson_t *d = bson_new();
	bson_oid_t oid;
	bson_decimal128_t dec;
	static const uint8_t bin[] = {0, 1, 2, 3, 0xfe, 0xff};
	static const uint8_t uuid[] = {0x0f, 0x8f, 0xad, 0x5b, 0xd9, 0xcb, 0x46, 0x9f,
				       0xa1, 0x65, 0x70, 0x86, 0x77, 0x28, 0x95, 0x0e};
	bson_oid_init_from_string(&oid, "65b000000000000000000002");
	bson_decimal128_from_string("1234567890.123456789012345678901234", &dec);
	BSON_APPEND_INT32(d, "int32", INT32_MIN);
	BSON_APPEND_INT64(d, "int64", 9007199254740993LL);
	BSON_APPEND_DOUBLE(d, "double", 0.1);
	BSON_APPEND_DOUBLE(d, "nan", NAN);
	BSON_APPEND_DECIMAL128(d, "decimal", &dec);
	BSON_APPEND_UTF8(d, "string", "h\xc3\xa9llo \"q\"\n");
	BSON_APPEND_BOOL(d, "bool", true);
	BSON_APPEND_NULL(d, "null");
	BSON_APPEND_UNDEFINED(d, "undefined");
	BSON_APPEND_OID(d, "oid", &oid);
	BSON_APPEND_DATE_TIME(d, "date", 1709210096789LL);
	BSON_APPEND_BINARY(d, "binary", BSON_SUBTYPE_BINARY, bin, sizeof bin);
	BSON_APPEND_BINARY(d, "uuid", BSON_SUBTYPE_UUID, uuid, sizeof uuid);
	BSON_APPEND_REGEX(d, "regex", "^ab+c$", "i");
	BSON_APPEND_CODE(d, "code", "function() { return 1; }");
	BSON_APPEND_SYMBOL(d, "symbol", "sym");
	BSON_APPEND_TIMESTAMP(d, "timestamp", 1700000000, 7);
	BSON_APPEND_MINKEY(d, "minkey");
	BSON_APPEND_MAXKEY(d, "maxkey");
	bson_append_dbpointer(d, "dbpointer", -1, "orders", &oid);
	bson_t child, arr, inner;
	BSON_APPEND_DOCUMENT_BEGIN(d, "object", &child);
	BSON_APPEND_INT32(&child, "a", 1);
	BSON_APPEND_UTF8(&child, "secret", "hidden value");
	BSON_APPEND_DATE_TIME(&child, "when", 0);
	BSON_APPEND_INT64(&child, "big", INT64_MAX);
	BSON_APPEND_DECIMAL128(&child, "dec", &dec);
	BSON_APPEND_OID(&child, "ref", &oid);
	bson_append_document_end(d, &child);
	BSON_APPEND_ARRAY_BEGIN(d, "array", &arr);
	BSON_APPEND_INT32(&arr, "0", 1);
	BSON_APPEND_UTF8(&arr, "1", "two");
	BSON_APPEND_DOCUMENT_BEGIN(&arr, "2", &inner);
	BSON_APPEND_UTF8(&inner, "sku", "SKU-1");
	BSON_APPEND_UTF8(&inner, "secret", "x");
	bson_append_document_end(&arr, &inner);
	BSON_APPEND_BINARY(&arr, "3", BSON_SUBTYPE_BINARY, bin, 3);
	BSON_APPEND_DOUBLE(&arr, "4", INFINITY);
	bson_append_array_end(d, &arr);
	return d;
}

struct cell_case {
	const char *field;
	enum cn_value_kind kind;
	const char *text; /* the cell as text: number, string, JSON, hex of bytes */
};

static const struct cell_case cells[] = {
	{"int32", CN_VAL_INT, "-2147483648"},
	{"int64", CN_VAL_INT, "9007199254740993"},
	{"double", CN_VAL_DOUBLE, "0.10000000000000001"},
	{"nan", CN_VAL_DOUBLE, "nan"},
	{"decimal", CN_VAL_NUMERIC, "1234567890.123456789012345678901234"},
	{"string", CN_VAL_TEXT, "h\xc3\xa9llo \"q\"\n"},
	{"bool", CN_VAL_BOOL, "true"},
	{"null", CN_VAL_NULL, ""},
	{"undefined", CN_VAL_NULL, ""},
	{"oid", CN_VAL_TEXT, "65b000000000000000000002"},
	{"date", CN_VAL_TEXT, "2024-02-29T12:34:56.789Z"},
	{"binary", CN_VAL_BYTES, "00010203feff"},
	{"uuid", CN_VAL_TEXT, "0f8fad5b-d9cb-469f-a165-70867728950e"},
	{"regex", CN_VAL_TEXT, "/^ab+c$/i"},
	{"code", CN_VAL_TEXT, "function() { return 1; }"},
	{"symbol", CN_VAL_TEXT, "sym"},
	{"timestamp", CN_VAL_JSON, "{\"$timestamp\":{\"t\":1700000000,\"i\":7}}"},
	{"minkey", CN_VAL_JSON, "{\"$minKey\":1}"},
	{"maxkey", CN_VAL_JSON, "{\"$maxKey\":1}"},
	{"dbpointer", CN_VAL_JSON,
	 "{\"$dbPointer\":{\"$ref\":\"orders\",\"$id\":\"65b000000000000000000002\"}}"},
	{"object", CN_VAL_JSON,
	 "{\"a\":1,\"when\":\"1970-01-01T00:00:00.000Z\",\"big\":9223372036854775807,"
	 "\"dec\":1234567890.123456789012345678901234,\"ref\":\"65b000000000000000000002\"}"},
	{"array", CN_VAL_JSON, "[1,\"two\",{\"sku\":\"SKU-1\"},\"AAEC\",\"Infinity\"]"},
};

/* Hidden: object.secret and array.secret (array positions left out). */
static int hide_secret(void *ctx, const char *path)
{
	(*(int *)ctx)++;
	return !strcmp(path, "object.secret") || !strcmp(path, "array.secret");
}

static void cell_text(const struct cn_value *v, char *buf, size_t size)
{
	switch (v->kind) {
	case CN_VAL_NULL: snprintf(buf, size, "%s", ""); break;
	case CN_VAL_BOOL: snprintf(buf, size, "%s", v->u.b ? "true" : "false"); break;
	case CN_VAL_INT: snprintf(buf, size, "%lld", (long long)v->u.i); break;
	case CN_VAL_DOUBLE:
		if (isnan(v->u.d))
			snprintf(buf, size, "nan");
		else
			snprintf(buf, size, "%.17g", v->u.d);
		break;
	case CN_VAL_BYTES: {
		size_t w = 0;
		for (size_t i = 0; i < v->u.s.len && w + 3 < size; i++)
			w += (size_t)snprintf(buf + w, size - w, "%02x", (unsigned char)v->u.s.ptr[i]);
		buf[w] = '\0';
		break;
	}
	default: snprintf(buf, size, "%.*s", (int)v->u.s.len, v->u.s.ptr); break;
	}
}

static void test_cells(void **state)
{
	(void)state;
	bson_t *d = zoo();
	struct dstr scratch = {0};
	int calls = 0;
	struct mt_scrub scrub = {&calls, hide_secret};
	for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++) {
		const struct cell_case *c = &cells[i];
		bson_iter_t it;
		assert_true(bson_iter_init_find(&it, d, c->field));
		struct cn_value v;
		assert_int_equal(mt_cell(&it, c->field, &scrub, &scratch, &v), CN_OK);
		char got[512];
		cell_text(&v, got, sizeof got);
		if (v.kind != c->kind || strcmp(got, c->text))
			fail_msg("%s: kind %d '%s', want kind %d '%s'", c->field, v.kind, got, c->kind, c->text);
		if (!strcmp(c->field, "double"))
			assert_true(v.u.d == 0.1);
	}
	assert_true(calls > 0);
	dstr_free(&scratch);
	bson_destroy(d);
}

static void test_type_names(void **state)
{
	(void)state;
	assert_string_equal(mt_type_name(BSON_TYPE_INT32), "int");
	assert_string_equal(mt_type_name(BSON_TYPE_INT64), "long");
	assert_string_equal(mt_type_name(BSON_TYPE_DECIMAL128), "decimal");
	assert_string_equal(mt_type_name(BSON_TYPE_OID), "objectId");
	assert_string_equal(mt_type_name(BSON_TYPE_DOCUMENT), "object");
	assert_string_equal(mt_type_name(BSON_TYPE_BINARY), "binData");
	assert_string_equal(mt_type_name(BSON_TYPE_DATE_TIME), "date");
	assert_string_equal(mt_type_name(BSON_TYPE_CODEWSCOPE), "javascriptWithScope");
	assert_string_equal(mt_type_name((bson_type_t)0x42), "unknown");
}

static void test_json_document(void **state)
{
	(void)state;
	bson_t *d = zoo();
	struct dstr out = {0};
	int calls = 0;
	struct mt_scrub scrub = {&calls, hide_secret};
	assert_int_equal(mt_json_document(&out, d, &scrub), CN_OK);
	assert_null(strstr(out.data, "secret"));
	assert_null(strstr(out.data, "hidden value"));
	assert_non_null(strstr(out.data, "\"int64\":9007199254740993"));
	assert_non_null(strstr(out.data, "\"nan\":\"NaN\""));
	assert_non_null(strstr(out.data, "\"string\":\"h\xc3\xa9llo \\\"q\\\"\\n\""));
	assert_non_null(strstr(out.data, "\"undefined\":null"));
	assert_non_null(strstr(out.data, "\"binary\":\"AAECA/7/\""));
	assert_non_null(strstr(out.data, "\"uuid\":\"0f8fad5b-d9cb-469f-a165-70867728950e\""));
	assert_non_null(strstr(out.data, "\"regex\":\"/^ab+c$/i\""));
	assert_non_null(strstr(out.data, "\"code\":\"function() { return 1; }\""));
	/* the whole thing reads back as JSON */
	cJSON *back = cJSON_ParseWithLength(out.data, out.len);
	if (!back)
		fail_msg("not JSON: %s", out.data);
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(back, "int32")->valuedouble, INT32_MIN);
	cJSON_Delete(back);
	/* no scrub: everything */
	dstr_reset(&out);
	assert_int_equal(mt_json_document(&out, d, NULL), CN_OK);
	assert_non_null(strstr(out.data, "\"secret\":\"hidden value\""));
	dstr_free(&out);
	bson_destroy(d);
}

static void test_json_text_and_depth(void **state)
{
	(void)state;
	struct dstr out = {0};
	/* invalid UTF-8 becomes U+FFFD; control characters are escaped */
	assert_int_equal(dstr_json_lossy(&out, "a\xff\xc3(b\x01\x7f\tc\xe2\x82\xac", 12), CN_OK);
	assert_string_equal(out.data, "\"a\\ufffd\\ufffd(b\\u0001\\u007f\\tc\xe2\x82\xac\"");
	/* documents nested past the limit */
	bson_t *root = bson_new(), *cur = root;
	bson_t kids[MT_MAX_DEPTH + 5];
	for (int i = 0; i < MT_MAX_DEPTH + 4; i++) {
		BSON_APPEND_DOCUMENT_BEGIN(cur, "d", &kids[i]);
		cur = &kids[i];
	}
	BSON_APPEND_INT32(cur, "x", 1);
	for (int i = MT_MAX_DEPTH + 3; i >= 0; i--)
		bson_append_document_end(i ? &kids[i - 1] : root, &kids[i]);
	dstr_reset(&out);
	assert_int_equal(mt_json_document(&out, root, NULL), CN_OK);
	assert_non_null(strstr(out.data, "\"(nested too deeply)\""));
	bson_destroy(root);
	/* an empty document and array */
	bson_t *e = bson_new(), ea;
	BSON_APPEND_ARRAY_BEGIN(e, "a", &ea);
	bson_append_array_end(e, &ea);
	dstr_reset(&out);
	assert_int_equal(mt_json_document(&out, e, NULL), CN_OK);
	assert_string_equal(out.data, "{\"a\":[]}");
	bson_destroy(e);
	dstr_free(&out);
}

static void test_dates(void **state)
{
	(void)state;
	static const struct {
		int64_t ms;
		const char *want;
	} cases[] = {
		{0, "1970-01-01T00:00:00.000Z"},
		{-1, "1969-12-31T23:59:59.999Z"},
		{951782400000LL, "2000-02-29T00:00:00.000Z"},
		{253402300799999LL, "9999-12-31T23:59:59.999Z"},
		{253402300800000LL, "+010000-01-01T00:00:00.000Z"},
		{-62135596800000LL, "0001-01-01T00:00:00.000Z"},
		{-62167219200000LL, "0000-01-01T00:00:00.000Z"},
		{-62167219200001LL, "-000001-12-31T23:59:59.999Z"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char buf[64];
		mt_format_date(cases[i].ms, buf, sizeof buf);
		if (strcmp(buf, cases[i].want))
			fail_msg("%lld: %s, want %s", (long long)cases[i].ms, buf, cases[i].want);
	}
	char buf[64];
	mt_format_date(INT64_MIN, buf, sizeof buf); /* does not crash, says something */
	assert_true(buf[0] == '-');
	mt_format_date(INT64_MAX, buf, sizeof buf);
	assert_true(buf[0] == '+');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cells),
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_json_document),
		cmocka_unit_test(test_json_text_and_depth),
		cmocka_unit_test(test_dates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
