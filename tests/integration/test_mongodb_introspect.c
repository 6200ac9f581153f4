/*
 * test_mongodb_introspect.c - the MongoDB driver's schema, inferred from
 * samples of the fixture: nested documents, arrays, mixed types, presence,
 * views with their pipelines, indexes, $jsonSchema validators, row
 * estimates, the sample size option, a constant number of commands per
 * collection, and hidden fields known to the guard afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mongo_harness.h"
#include "schema_model.h"

static struct schema_model *introspect(void *h)
{
	struct schema_model *m = schema_model_new();
	struct cn_schema_builder b;
	schema_model_builder(m, &b);
	struct cn_error err = {0};
	if (h_env.api->introspect(h, &b, &err) != CN_OK)
		fail_msg("introspect: %s", err.message);
	return m;
}

static struct sm_table *table(struct schema_model *m, const char *name)
{
	struct sm_table *t = schema_model_find_table(m, "connector_test", name);
	if (!t)
		fail_msg("no table %s", name);
	return t;
}

static struct sm_column *column(struct sm_table *t, const char *name)
{
	struct sm_column *c = schema_model_find_column(t, name);
	if (!c)
		fail_msg("no column %s.%s", t->name, name);
	return c;
}

static int count_lines(const char *log, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(log, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void test_inferred_schema(void **state)
{
	(void)state;
	void *h = NULL;
	struct cn_error err = {0};
	assert_int_equal(h_open(h_env.dsn, 2, 5000, true, &h, &err, NULL), CN_OK);
	long off = h_log_size();
	struct schema_model *m = introspect(h);
	char *log = h_log_since(off);

	/* collections and the view; no system collection */
	for (size_t i = 0; i < m->ntables; i++)
		assert_true(strncmp(m->tables[i].name, "system.", 7) != 0);
	struct sm_table *orders = table(m, "orders");
	assert_int_equal(orders->kind, CN_OBJ_COLLECTION);
	assert_int_equal(orders->row_count, 60);
	assert_string_equal(column(orders, "_id")->type, "objectId");
	assert_int_equal(column(orders, "_id")->pk_position, 1);
	assert_false(column(orders, "_id")->nullable);
	assert_string_equal(column(orders, "total")->type, "decimal");
	assert_string_equal(column(orders, "items")->type, "array");
	assert_string_equal(column(orders, "items[]")->type, "object");
	assert_string_equal(column(orders, "items[].sku")->type, "string");
	assert_string_equal(column(orders, "items[].price")->type, "decimal");
	struct sm_column *notes = column(orders, "notes");
	assert_string_equal(notes->type, "string");
	assert_true(notes->nullable);
	assert_non_null(strstr(notes->description, "all 60 sampled documents"));
	assert_non_null(strstr(notes->description, "null in 20"));
	assert_false(column(orders, "status")->nullable);
	assert_int_equal(orders->nindexes, 3);
	bool found = false;
	for (size_t i = 0; i < orders->nindexes; i++)
		found = found || (!strcmp(orders->indexes[i].name, "customer_id_1") &&
				  !strcmp(orders->indexes[i].columns[0], "customer_id"));
	assert_true(found);

	/* mixed types and partial presence */
	struct sm_table *customers = table(m, "customers");
	struct sm_column *loyalty = column(customers, "loyalty");
	assert_true(!strcmp(loyalty->type, "string|int") || !strcmp(loyalty->type, "int|string"));
	assert_true(loyalty->nullable);
	assert_non_null(strstr(loyalty->description, "present in 70% of 20 sampled documents"));
	assert_string_equal(column(customers, "address.city")->type, "string");
	assert_string_equal(column(customers, "tags[]")->type, "string");
	bool unique = false;
	for (size_t i = 0; i < customers->nindexes; i++)
		unique = unique || (!strcmp(customers->indexes[i].name, "email_1") && customers->indexes[i].unique);
	assert_true(unique);

	/* the validator's types and required fields */
	struct sm_table *products = table(m, "products");
	struct sm_column *sku = column(products, "sku");
	assert_non_null(strstr(sku->description, "validator: bsonType string, required"));
	assert_false(sku->nullable);
	assert_non_null(strstr(column(products, "stock")->description, "validator: bsonType int"));
	assert_string_equal(column(products, "dimensions.w")->type, "double");

	/* every type the zoo holds */
	const char *zoo = column(table(m, "type_zoo"), "value")->type;
	static const char *const types[] = {"double", "string", "object", "array", "binData",
					    "objectId", "bool", "date", "regex", "int", "timestamp",
					    "long", "decimal", "minKey", "maxKey"};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (!strstr(zoo, types[i]))
			fail_msg("type_zoo.value's type '%s' lacks %s", zoo, types[i]);

	/* the view and its pipeline */
	struct sm_table *view = table(m, "big_orders");
	assert_int_equal(view->kind, CN_OBJ_VIEW);
	assert_int_equal(view->row_count, -1);
	assert_non_null(strstr(view->description, "view on orders; pipeline: [{\"$match\":{\"total\":{\"$gt\":100}}}]"));
	assert_string_equal(column(view, "total")->type, "decimal");

	/* a hidden collection is listed (the mappings hide it) but never sampled */
	struct sm_table *secrets = table(m, "secrets");
	assert_int_equal(secrets->ncolumns, 0);

	/* a constant number of commands per collection: one listCollections, then
	 * at most a sample, listIndexes and count each */
	int ncoll = (int)m->ntables;
	assert_int_equal(count_lines(log, "cmd=listCollections"), 1);
	assert_true(count_lines(log, "cmd=aggregate") <= ncoll);
	assert_true(count_lines(log, "cmd=listIndexes") <= ncoll);
	assert_true(count_lines(log, "cmd=count") <= ncoll);
	assert_int_equal(count_lines(log, "cmd=getMore"), 0);
	assert_int_equal(count_lines(log, "coll=secrets stages"), 0);
	free(log);

	/* what introspection learned reaches the guard */
	assert_int_equal(h_env.api->check(h, "{\"aggregate\": \"customers\", \"pipeline\": "
				     "[{\"$replaceWith\": \"$$ROOT\"}]}", &err), CN_EREJECTED);
	assert_int_equal(h_env.api->check(h, "{\"aggregate\": \"orders\", \"pipeline\": "
				     "[{\"$replaceWith\": \"$$ROOT\"}]}", &err), CN_OK);
	schema_model_free(m);
	h_env.api->close(h);
}

