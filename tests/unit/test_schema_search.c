/* test_schema_search.c - search_schema's index on the demo database and its
 * mappings (conf/mappings/demo.yaml): ranking, stemming, prefixes, hidden
 * objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver_loader.h"
#include "mappings.h"
#include "schema_search.h"

static struct {
	struct schema_model *model;
	struct schema_search *index;
} E;

static int group_setup(void **state)
{
	(void)state;
	struct cn_error err = {0};
	struct driver_module *mod;
	struct mappings *mp;
	void *h = NULL;
	if (driver_load(CN_TEST_DRIVER_DIR, "sqlite", &mod, &err) ||
	    mappings_load(CN_TEST_SOURCE_DIR "/conf/mappings/demo.yaml", &mp, &err)) {
		fprintf(stderr, "%s\n", err.message);
		return -1;
	}
	struct cn_source_info src = {.name = "demo", .dsn = CN_TEST_DEMO_DB, .base_dir = "/", .pool_size = 1,
				     .timeout_ms = 5000};
	struct cn_schema_builder b;
	E.model = schema_model_new();
	schema_model_builder(E.model, &b);
	if (mod->api->open(&src, &h, &err) || mod->api->introspect(h, &b, &err)) {
		fprintf(stderr, "%s\n", err.message);
		return -1;
	}
	mod->api->close(h);
	driver_unload(mod);
	mappings_apply(mp, E.model, NULL, NULL);
	mappings_free(mp);
	if (schema_search_build(E.model, &E.index, &err)) {
		fprintf(stderr, "%s\n", err.message);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	schema_search_free(E.index);
	schema_model_free(E.model);
	return 0;
}

/* "table" or "table.column" of hit i of a search, "" past the end. */
static const char *hit_name(const struct search_hit *h, size_t n, size_t i)
{
	static char out[8][128];
	if (i >= n)
		return "";
	snprintf(out[i % 8], sizeof out[0], "%s%s%s", h[i].table->name, h[i].column ? "." : "",
		 h[i].column ? h[i].column->name : "");
	return out[i % 8];
}

static size_t search(const char *q, struct search_hit *hits, size_t limit)
{
	size_t n = 0;
	struct cn_error err = {0};
	if (schema_search_query(E.index, q, limit, hits, &n, &err) != CN_OK)
		fail_msg("'%s': %s", q, err.message);
	for (size_t i = 1; i < n; i++)
		assert_true(hits[i - 1].score >= hits[i].score);
	return n;
}

static void test_ranking(void **state)
{
	(void)state;
	static const struct {
		const char *query;
		const char *first; /* the best hit */
	} cases[] = {
		{"signup", "customers.created_at"},            /* synonym "signup date" */
		{"signed up", "customers.created_at"},         /* description, stemmed */
		{"registration", "customers.created_at"},      /* synonym "registration date" */
		{"customer", "customers"},                     /* the table before its columns */
		{"cust", "customers"},                         /* a prefix */
		{"clients", "customers"},                      /* a table synonym */
		{"qty", "order_items.quantity"},               /* a column synonym */
		{"order date", "orders.ordered_at"},           /* two words, both matched */
		{"shipping date", "orders.shipped_at"},
		{"product code", "products.sku"},
		{"categories", "products.category"},           /* plural to singular */
		{"revenue per order", "order_totals"},
		{"e-mail", "customers.email"},
		{"newsletter", "customers.preferences"},
		{"unit_price", "order_items.unit_price"},      /* a name as written */
	};
	struct search_hit hits[10];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = search(cases[i].query, hits, 10);
		if (strcmp(hit_name(hits, n, 0), cases[i].first) != 0)
			fail_msg("'%s': first hit %s (then %s, %s), want %s", cases[i].query,
				 hit_name(hits, n, 0), hit_name(hits, n, 1), hit_name(hits, n, 2),
				 cases[i].first);
	}
	/* the limit holds */
	assert_int_equal(search("order", hits, 3), 3);
}

/* Hidden tables and columns are never indexed. */
static void test_hidden_never_found(void **state)
{
	(void)state;
	static const char *const queries[] = {"phone", "internal", "audit", "actor", "logged", "detail"};
	struct search_hit hits[50];
	for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
		size_t n = search(queries[i], hits, 50);
		for (size_t k = 0; k < n; k++) {
			assert_string_not_equal(hits[k].table->name, "internal_audit_log");
			assert_false(hits[k].column && strcmp(hits[k].column->name, "phone") == 0);
			assert_false(hits[k].table->hidden || (hits[k].column && hits[k].column->hidden));
		}
	}
	assert_int_equal(search("phone", hits, 50), 0);
}

static void test_query_text(void **state)
{
	(void)state;
	char q[256];
	struct search_hit hits[4];
	size_t n = 9;
	struct cn_error err = {0};
	assert_int_equal(schema_search_fts_query("signup date", q, sizeof q), CN_OK);
	assert_string_equal(q, "\"signup\"* OR \"date\"*");
	/* FTS5 syntax in the user's text is only words */
	assert_int_equal(schema_search_fts_query("a AND \"b\" NEAR(x*, y) c:d -e ^f", q, sizeof q), CN_OK);
	assert_string_equal(q, "\"AND\"* OR \"NEAR\"*");
	assert_int_equal(schema_search_fts_query("x", q, sizeof q), CN_OK);
	assert_string_equal(q, "\"x\"*");
	assert_int_equal(schema_search_fts_query("  --!! ", q, sizeof q), CN_EINVAL);
	assert_int_equal(schema_search_query(E.index, "***", 5, hits, &n, &err), CN_EINVAL);
	assert_int_equal(n, 0);
	/* at most SEARCH_MAX_WORDS words, each at most SEARCH_MAX_WORD bytes */
	char many[2000] = "";
	for (int i = 0; i < 40; i++)
		strcat(many, "word ");
	char big[SEARCH_MAX_WORDS * (SEARCH_MAX_WORD + 8) + 1];
	assert_int_equal(schema_search_fts_query(many, big, sizeof big), CN_OK);
	size_t ors = 0;
	for (const char *p = big; (p = strstr(p, " OR ")); p++)
		ors++;
	assert_int_equal(ors, SEARCH_MAX_WORDS - 1);
	memset(many, 'a', 300);
	many[300] = '\0';
	assert_int_equal(schema_search_fts_query(many, big, sizeof big), CN_OK);
	assert_int_equal(strlen(big), SEARCH_MAX_WORD + 3);
	/* non-ASCII words are searched too */
	assert_int_equal(schema_search_query(E.index, "préférences", 4, hits, &n, &err), CN_OK);
	assert_true(schema_search_size(E.index) >= 30); /* 5 tables and a view, their visible columns */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ranking),
		cmocka_unit_test(test_hidden_never_found),
		cmocka_unit_test(test_query_text),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
