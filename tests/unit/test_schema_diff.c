/* test_schema_diff.c - snapshots, diffs, drift and the compact index of a
 * large schema. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mappings.h"
#include "schema_diff.h"

/* A small shop: crm.customers, shop.orders (FK, index), shop.totals (view). */
static struct schema_model *shop(void)
{
	struct schema_model *m = schema_model_new();
	struct cn_schema_builder b;
	const char *id[] = {"id"}, *cust[] = {"customer_id"}, *email[] = {"email"};
	const char *two[] = {"customer_id", "placed_at"};
	assert_non_null(m);
	schema_model_builder(m, &b);
	int t = b.table(b.ctx, "crm", "customers", CN_OBJ_TABLE, "Customer accounts", 3);
	assert_true(t >= 0);
	assert_int_equal(b.column(b.ctx, t, "id", "integer", false, NULL, NULL, 1), CN_OK);
	assert_int_equal(b.column(b.ctx, t, "email", "text", false, NULL, "Login email", 0), CN_OK);
	assert_int_equal(b.column(b.ctx, t, "name", "text", true, NULL, NULL, 0), CN_OK);
	assert_int_equal(b.index(b.ctx, t, "customers_email_key", true, 1, email), CN_OK);
	t = b.table(b.ctx, "shop", "orders", CN_OBJ_TABLE, NULL, -1);
	assert_int_equal(b.column(b.ctx, t, "id", "bigint", false, NULL, NULL, 1), CN_OK);
	assert_int_equal(b.column(b.ctx, t, "customer_id", "integer", false, NULL, NULL, 0), CN_OK);
	assert_int_equal(b.column(b.ctx, t, "placed_at", "timestamp", true, NULL, NULL, 0), CN_OK);
	assert_int_equal(b.foreign_key(b.ctx, t, "orders_customer_fk", 1, cust, "crm", "customers", id),
			 CN_OK);
	assert_int_equal(b.index(b.ctx, t, "orders_cp_idx", false, 2, two), CN_OK);
	t = b.table(b.ctx, "shop", "totals", CN_OBJ_VIEW, NULL, -1);
	assert_int_equal(b.column(b.ctx, t, "total", "numeric", true, NULL, NULL, 0), CN_OK);
	return m;
}

static void test_snapshot_round_trip(void **state)
{
	(void)state;
	struct schema_model *m = shop(), *back = NULL;
	struct cn_error err = {0};
	char *text = schema_snapshot_encode(m);
	assert_non_null(text);
	assert_non_null(strstr(text, "\"format\":\"interactor-connector schema snapshot\",\"version\":1"));
	assert_null(strstr(text, "Customer accounts")); /* comments are not structure */
	assert_int_equal(schema_snapshot_decode(text, strlen(text), &back, &err), CN_OK);
	struct schema_diff *d = schema_diff_compute(m, back);
	assert_non_null(d);
	assert_int_equal(d->n, 0);
	schema_diff_free(d);
	char *again = schema_snapshot_encode(back);
	assert_string_equal(again, text);
	free(again);
	free(text);
	schema_model_free(back);

	static const char *const bad[] = {
	    "",
	    "not json",
	    "{}",
	    "{\"format\":\"x\",\"version\":1,\"tables\":[]}",
	    "{\"format\":\"interactor-connector schema snapshot\",\"version\":2,\"tables\":[]}",
	    "{\"format\":\"interactor-connector schema "
	    "snapshot\",\"version\":1,\"tables\":[{\"name\":\"t\"}]}",
	    "{\"format\":\"interactor-connector schema snapshot\",\"version\":1,\"tables\":[{\"name\":\"t\","
	    "\"kind\":\"table\",\"columns\":[{\"type\":\"x\"}]}]}",
	    "{\"format\":\"interactor-connector schema snapshot\",\"version\":1,\"tables\":[{\"name\":\"t\","
	    "\"kind\":\"table\",\"foreign_keys\":[{\"columns\":[\"a\"],\"ref_table\":\"u\",\"ref_columns\":[]"
	    "}]}]}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		back = (struct schema_model *)1;
		if (schema_snapshot_decode(bad[i], strlen(bad[i]), &back, &err) != CN_EINVAL)
			fail_msg("case %zu decoded", i);
		assert_null(back);
		assert_true(err.message[0] != '\0');
	}
	assert_int_equal(schema_snapshot_decode(bad[4], strlen(bad[4]), &back, &err), CN_EINVAL);
	assert_non_null(strstr(err.message, "version 2"));
	schema_model_free(m);
}