static void test_sample_size(void **state)
{
	(void)state;
	void *h = NULL;
	struct cn_error err = {0};
	assert_int_equal(h_open(h_env.dsn, 1, 5000, false, &h, &err, "sample_size", "5", NULL), CN_OK);
	struct schema_model *m = introspect(h);
	assert_non_null(strstr(column(table(m, "orders"), "status")->description, "all 5 sampled documents"));
	schema_model_free(m);
	h_env.api->close(h);
	/* 0: only the validator describes fields */
	assert_int_equal(h_open(h_env.dsn, 1, 5000, false, &h, &err, "sample_size", "0", NULL), CN_OK);
	m = introspect(h);
	assert_int_equal(table(m, "orders")->ncolumns, 0);
	struct sm_column *price = column(table(m, "products"), "price");
	assert_string_equal(price->type, "decimal");
	assert_non_null(strstr(price->description, "declared by the validator"));
	schema_model_free(m);
	h_env.api->close(h);
}

static void test_view_on_hidden_collection(void **state)
{
	(void)state;
	assert_true(h_command("connector_test", "{\"create\": \"secret_view\", \"viewOn\": \"secrets\", "
				"\"pipeline\": [{\"$project\": {\"kind\": 1, \"value\": 1}}]}", NULL));
	void *h = NULL;
	struct cn_error err = {0};
	assert_int_equal(h_open(h_env.dsn, 1, 5000, true, &h, &err, NULL), CN_OK);
	struct schema_model *m = introspect(h);
	assert_int_equal(table(m, "secret_view")->ncolumns, 0);
	assert_int_equal(h_env.api->check(h, "{\"find\": \"secret_view\"}", &err), CN_EREJECTED);
	assert_non_null(strstr(err.message, "hidden"));
	schema_model_free(m);
	h_env.api->close(h);
	assert_true(h_command("connector_test", "{\"drop\": \"secret_view\"}", NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inferred_schema),
		cmocka_unit_test(test_sample_size),
		cmocka_unit_test(test_view_on_hidden_collection),
	};
	return cmocka_run_group_tests(tests, h_setup, h_teardown);
}
