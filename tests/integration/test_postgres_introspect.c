/*
 * test_postgres_introspect.c - the PostgreSQL driver's introspection of the
 * fixture schema: two schemas with foreign keys across them, comments, a
 * view, a materialized view, a partitioned table (not its partitions), a
 * foreign table, unique constraints and indexes (one on an expression), row
 * estimates, column privileges, and the schemas/exclude_schemas options.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_harness.h"

static const struct h_rec_table *must_find(const struct h_rec_schema *s, const char *schema,
					 const char *name)
{
	const struct h_rec_table *t = h_rec_find(s, schema, name);
	if (!t)
		fail_msg("%s.%s was not introspected", schema, name);
	return t;
}

/* Introspect a new source opened with the given options (key, value, ..., NULL). */
static void introspect(struct h_rec_schema *s, const char *k1, const char *v1)
{
	void *h = NULL;
	struct cn_error err = {0};
	if (h_open(h_env.dsn, 1, 5000, false, &h, &err, k1, v1, NULL) != CN_OK)
		fail_msg("open: %s", err.message);
	if (h_introspect_record(h, s, &err) != CN_OK)
		fail_msg("introspect: %s", err.message);
	h_env.api->close(h);
}

static void test_relations(void **state)
{
	(void)state;
	struct h_rec_schema s;
	introspect(&s, NULL, NULL);
	static const struct {
		const char *schema, *name;
		enum cn_object_kind kind;
		const char *comment;
	} want[] = {
		{"audit", "log", CN_OBJ_TABLE, NULL},
		{"crm", "customers", CN_OBJ_TABLE, "Customer accounts"},
		{"public", "partial_grant", CN_OBJ_TABLE, NULL},
		{"public", "secrets", CN_OBJ_TABLE, NULL},
		{"public", "type_samples", CN_OBJ_TABLE, NULL},
		{"shop", "daily_sales", CN_OBJ_MATVIEW, "Revenue per day"},
		{"shop", "events", CN_OBJ_TABLE, NULL},
		{"shop", "order_items", CN_OBJ_TABLE, NULL},
		{"shop", "order_totals", CN_OBJ_VIEW, "Order amounts by customer"},
		{"shop", "orders", CN_OBJ_TABLE, "Orders placed in the web shop"},
		{"shop", "products", CN_OBJ_TABLE, NULL},
		{"shop", "shipments", CN_OBJ_TABLE, NULL},
		{"shop", "supplier_feed", CN_OBJ_TABLE, NULL},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		const struct h_rec_table *t = must_find(&s, want[i].schema, want[i].name);
		assert_int_equal(t->kind, want[i].kind);
		if (want[i].comment)
			assert_string_equal(t->comment, want[i].comment);
		else
			assert_null(t->comment);
	}
	/* partitions are not tables of their own; nothing the role cannot read */
	assert_null(h_rec_find(&s, "shop", "events_2024"));
	assert_null(h_rec_find(&s, "shop", "events_2025"));
	assert_null(h_rec_find(&s, "public", "no_grant"));
	assert_int_equal(s.n, (int)(sizeof want / sizeof want[0]));
	/* analyzed: the estimate; never analyzed: -1; views: -1 */
	assert_int_equal(must_find(&s, "crm", "customers")->rows, 3);
	assert_int_equal(must_find(&s, "shop", "orders")->rows, -1);
	assert_int_equal(must_find(&s, "shop", "order_totals")->rows, -1);
	h_rec_free(&s);
}

