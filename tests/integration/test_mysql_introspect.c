/*
 * test_mysql_introspect.c - the MySQL/MariaDB driver's introspection of the
 * fixture: tables and a view with comments, COLUMN_TYPE as the server
 * writes it, nullability, defaults, primary keys, foreign keys (one of two
 * columns), unique and plain indexes, row estimates, and the `databases`
 * option that adds a second database.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "my_harness.h"

#define DB "connector_test"

static const struct h_rec_table *must_find(const struct h_rec_schema *s, const char *schema,
					   const char *name)
{
	const struct h_rec_table *t = h_rec_find(s, schema, name);
	if (!t)
		fail_msg("%s.%s was not introspected", schema, name);
	return t;
}

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

static void test_tables(void **state)
{
	(void)state;
	struct h_rec_schema s;
	introspect(&s, NULL, NULL);
	static const struct {
		const char *name;
		enum cn_object_kind kind;
		const char *comment;
		int64_t rows;
	} want[] = {
		{"audit_log", CN_OBJ_TABLE, NULL, 1},
		{"customers", CN_OBJ_TABLE, "Customer accounts", 50},
		{"order_items", CN_OBJ_TABLE, NULL, 400},
		{"order_totals", CN_OBJ_VIEW, NULL, -1},
		{"orders", CN_OBJ_TABLE, "Orders placed in the web shop", 200},
		{"products", CN_OBJ_TABLE, NULL, 20},
		{"secrets", CN_OBJ_TABLE, NULL, 2},
		{"shipments", CN_OBJ_TABLE, NULL, 3},
		{"type_zoo", CN_OBJ_TABLE, "One column per type", 2},
	};
	assert_int_equal(s.n, (int)(sizeof want / sizeof want[0]));
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		const struct h_rec_table *t = must_find(&s, DB, want[i].name);
		assert_int_equal(t->kind, want[i].kind);
		if (want[i].comment)
			assert_string_equal(t->comment, want[i].comment);
		else
			assert_null(t->comment);
		/* InnoDB's estimate: exact for these small tables, analyzed by the fixture */
		assert_int_equal(t->rows, want[i].rows);
	}
	h_rec_free(&s);
}

static void test_columns(void **state)
{
	(void)state;
	struct h_rec_schema s;
	introspect(&s, NULL, NULL);
	assert_string_equal(must_find(&s, DB, "customers")->columns,
			    "id int(10) unsigned notnull - - 1;"
			    "email varchar(120) notnull - Login email address 0;"
			    "name varchar(100) notnull - - 0;"
			    "phone varchar(30) null - Mobile number 0;"
			    "country char(2) notnull 'DE' - 0;"
			    "created_at datetime notnull current_timestamp() - 0;");
	assert_string_equal(must_find(&s, DB, "orders")->columns,
			    "id bigint(20) notnull - - 1;"
			    "customer_id int(10) unsigned notnull - Who ordered 0;"
			    "status enum('new','paid','shipped') notnull 'new' new, paid or shipped 0;"
			    "total decimal(12,2) null - - 0;"
			    "placed_at datetime notnull - - 0;");
	assert_string_equal(must_find(&s, DB, "order_items")->columns,
			    "order_id bigint(20) notnull - - 1;line_no int(11) notnull - - 2;"
			    "product_id int(11) notnull - - 0;qty int(11) notnull 1 - 0;");
	assert_string_equal(must_find(&s, DB, "order_totals")->columns,
			    "order_id bigint(20) notnull 0 - 0;"
			    "email varchar(120) notnull - Login email address 0;"
			    "amount decimal(42,2) null - - 0;");
	h_rec_free(&s);
}

static void test_keys_and_indexes(void **state)
{
	(void)state;
	struct h_rec_schema s;
	introspect(&s, NULL, NULL);
	assert_string_equal(must_find(&s, DB, "orders")->fks,
			    "orders_customer_fk(customer_id)->connector_test.customers(id);");
	assert_string_equal(must_find(&s, DB, "order_items")->fks,
			    "order_items_order_fk(order_id)->connector_test.orders(id);"
			    "order_items_product_fk(product_id)->connector_test.products(id);");
	assert_string_equal(must_find(&s, DB, "shipments")->fks,
			    "shipments_item_fk(order_id,line_no)->"
			    "connector_test.order_items(order_id,line_no);");
	assert_null(must_find(&s, DB, "customers")->fks);
	assert_string_equal(must_find(&s, DB, "products")->indexes,
			    "products_name_idx index(name);products_sku_key unique(sku);");
	assert_string_equal(must_find(&s, DB, "customers")->indexes,
			    "customers_email_key unique(email);");
	assert_string_equal(must_find(&s, DB, "orders")->indexes,
			    "orders_customer_placed_idx index(customer_id,placed_at);");
	/* the index InnoDB adds for a foreign key is an index too */
	assert_string_equal(must_find(&s, DB, "order_items")->indexes,
			    "order_items_product_fk index(product_id);");
	assert_null(must_find(&s, DB, "order_totals")->indexes);
	h_rec_free(&s);
}

static void test_more_databases(void **state)
{
	(void)state;
	struct h_rec_schema s;
	introspect(&s, "databases", " connector_other , ");
	assert_int_equal(s.n, 10);
	const struct h_rec_table *t = must_find(&s, "connector_other", "notes");
	assert_string_equal(t->columns, "id int(11) notnull - - 1;body varchar(100) null - - 0;");
	h_rec_free(&s);

	/* a second database becomes readable for the guard, not a foreign one */
	void *h = NULL;
	struct cn_error err = {0};
	assert_int_equal(h_open(h_env.dsn, 1, 5000, false, &h, &err, NULL), CN_OK);
	assert_true(h_introspect_quietly(h, &err) > 0);
	assert_int_equal(h_env.api->check(h, "SELECT * FROM connector_other.notes", &err),
			 CN_EREJECTED);
	h_env.api->close(h);
	assert_int_equal(h_open(h_env.dsn, 1, 5000, false, &h, &err, "databases", "connector_other",
				NULL), CN_OK);
	assert_true(h_introspect_quietly(h, &err) > 0);
	assert_int_equal(h_env.api->check(h, "SELECT * FROM connector_other.notes", &err), CN_OK);
	struct h_result r;
	assert_int_equal(h_exec(h, "SELECT body FROM connector_other.notes", NULL, 0, 5000, 0, &r,
				&err), CN_OK);
	assert_string_equal(h_cell(&r, 0, 0), "T:another database");
	h_result_free(&r);
	h_env.api->close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_columns),
		cmocka_unit_test(test_keys_and_indexes),
		cmocka_unit_test(test_more_databases),
	};
	return cmocka_run_group_tests(tests, h_setup, h_teardown);
}