/* The changes of d as "name table object before after" lines. */
static char *changes(const struct schema_diff *d)
{
	static char out[4096];
	size_t used = 0;
	out[0] = '\0';
	for (size_t i = 0; i < d->n; i++) {
		const struct schema_change *c = &d->items[i];
		used += (size_t)snprintf(out + used, sizeof out - used, "%s %s %s %s %s\n",
					 schema_change_name(c->kind), c->table, c->object ? c->object : "-",
					 c->before ? c->before : "-", c->after ? c->after : "-");
	}
	return out;
}

static void test_diff(void **state)
{
	(void)state;
	struct schema_model *a = shop(), *b = schema_model_new();
	struct cn_schema_builder bb;
	const char *id[] = {"id"}, *name[] = {"name"}, *cust[] = {"customer_id"};
	schema_model_builder(b, &bb);
	/* crm.customers: email retyped and nullable, name dropped, phone added, email index gone,
	 * a name index added; shop.orders: the FK now points elsewhere, the index changed, the
	 * primary key grew; shop.totals became a table; shop.refunds is new */
	int t = bb.table(bb.ctx, "crm", "customers", CN_OBJ_TABLE, NULL, 3);
	assert_int_equal(bb.column(bb.ctx, t, "id", "integer", false, NULL, NULL, 1), CN_OK);
	assert_int_equal(bb.column(bb.ctx, t, "email", "varchar(200)", true, NULL, NULL, 0), CN_OK);
	assert_int_equal(bb.column(bb.ctx, t, "phone", "text", true, NULL, NULL, 0), CN_OK);
	assert_int_equal(bb.index(bb.ctx, t, "customers_name_idx", false, 1, name), CN_OK);
	t = bb.table(bb.ctx, "shop", "orders", CN_OBJ_TABLE, NULL, -1);
	assert_int_equal(bb.column(bb.ctx, t, "id", "bigint", false, NULL, NULL, 1), CN_OK);
	assert_int_equal(bb.column(bb.ctx, t, "customer_id", "integer", false, NULL, NULL, 2), CN_OK);
	assert_int_equal(bb.column(bb.ctx, t, "placed_at", "timestamp", true, NULL, NULL, 0), CN_OK);
	assert_int_equal(bb.foreign_key(bb.ctx, t, "orders_customer_fk", 1, cust, "crm", "people", id),
			 CN_OK);
	assert_int_equal(bb.index(bb.ctx, t, "orders_cp_idx", true, 1, cust), CN_OK);
	t = bb.table(bb.ctx, "shop", "refunds", CN_OBJ_TABLE, NULL, -1);
	assert_int_equal(bb.column(bb.ctx, t, "id", "bigint", false, NULL, NULL, 1), CN_OK);
	t = bb.table(bb.ctx, "shop", "totals", CN_OBJ_TABLE, NULL, -1);
	assert_int_equal(bb.column(bb.ctx, t, "total", "numeric", true, NULL, NULL, 0), CN_OK);

	struct schema_diff *d = schema_diff_compute(a, b);
	assert_non_null(d);
	assert_string_equal(
	    changes(d),
	    "column_type_changed crm.customers email text varchar(200)\n"
	    "column_nullability_changed crm.customers email not null null\n"
	    "column_removed crm.customers name text -\n"
	    "column_added crm.customers phone - text\n"
	    "index_removed crm.customers customers_email_key unique (email) -\n"
	    "index_added crm.customers customers_name_idx - (name)\n"
	    "primary_key_changed shop.orders - id id, customer_id\n"
	    "foreign_key_removed shop.orders (customer_id) -> crm.customers (id) - -\n"
	    "foreign_key_added shop.orders (customer_id) -> crm.people (id) - -\n"
	    "index_changed shop.orders orders_cp_idx (customer_id, placed_at) unique (customer_id)\n"
	    "table_added shop.refunds - - table\n"
	    "table_kind_changed shop.totals - view table\n");
	char line[300];
	schema_change_describe(&d->items[0], line, sizeof line);
	assert_string_equal(line, "column crm.customers.email retyped: text -> varchar(200)");
	schema_change_describe(&d->items[10], line, sizeof line);
	assert_string_equal(line, "table shop.refunds added");
	cJSON *j = schema_diff_to_json(d);
	char *text = cJSON_PrintUnformatted(j);
	assert_non_null(
	    strstr(text, "{\"change\":\"column_added\",\"table\":\"crm.customers\","
			 "\"column\":\"phone\",\"after\":\"text\",\"message\":\"column crm.customers.phone "
			 "added (text)\"}"));
	assert_non_null(strstr(text, "{\"change\":\"index_removed\",\"table\":\"crm.customers\","
				     "\"index\":\"customers_email_key\",\"before\":\"unique (email)\","));
	free(text);
	cJSON_Delete(j);
	schema_diff_free(d);

	/* the other way round, and against nothing */
	d = schema_diff_compute(b, a);
	assert_int_equal(d->n, 12);
	schema_diff_free(d);
	d = schema_diff_compute(NULL, a);
	assert_string_equal(changes(d), "table_added crm.customers - - table\n"
					"table_added shop.orders - - table\n"
					"table_added shop.totals - - view\n");
	schema_diff_free(d);
	d = schema_diff_compute(a, a);
	assert_int_equal(d->n, 0);
	schema_diff_free(d);
	schema_model_free(a);
	schema_model_free(b);
}