static void test_columns(void **state)
{
	(void)state;
	struct h_rec_schema s;
	introspect(&s, NULL, NULL);
	assert_string_equal(must_find(&s, "crm", "customers")->columns,
			    "id integer notnull nextval('crm.customers_id_seq'::regclass) - 1;"
			    "email text notnull - Login email address 0;"
			    "name text notnull - - 0;"
			    "country character(2) null 'DE'::bpchar - 0;"
			    "created_at timestamp with time zone notnull now() - 0;");
	assert_string_equal(must_find(&s, "shop", "orders")->columns,
			    "id bigint notnull GENERATED ALWAYS AS IDENTITY - 1;"
			    "customer_id integer notnull - - 0;"
			    "status text notnull 'new'::text new, paid or shipped 0;"
			    "total numeric(12,2) null - - 0;"
			    "placed_at timestamp without time zone notnull - - 0;");
	assert_string_equal(must_find(&s, "shop", "order_items")->columns,
			    "order_id bigint notnull - - 1;line_no integer notnull - - 2;"
			    "product_id integer notnull - - 0;qty integer notnull 1 - 0;");
	assert_string_equal(must_find(&s, "shop", "order_totals")->columns,
			    "order_id bigint null - - 0;email text null - - 0;amount numeric null - - 0;");
	assert_string_equal(must_find(&s, "shop", "products")->columns,
			    "id integer notnull - - 1;sku character varying(20) notnull - - 0;"
			    "name text notnull - - 0;price numeric(10,2) notnull - - 0;"
			    "tags text[] null - - 0;attrs jsonb null - - 0;");
	/* only the columns the role may select */
	assert_string_equal(must_find(&s, "public", "partial_grant")->columns,
			    "id integer notnull - - 1;visible text null - - 0;");
	h_rec_free(&s);
}

static void test_keys_and_indexes(void **state)
{
	(void)state;
	struct h_rec_schema s;
	introspect(&s, NULL, NULL);
	assert_string_equal(must_find(&s, "shop", "orders")->fks,
			    "orders_customer_id_fkey(customer_id)->crm.customers(id);");
	assert_string_equal(must_find(&s, "shop", "order_items")->fks,
			    "order_items_order_id_fkey(order_id)->shop.orders(id);"
			    "order_items_product_fk(product_id)->shop.products(id);");
	assert_string_equal(must_find(&s, "shop", "shipments")->fks,
			    "shipments_item_fk(order_id,line_no)->shop.order_items(order_id,line_no);");
	assert_null(must_find(&s, "crm", "customers")->fks);
	assert_string_equal(must_find(&s, "shop", "products")->indexes,
			    "products_lower_name_idx index(lower(name));"
			    "products_pkey unique(id);products_sku_key unique(sku);");
	assert_string_equal(must_find(&s, "crm", "customers")->indexes,
			    "customers_email_key unique(email);customers_pkey unique(id);");
	assert_string_equal(must_find(&s, "shop", "orders")->indexes,
			    "orders_customer_placed_idx index(customer_id,placed_at);"
			    "orders_pkey unique(id);");
	assert_string_equal(must_find(&s, "shop", "events")->indexes,
			    "events_id_at_key unique(id,at);");
	assert_null(must_find(&s, "shop", "order_totals")->indexes);
	h_rec_free(&s);
}

static void test_partitioned_estimate(void **state)
{
	(void)state;
	PGconn *su = h_super();
	assert_non_null(su);
	PGresult *res = PQexec(su, "ANALYZE shop.events");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	PQfinish(su);
	struct h_rec_schema s;
	introspect(&s, NULL, NULL);
	assert_int_equal(must_find(&s, "shop", "events")->rows, 3);
	h_rec_free(&s);
}

static void test_schema_options(void **state)
{
	(void)state;
	struct h_rec_schema s;
	introspect(&s, "schemas", "shop");
	assert_int_equal(s.n, 8);
	for (int i = 0; i < s.n; i++)
		assert_string_equal(s.tables[i].schema, "shop");
	/* the cross-schema foreign key still names its target */
	assert_string_equal(must_find(&s, "shop", "orders")->fks,
			    "orders_customer_id_fkey(customer_id)->crm.customers(id);");
	h_rec_free(&s);

	introspect(&s, "schemas", " s*p , crm");
	assert_int_equal(s.n, 9);
	assert_non_null(h_rec_find(&s, "crm", "customers"));
	h_rec_free(&s);

	introspect(&s, "exclude_schemas", "audit,pub*");
	assert_int_equal(s.n, 9);
	assert_null(h_rec_find(&s, "audit", "log"));
	assert_null(h_rec_find(&s, "public", "secrets"));
	h_rec_free(&s);

	/* LIKE's own wildcards are literal in patterns */
	introspect(&s, "schemas", "sh_p,%");
	assert_int_equal(s.n, 0);
	h_rec_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relations),
		cmocka_unit_test(test_columns),
		cmocka_unit_test(test_keys_and_indexes),
		cmocka_unit_test(test_partitioned_estimate),
		cmocka_unit_test(test_schema_options),
	};
	return cmocka_run_group_tests(tests, h_setup, h_teardown);
}
