/*
 * test_curated.c - curated tools' pure parts and the schema validator they
 * use: the schema generated from a declaration, placeholders counted in SQL
 * (quotes, comments, dollar quoting) and in command documents, arguments
 * bound by type and position, and json_schema_check's enum, pattern
 * (POSIX extended), date / date-time formats and defaults.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "curated.h"
#include "json_schema.h"

static struct config *load(const char *tools)
{
	char text[4096];
	snprintf(text, sizeof text,
		 "auth: { callback_secrets: [\"0123456789abcdef-secret\"] }\n"
		 "sources:\n  - { name: demo, driver: sqlite, dsn: demo.db }\n"
		 "tools:\n%s",
		 tools);
	struct config *cfg;
	struct cn_error err = {0};
	if (config_load_buffer("t.yaml", text, strlen(text), &cfg, &err))
		fail_msg("%s", err.message);
	return cfg;
}

static cJSON *parse(const char *json)
{
	cJSON *j = cJSON_Parse(json);
	if (!j)
		fail_msg("bad test JSON: %s", json);
	return j;
}

static void test_schema_of_a_declaration(void **state)
{
	(void)state;
	struct config *cfg =
	    load("  - name: t\n    description: d\n    source: demo\n"
		 "    statement: \"SELECT $1, $2, $3, $4, $5, $6\"\n"
		 "    parameters:\n"
		 "      - { name: s, type: string, required: true, enum: [a, b], pattern: \"^[ab]$\" }\n"
		 "      - { name: i, type: integer, minimum: -3, maximum: 9, default: 2, description: n }\n"
		 "      - { name: x, type: number, minimum: 0.5 }\n"
		 "      - { name: b, type: boolean, default: false }\n"
		 "      - { name: d, type: date }\n"
		 "      - { name: ts, type: timestamp, required: true }\n");
	cJSON *schema = curated_tool_schema(&cfg->tools[0]);
	cJSON *want = parse(
	    "{\"type\":\"object\",\"required\":[\"s\",\"ts\"],\"additionalProperties\":false,"
	    "\"properties\":{"
	    "\"s\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"],\"pattern\":\"^[ab]$\"},"
	    "\"i\":{\"type\":\"integer\",\"description\":\"n\",\"minimum\":-3,\"maximum\":9,\"default\":2},"
	    "\"x\":{\"type\":\"number\",\"minimum\":0.5},"
	    "\"b\":{\"type\":\"boolean\",\"default\":false},"
	    "\"d\":{\"type\":\"string\",\"format\":\"date\",\"description\":\"A date, YYYY-MM-DD\"},"
	    "\"ts\":{\"type\":\"string\",\"format\":\"date-time\","
	    "\"description\":\"A timestamp, ISO 8601 (2024-05-01T13:00:00Z)\"}}}");
	if (!cJSON_Compare(schema, want, true)) {
		char *got = cJSON_PrintUnformatted(schema);
		fail_msg("schema: %s", got);
	}
	char msg[300];
	assert_int_equal(json_schema_check_defaults(schema, "parameters", msg, sizeof msg), CN_OK);
	cJSON_Delete(want);
	cJSON_Delete(schema);

	/* no parameters: an empty object, no required list */
	config_free(cfg);
	cfg = load("  - { name: t, description: d, source: demo, statement: \"SELECT 1\" }\n");
	schema = curated_tool_schema(&cfg->tools[0]);
	want = parse("{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{}}");
	assert_true(cJSON_Compare(schema, want, true));
	cJSON_Delete(want);
	cJSON_Delete(schema);
	config_free(cfg);
}

static void test_sql_placeholders(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		const char *used; /* the numbers found, e.g. "1,2" */
	} cases[] = {
	    {"SELECT 1", ""},
	    {"SELECT $1", "1"},
	    {"SELECT $2, $1, $2", "1,2"},
	    {"SELECT '$1', \"$2\", `$3` FROM t WHERE a = $4", "4"},
	    {"SELECT 'it''s $1', $2", "2"},
	    {"SELECT E'a\\'$1', $2", "2"},
	    {"SELECT 'a\\', $1", "1"}, /* a standard string: the backslash is a character */
	    {"SELECT 1 -- $1\n, $2", "2"},
	    {"SELECT /* $1 /* nested $2 */ $3 */ $4", "4"},
	    {"SELECT $$ $1 $$, $tag$ $2 $tag$, $3", "3"},
	    {"SELECT a$1 FROM t WHERE x = $10", "10"},
	    {"SELECT $1::int, ($2)", "1,2"},
	    {"SELECT '$1 unterminated", ""},
	    {"SELECT $100", "100"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		bool used[CONFIG_MAX_TOOL_PARAMS];
		char why[200] = "", got[400] = "";
		if (curated_placeholders(cases[i].sql, false, used, why, sizeof why) != CN_OK)
			fail_msg("case %zu: %s", i, why);
		for (int k = 0; k < CONFIG_MAX_TOOL_PARAMS; k++)
			if (used[k])
				snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", *got ? "," : "",
					 k + 1);
		if (strcmp(got, cases[i].used) != 0)
			fail_msg("case %zu (%s): found '%s', want '%s'", i, cases[i].sql, got, cases[i].used);
	}
	bool used[CONFIG_MAX_TOOL_PARAMS];
	char why[200];
	assert_int_equal(curated_placeholders("SELECT $0", false, used, why, sizeof why), CN_EINVAL);
	assert_int_equal(curated_placeholders("SELECT $101", false, used, why, sizeof why), CN_EINVAL);
	assert_int_equal(curated_placeholders("SELECT $99999999999999999999", false, used, why, sizeof why),
			 CN_EINVAL);
}