/* Diffing stays fast on large schemas: 5,000 tables each way. */
static void test_diff_large(void **state)
{
	(void)state;
	struct schema_model *a = schema_model_new(), *b = schema_model_new();
	struct cn_schema_builder ba, bb;
	schema_model_builder(a, &ba);
	schema_model_builder(b, &bb);
	for (int i = 0; i < 5000; i++) {
		char name[32];
		snprintf(name, sizeof name, "t%05d", i);
		int ta = ba.table(ba.ctx, "public", name, CN_OBJ_TABLE, NULL, -1);
		int tb = bb.table(bb.ctx, "public", name, CN_OBJ_TABLE, NULL, -1);
		for (int c = 0; c < 20; c++) {
			char col[16];
			snprintf(col, sizeof col, "c%d", c);
			assert_int_equal(ba.column(ba.ctx, ta, col, "integer", true, NULL, NULL, 0), CN_OK);
			assert_int_equal(bb.column(bb.ctx, tb, col,
						   i == 4242 && c == 7 ? "bigint" : "integer", true, NULL,
						   NULL, 0),
					 CN_OK);
		}
	}
	struct schema_diff *d = schema_diff_compute(a, b);
	assert_string_equal(changes(d), "column_type_changed public.t04242 c7 integer bigint\n");
	schema_diff_free(d);
	schema_model_free(a);
	schema_model_free(b);
}

static void test_drift(void **state)
{
	(void)state;
	struct schema_model *base = shop(), *cur = shop();
	struct cn_schema_builder b;
	schema_model_builder(cur, &b);
	/* new since the baseline: customers.phone (no description), customers.vip (a comment),
	 * customers.secret (hidden), and a whole new table */
	assert_int_equal(b.column(b.ctx, 0, "phone", "text", true, NULL, NULL, 0), CN_OK);
	assert_int_equal(b.column(b.ctx, 0, "vip", "boolean", true, NULL, "Gold customers", 0), CN_OK);
	assert_int_equal(b.column(b.ctx, 0, "secret", "text", true, NULL, NULL, 0), CN_OK);
	int t = b.table(b.ctx, "shop", "refunds", CN_OBJ_TABLE, NULL, -1);
	assert_int_equal(b.column(b.ctx, t, "amount", "numeric", false, NULL, NULL, 0), CN_OK);
	struct mappings *mp;
	struct cn_error err = {0};
	static const char map[] = "mappings:\n"
				  "  customers.secret: { hidden: true }\n"
				  "  refunds.amount: { description: Money back }\n"
				  "  customers.signup: { description: When they joined }\n";
	assert_int_equal(mappings_load_buffer("m.yaml", map, strlen(map), &mp, &err), CN_OK);
	assert_int_equal(mappings_apply(mp, cur, NULL, NULL), 1);

	struct schema_drift *d = schema_drift_new();
	assert_int_equal(schema_drift_add_mapping(d, mp->path, mp->entries[2].line, mp->entries[2].key),
			 CN_OK);
	assert_int_equal(schema_drift_add_undescribed(d, base, cur), CN_OK);
	assert_int_equal(d->n, 2);
	char line[300];
	drift_item_describe(&d->items[0], line, sizeof line);
	assert_string_equal(line, "mapping 'customers.signup' (m.yaml:4) matches no table or column");
	drift_item_describe(&d->items[1], line, sizeof line);
	assert_string_equal(line, "column crm.customers.phone (text) is new since the baseline and has no "
				  "description");
	/* a round trip through the JSON the state store keeps */
	cJSON *j = schema_drift_to_json(d);
	struct schema_drift *back = schema_drift_from_json(j);
	assert_non_null(back);
	assert_int_equal(back->n, 2);
	assert_string_equal(back->items[0].key, "customers.signup");
	assert_int_equal(back->items[0].line, 4);
	assert_string_equal(back->items[1].column, "phone");
	cJSON_Delete(j);
	schema_drift_free(back);
	/* no baseline: nothing is new */
	schema_drift_free(d);
	d = schema_drift_new();
	assert_int_equal(schema_drift_add_undescribed(d, NULL, cur), CN_OK);
	assert_int_equal(d->n, 0);
	schema_drift_free(d);
	cJSON *junk = cJSON_Parse("[{\"kind\":\"other\"}]");
	assert_null(schema_drift_from_json(junk));
	cJSON_Delete(junk);
	mappings_free(mp);
	schema_model_free(base);
	schema_model_free(cur);
}