static void test_document_placeholders(void **state)
{
	(void)state;
	bool used[CONFIG_MAX_TOOL_PARAMS];
	char why[200];
	assert_int_equal(curated_placeholders("{\"find\":\"o\",\"filter\":{\"a\":{\"$param\":2},"
					      "\"b\":{\"$in\":[{\"$param\":1}]}}}",
					      true, used, why, sizeof why),
			 CN_OK);
	assert_true(used[0] && used[1] && !used[2]);
	assert_int_equal(curated_placeholders("{\"find\":\"o\",\"filter\":{\"a\":{\"$param\":1.5}}}", true,
					      used, why, sizeof why),
			 CN_EINVAL);
	assert_int_equal(curated_placeholders("{\"find\":\"o\",\"filter\":{\"a\":{\"$param\":\"1\"}}}", true,
					      used, why, sizeof why),
			 CN_EINVAL);
	assert_non_null(strstr(why, "takes a number"));
	assert_int_equal(curated_placeholders("[1]", true, used, why, sizeof why), CN_EINVAL);
	assert_non_null(strstr(why, "not a JSON object"));
	/* deep nesting is refused, not recursed into without end */
	char deep[2000] = "";
	for (int i = 0; i < 90; i++)
		strcat(deep, "{\"a\":");
	strcat(deep, "1");
	for (int i = 0; i < 90; i++)
		strcat(deep, "}");
	assert_int_equal(curated_placeholders(deep, true, used, why, sizeof why), CN_EINVAL);
}

static void test_bind(void **state)
{
	(void)state;
	struct config *cfg = load("  - name: t\n    description: d\n    source: demo\n"
				  "    statement: \"SELECT $1, $2, $3, $4, $5, $6\"\n"
				  "    parameters:\n"
				  "      - { name: s, type: string, required: true }\n"
				  "      - { name: i, type: integer, default: -7 }\n"
				  "      - { name: x, type: number, default: 2.5 }\n"
				  "      - { name: b, type: boolean, default: true }\n"
				  "      - { name: d, type: date, default: \"2024-02-29\" }\n"
				  "      - { name: n, type: integer }\n");
	const struct config_tool *t = &cfg->tools[0];
	struct cn_value v[CONFIG_MAX_TOOL_PARAMS];
	char msg[200];
	cJSON *args = parse("{\"s\":\"hello\"}");
	assert_int_equal(curated_bind(t, args, v, msg, sizeof msg), CN_OK);
	assert_int_equal(v[0].kind, CN_VAL_TEXT);
	assert_int_equal(v[0].u.s.len, 5);
	assert_memory_equal(v[0].u.s.ptr, "hello", 5);
	assert_int_equal(v[1].kind, CN_VAL_INT);
	assert_int_equal(v[1].u.i, -7);
	assert_int_equal(v[2].kind, CN_VAL_DOUBLE);
	assert_true(v[2].u.d == 2.5);
	assert_int_equal(v[3].kind, CN_VAL_BOOL);
	assert_true(v[3].u.b);
	assert_int_equal(v[4].kind, CN_VAL_TEXT);
	assert_memory_equal(v[4].u.s.ptr, "2024-02-29", 10);
	assert_int_equal(v[5].kind, CN_VAL_NULL);
	cJSON_Delete(args);

	args =
	    parse("{\"s\":\"x\",\"i\":9007199254740992,\"x\":3,\"b\":false,\"d\":\"2023-01-31\",\"n\":null}");
	assert_int_equal(curated_bind(t, args, v, msg, sizeof msg), CN_OK);
	assert_int_equal(v[1].u.i, 9007199254740992LL);
	assert_true(v[2].kind == CN_VAL_DOUBLE && v[2].u.d == 3.0);
	assert_false(v[3].u.b);
	assert_int_equal(v[5].kind, CN_VAL_NULL);
	cJSON_Delete(args);

	args = parse("{\"s\":\"x\",\"i\":1e300}");
	assert_int_equal(curated_bind(t, args, v, msg, sizeof msg), CN_EINVAL);
	assert_non_null(strstr(msg, "parameters.i"));
	cJSON_Delete(args);
	config_free(cfg);
}