static void test_compact_index(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	struct cn_schema_builder b;
	schema_model_builder(m, &b);
	char long_desc[400];
	memset(long_desc, 'x', sizeof long_desc - 1);
	long_desc[sizeof long_desc - 1] = '\0';
	memcpy(long_desc + 159, "\xc3\xa9", 2); /* an é across the cut at 160 bytes */
	for (int i = 999; i >= 0; i--) {
		char name[32];
		snprintf(name, sizeof name, "%s_%03d", i % 2 ? "orders" : "customers", i);
		int t =
		    b.table(b.ctx, i % 3 ? "sales" : NULL, name, CN_OBJ_TABLE, i == 0 ? long_desc : NULL, -1);
		assert_int_equal(b.column(b.ctx, t, "id", "int", false, NULL, NULL, 1), CN_OK);
		assert_int_equal(b.column(b.ctx, t, "x", "int", true, NULL, NULL, 0), CN_OK);
		if (i == 5)
			m->tables[m->ntables - 1].hidden = true;
	}
	struct schema_compact *c = schema_compact_new(m);
	assert_non_null(c);
	size_t seen = 0, budget = 4000;
	char prev[64] = "";
	for (size_t page = 1;; page++) {
		struct buf out;
		struct schema_compact_page info;
		buf_init(&out, 1 << 20);
		int rc = schema_compact_page(c, NULL, page, budget, &out, &info);
		if (rc == CN_ENOTFOUND) {
			assert_int_equal(page, info.pages + 1);
			buf_free(&out);
			break;
		}
		assert_int_equal(rc, CN_OK);
		assert_true(out.len <= budget);
		assert_int_equal(info.first, seen);
		assert_int_equal(info.total, 999);
		char *json = malloc(out.len + 3);
		snprintf(json, out.len + 3, "[%s]", out.data);
		cJSON *arr = cJSON_Parse(json);
		assert_non_null(arr);
		assert_int_equal(cJSON_GetArraySize(arr), (int)info.count);
		const cJSON *e;
		cJSON_ArrayForEach(e, arr) {
			const char *name = cJSON_GetObjectItemCaseSensitive(e, "name")->valuestring;
			assert_true(strcmp(prev, name) < 0 || strchr(prev, '_') == NULL ||
				    cJSON_GetObjectItemCaseSensitive(e, "schema") != NULL);
			assert_int_equal(cJSON_GetObjectItemCaseSensitive(e, "columns")->valueint, 2);
			assert_string_not_equal(name, "orders_005");
			const cJSON *desc = cJSON_GetObjectItemCaseSensitive(e, "description");
			if (desc) {
				assert_int_equal(strlen(desc->valuestring),
						 159 + 3); /* cut before é, then … */
				assert_non_null(strstr(desc->valuestring, "\xe2\x80\xa6"));
			}
			snprintf(prev, sizeof prev, "%s", name);
			seen++;
		}
		cJSON_Delete(arr);
		free(json);
		buf_free(&out);
	}
	assert_int_equal(seen, 999);

	/* a prefix on the name or on schema.name, case-insensitive */
	struct buf out;
	struct schema_compact_page info;
	buf_init(&out, 1 << 20);
	assert_int_equal(schema_compact_page(c, "ORDERS_01", 1, 100000, &out, &info), CN_OK);
	assert_int_equal(info.total, 5); /* orders_011 .. orders_019 odd */
	assert_int_equal(info.pages, 1);
	buf_reset(&out);
	assert_int_equal(schema_compact_page(c, "sales.customers_00", 1, 100000, &out, &info), CN_OK);
	assert_int_equal(info.total, 3); /* 002, 004, 008 (000 and 006 have no schema) */
	buf_reset(&out);
	assert_int_equal(schema_compact_page(c, "nothing", 1, 100000, &out, &info), CN_OK);
	assert_int_equal(info.total, 0);
	assert_int_equal(info.pages, 1);
	assert_int_equal(out.len, 0);
	assert_int_equal(schema_compact_page(c, NULL, 0, 100000, &out, &info), CN_ENOTFOUND);
	/* one entry larger than the budget still gets a page of its own */
	buf_reset(&out);
	assert_int_equal(schema_compact_page(c, NULL, 2, 10, &out, &info), CN_OK);
	assert_int_equal(info.count, 1);
	assert_int_equal(info.pages, 999);
	buf_free(&out);
	schema_compact_free(c);
	schema_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snapshot_round_trip),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_diff_large),
		cmocka_unit_test(test_drift),
		cmocka_unit_test(test_compact_index),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