static void test_values_from_text(void **state)
{
	(void)state;
	static const struct {
		enum config_param_type type;
		const char *text;
		const char *json; /* NULL: refused */
	} cases[] = {
	    {CONFIG_PARAM_INTEGER, "42", "42"},
	    {CONFIG_PARAM_INTEGER, "-9007199254740992", "-9007199254740992"},
	    {CONFIG_PARAM_INTEGER, "9007199254740993", NULL},
	    {CONFIG_PARAM_INTEGER, "4.0", NULL},
	    {CONFIG_PARAM_INTEGER, "0x10", NULL},
	    {CONFIG_PARAM_NUMBER, "-1.5e3", "-1500"},
	    {CONFIG_PARAM_NUMBER, "inf", NULL},
	    {CONFIG_PARAM_NUMBER, "1e999", NULL},
	    {CONFIG_PARAM_NUMBER, ".5", NULL},
	    {CONFIG_PARAM_BOOLEAN, "true", "true"},
	    {CONFIG_PARAM_BOOLEAN, "yes", NULL},
	    {CONFIG_PARAM_DATE, "2024-02-29", "\"2024-02-29\""},
	    {CONFIG_PARAM_DATE, "2023-02-29", NULL},
	    {CONFIG_PARAM_DATE, "2024-2-1", NULL},
	    {CONFIG_PARAM_TIMESTAMP, "2024-05-01T13:00:00Z", "\"2024-05-01T13:00:00Z\""},
	    {CONFIG_PARAM_TIMESTAMP, "2024-05-01T13:00:00.123456+05:30",
	     "\"2024-05-01T13:00:00.123456+05:30\""},
	    {CONFIG_PARAM_TIMESTAMP, "2024-05-01T13:00:00", "\"2024-05-01T13:00:00\""},
	    {CONFIG_PARAM_TIMESTAMP, "2024-05-01 13:00:00", NULL},
	    {CONFIG_PARAM_TIMESTAMP, "2024-05-01T24:00:00Z", NULL},
	    {CONFIG_PARAM_STRING, "anything", "\"anything\""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char why[200] = "";
		cJSON *v = curated_value_from_text(cases[i].type, cases[i].text, why, sizeof why);
		if (!cases[i].json) {
			if (v)
				fail_msg("case %zu (%s) accepted", i, cases[i].text);
			assert_true(why[0] != '\0');
			continue;
		}
		if (!v)
			fail_msg("case %zu (%s) refused: %s", i, cases[i].text, why);
		cJSON *want = parse(cases[i].json);
		assert_true(cJSON_Compare(v, want, true));
		cJSON_Delete(want);
		cJSON_Delete(v);
	}
}

static void test_schema_keywords(void **state)
{
	(void)state;
	cJSON *schema = parse("{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
			      "\"e\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"]},"
			      "\"n\":{\"type\":\"integer\",\"enum\":[1,2]},"
			      "\"p\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}[0-9]+$\"},"
			      "\"bad\":{\"type\":\"string\",\"pattern\":\"([\"},"
			      "\"d\":{\"type\":\"string\",\"format\":\"date\"},"
			      "\"t\":{\"type\":\"string\",\"format\":\"date-time\"}}}");
	static const struct {
		const char *value;
		const char *want; /* NULL: valid */
	} cases[] = {
	    {"{\"e\":\"a\"}", NULL},
	    {"{\"e\":\"c\"}", "parameters.e: must be one of \"a\", \"b\""},
	    {"{\"n\":2}", NULL},
	    {"{\"n\":3}", "parameters.n: must be one of 1, 2"},
	    {"{\"p\":\"DE123\"}", NULL},
	    {"{\"p\":\"de123\"}", "parameters.p: \"de123\" does not match the pattern ^[A-Z]{2}[0-9]+$"},
	    {"{\"bad\":\"x\"}", "parameters.bad: the schema's pattern is not a valid regular expression"},
	    {"{\"d\":\"2024-12-31\"}", NULL},
	    {"{\"d\":\"2024-12-32\"}", "parameters.d: \"2024-12-32\" is not a date"},
	    {"{\"t\":\"2024-12-31T23:59:60Z\"}", NULL},
	    {"{\"t\":\"2024-12-31T23:59:59+24:00\"}", "is not a timestamp"},
	    {"{\"t\":\"2024-12-31\"}", "is not a timestamp"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char msg[300] = "";
		cJSON *v = parse(cases[i].value);
		int rc = json_schema_check(schema, v, "parameters", msg, sizeof msg);
		cJSON_Delete(v);
		if (!cases[i].want && rc != CN_OK)
			fail_msg("case %zu refused: %s", i, msg);
		if (cases[i].want && (rc != CN_EINVAL || !strstr(msg, cases[i].want)))
			fail_msg("case %zu: '%s' lacks '%s'", i, msg, cases[i].want);
	}
	cJSON_Delete(schema);

	/* defaults are checked against their own schema */
	char msg[300];
	schema = parse("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"maximum\":5,"
		       "\"default\":7}}}");
	assert_int_equal(json_schema_check_defaults(schema, "parameters", msg, sizeof msg), CN_EINVAL);
	assert_non_null(strstr(msg, "parameters.a.default: must be at most 5"));
	cJSON_Delete(schema);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_schema_of_a_declaration), cmocka_unit_test(test_sql_placeholders),
	    cmocka_unit_test(test_document_placeholders),   cmocka_unit_test(test_bind),
	    cmocka_unit_test(test_values_from_text),	    cmocka_unit_test(test_schema_keywords),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
