/* test_schema_model.c - the schema model: builder, lookups, describe_schema JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_model.h"

/*
 * Allocation failure injection: the test binary replaces malloc & co (glibc
 * routes its own and every library's calls through them) to fail the k-th
 * allocation and to count live blocks. Sanitizers bring their own malloc,
 * so the hooks and the test that needs them are left out there.
 */
#if defined(__SANITIZE_ADDRESS__)
#define ALLOC_HOOKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ALLOC_HOOKS 0
#endif
#endif
#ifndef ALLOC_HOOKS
#define ALLOC_HOOKS 1
#endif

#if ALLOC_HOOKS
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);

/* exported even under -fvisibility=hidden, so that libc and cJSON call them too */
#define HOOK __attribute__((visibility("default")))

static long fail_countdown = -1; /* allocations to let through; -1: never fail */
static long live_blocks;

static bool alloc_fails(void)
{
	if (fail_countdown < 0)
		return false;
	if (fail_countdown-- == 0)
		return true;
	return false;
}

HOOK void *malloc(size_t size)
{
	if (alloc_fails())
		return NULL;
	void *p = __libc_malloc(size);
	if (p)
		live_blocks++;
	return p;
}

HOOK void *calloc(size_t n, size_t size)
{
	if (alloc_fails())
		return NULL;
	void *p = __libc_calloc(n, size);
	if (p)
		live_blocks++;
	return p;
}

HOOK void *realloc(void *old, size_t size)
{
	if (alloc_fails())
		return NULL;
	void *p = __libc_realloc(old, size);
	if (p && !old)
		live_blocks++;
	return p;
}

HOOK void free(void *p)
{
	if (p)
		live_blocks--;
	__libc_free(p);
}
#endif

/* ---- a sample model, built only through the builder ---- */

struct sample {
	int customers, regions, lines, audit;
};

/* Returns CN_OK or the first error; stops at nothing, so that a model with
 * some failed calls (out of memory) is still as complete as it can be. */
static int sample_build(struct schema_model *m, struct sample *s)
{
	struct cn_schema_builder b;
	int rc = CN_OK, r;
	const char *id[] = {"id"}, *region[] = {"region_id"}, *cust[] = {"customer_id"};
	const char *email[] = {"email"}, *name[] = {"name"};
#define KEEP(call)                                                                                           \
	do {                                                                                                 \
		r = (call);                                                                                  \
		if (r < 0 && rc == CN_OK)                                                                    \
			rc = r;                                                                              \
	} while (0)

	schema_model_builder(m, &b);
	s->customers = b.table(b.ctx, "public", "customers", CN_OBJ_TABLE, "Customer accounts", 120);
	KEEP(s->customers);
	if (s->customers >= 0) {
		KEEP(b.column(b.ctx, s->customers, "id", "INTEGER", false, NULL, NULL, 1));
		KEEP(b.column(b.ctx, s->customers, "email", "TEXT", false, NULL, "Login", 0));
		KEEP(b.column(b.ctx, s->customers, "name", "TEXT", true, "'anon'", NULL, 0));
		KEEP(b.column(b.ctx, s->customers, "region_id", NULL, true, NULL, NULL, 0));
		KEEP(b.foreign_key(b.ctx, s->customers, "fk_region", 1, region, NULL, "regions", id));
		KEEP(b.index(b.ctx, s->customers, "customers_email", true, 1, email));
		KEEP(b.index(b.ctx, s->customers, "customers_name", false, 1, name));
	}
	s->regions = b.table(b.ctx, "public", "regions", CN_OBJ_TABLE, NULL, -1);
	KEEP(s->regions);
	if (s->regions >= 0) {
		KEEP(b.column(b.ctx, s->regions, "id", "INTEGER", false, NULL, NULL, 1));
		KEEP(b.column(b.ctx, s->regions, "name", "TEXT", false, NULL, NULL, 0));
	}
	s->lines = b.table(b.ctx, "public", "order_lines", CN_OBJ_VIEW, NULL, 7);
	KEEP(s->lines);
	if (s->lines >= 0) {
		KEEP(b.column(b.ctx, s->lines, "order_id", "INTEGER", false, NULL, NULL, 2));
		KEEP(b.column(b.ctx, s->lines, "line_no", "INTEGER", false, NULL, NULL, 1));
		KEEP(b.column(b.ctx, s->lines, "customer_id", "INTEGER", true, NULL, NULL, 0));
		KEEP(b.foreign_key(b.ctx, s->lines, NULL, 1, cust, "public", "customers", id));
	}
	s->audit = b.table(b.ctx, "internal", "audit", CN_OBJ_MATVIEW, "Audit trail", 0);
	KEEP(s->audit);
	if (s->audit >= 0) {
		KEEP(b.column(b.ctx, s->audit, "id", "INTEGER", false, NULL, NULL, 1));
		KEEP(b.column(b.ctx, s->audit, "customer_id", "INTEGER", true, NULL, NULL, 0));
		KEEP(b.foreign_key(b.ctx, s->audit, "fk_cust", 1, cust, "public", "customers", id));
	}
#undef KEEP
	return rc;
}

/* ---- builder ---- */

static void test_builder_copies_everything(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	struct cn_schema_builder b;
	char tname[] = "people", cname[] = "nick", type[] = "VARCHAR(20)", def[] = "'x'";
	char comment[] = "who", fkcol[] = "boss", ixname[] = "people_nick";
	const char *fkcols[] = {fkcol}, *refcols[] = {"id"}, *ixcols[] = {cname};

	assert_non_null(m);
	schema_model_builder(m, &b);
	int t = b.table(b.ctx, NULL, tname, CN_OBJ_COLLECTION, comment, 3);
	assert_int_equal(t, 0);
	assert_int_equal(b.column(b.ctx, t, cname, type, true, def, comment, 0), CN_OK);
	assert_int_equal(b.foreign_key(b.ctx, t, NULL, 1, fkcols, NULL, tname, refcols), CN_OK);
	assert_int_equal(b.index(b.ctx, t, ixname, false, 1, ixcols), CN_OK);
	assert_int_equal(b.table(b.ctx, "s", "other", CN_OBJ_TABLE, NULL, -5), 1);
	/* the caller's buffers change; the model must not */
	memset(tname, 'z', sizeof tname - 1);
	memset(cname, 'z', sizeof cname - 1);
	memset(type, 'z', sizeof type - 1);
	memset(def, 'z', sizeof def - 1);
	memset(comment, 'z', sizeof comment - 1);
	memset(fkcol, 'z', sizeof fkcol - 1);
	memset(ixname, 'z', sizeof ixname - 1);

	assert_int_equal(m->ntables, 2);
	struct sm_table *tp = &m->tables[0];
	assert_null(tp->schema);
	assert_string_equal(tp->name, "people");
	assert_int_equal(tp->kind, CN_OBJ_COLLECTION);
	assert_string_equal(tp->description, "who");
	assert_int_equal(tp->row_count, 3);
	assert_false(tp->hidden);
	assert_int_equal(tp->ncolumns, 1);
	assert_string_equal(tp->columns[0].name, "nick");
	assert_string_equal(tp->columns[0].type, "VARCHAR(20)");
	assert_string_equal(tp->columns[0].default_expr, "'x'");
	assert_string_equal(tp->columns[0].description, "who");
	assert_true(tp->columns[0].nullable);
	assert_int_equal(tp->columns[0].pk_position, 0);
	assert_int_equal(tp->nfks, 1);
	assert_null(tp->fks[0].name);
	assert_null(tp->fks[0].ref_schema);
	assert_string_equal(tp->fks[0].ref_table, "people");
	assert_string_equal(tp->fks[0].columns[0], "boss");
	assert_string_equal(tp->fks[0].ref_columns[0], "id");
	assert_int_equal(tp->nindexes, 1);
	assert_string_equal(tp->indexes[0].name, "people_nick");
	assert_string_equal(tp->indexes[0].columns[0], "nick");
	assert_string_equal(m->tables[1].schema, "s");
	assert_int_equal(m->tables[1].row_count, -1);
	schema_model_free(m);
	schema_model_free(NULL);
}

static void test_builder_null_type_is_empty(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	struct cn_schema_builder b;
	schema_model_builder(m, &b);
	int t = b.table(b.ctx, NULL, "t", CN_OBJ_TABLE, NULL, -1);
	assert_int_equal(b.column(b.ctx, t, "c", NULL, true, NULL, NULL, 0), CN_OK);
	assert_string_equal(m->tables[0].columns[0].type, "");
	assert_null(m->tables[0].columns[0].default_expr);
	assert_null(m->tables[0].columns[0].description);
	schema_model_free(m);
}

enum call { CALL_TABLE, CALL_COLUMN, CALL_FK, CALL_INDEX };

struct bad_call {
	const char *what;
	enum call call;
	int table;
	const char *name;
	size_t ncols;
	const char *const *cols;
	const char *const *refcols;
	const char *ref_table;
	int kind_or_pk;
};

static const char *const one_col[] = {"id"};
static const char *const null_col[] = {NULL};

static const struct bad_call bad_calls[] = {
    {"table without name", CALL_TABLE, 0, NULL, 0, NULL, NULL, NULL, CN_OBJ_TABLE},
    {"table of unknown kind", CALL_TABLE, 0, "t", 0, NULL, NULL, NULL, 17},
    {"table of negative kind", CALL_TABLE, 0, "t", 0, NULL, NULL, NULL, -1},
    {"column of handle -1", CALL_COLUMN, -1, "c", 0, NULL, NULL, NULL, 0},
    {"column of unknown handle", CALL_COLUMN, 1, "c", 0, NULL, NULL, NULL, 0},
    {"column without name", CALL_COLUMN, 0, NULL, 0, NULL, NULL, NULL, 0},
    {"column with negative pk", CALL_COLUMN, 0, "c", 0, NULL, NULL, NULL, -1},
    {"fk of unknown handle", CALL_FK, 5, NULL, 1, one_col, one_col, "t", 0},
    {"fk with 0 columns", CALL_FK, 0, NULL, 0, one_col, one_col, "t", 0},
    {"fk without columns", CALL_FK, 0, NULL, 1, NULL, one_col, "t", 0},
    {"fk without ref columns", CALL_FK, 0, NULL, 1, one_col, NULL, "t", 0},
    {"fk with a NULL column", CALL_FK, 0, NULL, 1, null_col, one_col, "t", 0},
    {"fk with a NULL ref column", CALL_FK, 0, NULL, 1, one_col, null_col, "t", 0},
    {"fk without ref table", CALL_FK, 0, NULL, 1, one_col, one_col, NULL, 0},
    {"index of unknown handle", CALL_INDEX, -7, "ix", 1, one_col, NULL, NULL, 0},
    {"index without name", CALL_INDEX, 0, NULL, 1, one_col, NULL, NULL, 0},
    {"index with 0 columns", CALL_INDEX, 0, "ix", 0, one_col, NULL, NULL, 0},
    {"index without columns", CALL_INDEX, 0, "ix", 1, NULL, NULL, NULL, 0},
    {"index with a NULL column", CALL_INDEX, 0, "ix", 1, null_col, NULL, NULL, 0},
};

static void test_builder_rejects_bad_calls(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad_calls / sizeof bad_calls[0]; i++) {
		const struct bad_call *c = &bad_calls[i];
		struct schema_model *m = schema_model_new();
		struct cn_schema_builder b;
		int rc = CN_OK;

		schema_model_builder(m, &b);
		assert_int_equal(b.table(b.ctx, NULL, "t", CN_OBJ_TABLE, NULL, -1), 0);
		switch (c->call) {
		case CALL_TABLE:
			rc = b.table(b.ctx, NULL, c->name, (enum cn_object_kind)c->kind_or_pk, NULL, -1);
			break;
		case CALL_COLUMN:
			rc = b.column(b.ctx, c->table, c->name, "T", true, NULL, NULL, c->kind_or_pk);
			break;
		case CALL_FK:
			rc = b.foreign_key(b.ctx, c->table, c->name, c->ncols, c->cols, NULL, c->ref_table,
					   c->refcols);
			break;
		case CALL_INDEX: rc = b.index(b.ctx, c->table, c->name, false, c->ncols, c->cols); break;
		}
		if (rc != CN_EINVAL)
			fail_msg("%s: got %d, want CN_EINVAL", c->what, rc);
		/* nothing was added */
		assert_int_equal(m->ntables, 1);
		assert_int_equal(m->tables[0].ncolumns, 0);
		assert_int_equal(m->tables[0].nfks, 0);
		assert_int_equal(m->tables[0].nindexes, 0);
		schema_model_free(m);
	}
}

static void test_builder_grows(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	struct cn_schema_builder b;
	char name[32];

	schema_model_builder(m, &b);
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof name, "t%d", i);
		assert_int_equal(b.table(b.ctx, NULL, name, CN_OBJ_TABLE, NULL, i), i);
	}
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof name, "c%d", i);
		assert_int_equal(b.column(b.ctx, 150, name, "INT", false, NULL, NULL, 0), CN_OK);
		const char *cols[] = {name};
		assert_int_equal(b.index(b.ctx, 150, name, false, 1, cols), CN_OK);
		assert_int_equal(b.foreign_key(b.ctx, 150, NULL, 1, cols, NULL, "t0", cols), CN_OK);
	}
	assert_int_equal(m->ntables, 300);
	assert_string_equal(m->tables[299].name, "t299");
	assert_int_equal(m->tables[299].row_count, 299);
	assert_int_equal(m->tables[150].ncolumns, 300);
	assert_int_equal(m->tables[150].nindexes, 300);
	assert_int_equal(m->tables[150].nfks, 300);
	assert_string_equal(m->tables[150].columns[257].name, "c257");
	assert_string_equal(m->tables[150].indexes[299].name, "c299");
	assert_string_equal(m->tables[150].fks[128].columns[0], "c128");
	schema_model_free(m);
}

#if ALLOC_HOOKS
/* Every string the model holds is there; counts match the arrays. */
static void assert_consistent(const struct schema_model *m)
{
	for (size_t i = 0; i < m->ntables; i++) {
		const struct sm_table *t = &m->tables[i];
		assert_non_null(t->name);
		for (size_t j = 0; j < t->ncolumns; j++) {
			assert_non_null(t->columns[j].name);
			assert_non_null(t->columns[j].type);
		}
		for (size_t j = 0; j < t->nfks; j++)
			for (size_t k = 0; k < t->fks[j].ncols; k++)
				assert_true(t->fks[j].columns[k] && t->fks[j].ref_columns[k]);
		for (size_t j = 0; j < t->nindexes; j++)
			for (size_t k = 0; k < t->indexes[j].ncols; k++)
				assert_non_null(t->indexes[j].columns[k]);
	}
}

static void test_builder_out_of_memory(void **state)
{
	(void)state;
	size_t failures = 0;

	for (long k = 0;; k++) {
		long before = live_blocks;
		fail_countdown = k;
		struct schema_model *m = schema_model_new();
		struct sample s;
		int rc = m ? sample_build(m, &s) : CN_ENOMEM;
		if (m) {
			assert_true(rc == CN_OK || rc == CN_ENOMEM);
			assert_consistent(m);
			cJSON *j = schema_model_to_json(m, NULL, 0);
			cJSON_Delete(j);
		}
		bool injected = fail_countdown < 0;
		fail_countdown = -1;
		schema_model_free(m);
		assert_int_equal(live_blocks, before); /* nothing leaked */
		if (!injected)
			break;
		failures++;
	}
	assert_true(failures > 40); /* every allocation of the build was failed once */
}
#endif

/* ---- lookups ---- */

static void test_lookups(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	struct sample s;
	assert_int_equal(sample_build(m, &s), CN_OK);

	assert_ptr_equal(schema_model_find_table(m, NULL, "CUSTOMERS"), &m->tables[s.customers]);
	assert_ptr_equal(schema_model_find_table(m, "Public", "customers"), &m->tables[s.customers]);
	assert_null(schema_model_find_table(m, "internal", "customers"));
	assert_ptr_equal(schema_model_find_table(m, "INTERNAL", "Audit"), &m->tables[s.audit]);
	assert_null(schema_model_find_table(m, NULL, "nope"));
	struct sm_table *t = &m->tables[s.customers];
	assert_ptr_equal(schema_model_find_column(t, "Email"), &t->columns[1]);
	assert_null(schema_model_find_column(t, "mail"));
	assert_null(schema_model_find_column(NULL, "id"));

	assert_int_equal(schema_model_visible_tables(m), 4);
	m->tables[s.regions].hidden = true;
	assert_int_equal(schema_model_visible_tables(m), 3);
	schema_model_free(m);
}

/* ---- JSON ---- */

static const cJSON *table_named(const cJSON *root, const char *name)
{
	const cJSON *t;
	cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(root, "tables"))
	{
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(t, "name");
		if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
			return t;
	}
	return NULL;
}

static const cJSON *get(const cJSON *o, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* The array of strings equals want ("a,b,c"; "" for empty). */
static void assert_strings(const cJSON *arr, const char *want)
{
	char got[256] = "";
	const cJSON *it;
	assert_true(cJSON_IsArray(arr));
	cJSON_ArrayForEach(it, arr)
	{
		assert_true(cJSON_IsString(it));
		if (got[0])
			strcat(got, ",");
		strcat(got, it->valuestring);
	}
	assert_string_equal(got, want);
}

static void test_json_shape(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	struct sample s;
	assert_int_equal(sample_build(m, &s), CN_OK);
	cJSON *root = schema_model_to_json(m, NULL, 0);
	assert_non_null(root);
	/* what the tool sends: it must parse back */
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	root = cJSON_Parse(text);
	free(text);
	assert_non_null(root);
	assert_int_equal(cJSON_GetArraySize(get(root, "tables")), 4);

	const cJSON *c = table_named(root, "customers");
	assert_non_null(c);
	assert_string_equal(get(c, "schema")->valuestring, "public");
	assert_string_equal(get(c, "kind")->valuestring, "table");
	assert_string_equal(get(c, "description")->valuestring, "Customer accounts");
	assert_strings(get(c, "synonyms"), "");
	assert_int_equal((int)get(c, "row_count")->valuedouble, 120);
	assert_strings(get(c, "primary_key"), "id");
	const cJSON *cols = get(c, "columns");
	assert_int_equal(cJSON_GetArraySize(cols), 4);
	const cJSON *id = cJSON_GetArrayItem(cols, 0);
	assert_string_equal(get(id, "name")->valuestring, "id");
	assert_string_equal(get(id, "type")->valuestring, "INTEGER");
	assert_true(cJSON_IsFalse(get(id, "nullable")));
	assert_true(cJSON_IsTrue(get(id, "primary_key")));
	assert_null(get(id, "default"));
	assert_null(get(id, "description"));
	assert_null(get(id, "synonyms"));
	const cJSON *email = cJSON_GetArrayItem(cols, 1);
	assert_string_equal(get(email, "description")->valuestring, "Login");
	assert_null(get(email, "primary_key"));
	const cJSON *name = cJSON_GetArrayItem(cols, 2);
	assert_true(cJSON_IsTrue(get(name, "nullable")));
	assert_string_equal(get(name, "default")->valuestring, "'anon'");
	assert_string_equal(get(cJSON_GetArrayItem(cols, 3), "type")->valuestring, "");
	const cJSON *fk = cJSON_GetArrayItem(get(c, "foreign_keys"), 0);
	assert_strings(get(fk, "columns"), "region_id");
	assert_null(get(get(fk, "references"), "schema"));
	assert_string_equal(get(get(fk, "references"), "table")->valuestring, "regions");
	assert_strings(get(get(fk, "references"), "columns"), "id");
	assert_null(get(fk, "name"));
	const cJSON *ixs = get(c, "indexes");
	assert_int_equal(cJSON_GetArraySize(ixs), 2);
	assert_string_equal(get(cJSON_GetArrayItem(ixs, 0), "name")->valuestring, "customers_email");
	assert_true(cJSON_IsTrue(get(cJSON_GetArrayItem(ixs, 0), "unique")));
	assert_true(cJSON_IsFalse(get(cJSON_GetArrayItem(ixs, 1), "unique")));
	assert_strings(get(cJSON_GetArrayItem(ixs, 1), "columns"), "name");

	const cJSON *r = table_named(root, "regions");
	assert_null(get(r, "description"));
	assert_null(get(r, "row_count"));
	assert_int_equal(cJSON_GetArraySize(get(r, "foreign_keys")), 0);
	assert_int_equal(cJSON_GetArraySize(get(r, "indexes")), 0);

	const cJSON *l = table_named(root, "order_lines");
	assert_string_equal(get(l, "kind")->valuestring, "view");
	assert_strings(get(l, "primary_key"), "line_no,order_id"); /* by position */
	const cJSON *lfk = cJSON_GetArrayItem(get(l, "foreign_keys"), 0);
	assert_string_equal(get(get(lfk, "references"), "schema")->valuestring, "public");

	const cJSON *a = table_named(root, "audit");
	assert_string_equal(get(a, "kind")->valuestring, "materialized_view");
	assert_int_equal((int)get(a, "row_count")->valuedouble, 0);
	cJSON_Delete(root);
	schema_model_free(m);
}

static void test_json_kinds(void **state)
{
	(void)state;
	static const struct {
		enum cn_object_kind kind;
		const char *name;
	} kinds[] = {
	    {CN_OBJ_TABLE, "table"},
	    {CN_OBJ_VIEW, "view"},
	    {CN_OBJ_MATVIEW, "materialized_view"},
	    {CN_OBJ_COLLECTION, "collection"},
	};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		struct schema_model *m = schema_model_new();
		struct cn_schema_builder b;
		schema_model_builder(m, &b);
		assert_int_equal(b.table(b.ctx, NULL, "x", kinds[i].kind, NULL, -1), 0);
		cJSON *root = schema_model_to_json(m, NULL, 0);
		const cJSON *t = cJSON_GetArrayItem(get(root, "tables"), 0);
		assert_string_equal(get(t, "kind")->valuestring, kinds[i].name);
		assert_null(get(t, "schema"));
		cJSON_Delete(root);
		schema_model_free(m);
	}
}

static void test_json_hides(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	struct sample s;
	assert_int_equal(sample_build(m, &s), CN_OK);
	struct sm_table *cust = &m->tables[s.customers];
	m->tables[s.regions].hidden = true;			/* fk customers -> regions goes */
	schema_model_find_column(cust, "email")->hidden = true; /* customers_email index goes */
	schema_model_find_column(&m->tables[s.audit], "customer_id")->hidden = true;
	schema_model_find_column(&m->tables[s.lines], "line_no")->hidden = true;

	cJSON *root = schema_model_to_json(m, NULL, 0);
	assert_non_null(root);
	assert_int_equal(cJSON_GetArraySize(get(root, "tables")), 3);
	assert_null(table_named(root, "regions"));
	const cJSON *c = table_named(root, "customers");
	assert_int_equal(cJSON_GetArraySize(get(c, "columns")), 3);
	const cJSON *col;
	cJSON_ArrayForEach(col, get(c, "columns"))
	    assert_string_not_equal(get(col, "name")->valuestring, "email");
	assert_int_equal(cJSON_GetArraySize(get(c, "foreign_keys")), 0);
	assert_int_equal(cJSON_GetArraySize(get(c, "indexes")), 1);
	assert_string_equal(get(cJSON_GetArrayItem(get(c, "indexes"), 0), "name")->valuestring,
			    "customers_name");
	/* an FK whose own column is hidden goes */
	assert_int_equal(cJSON_GetArraySize(get(table_named(root, "audit"), "foreign_keys")), 0);
	/* a hidden primary key column is not named in primary_key */
	assert_strings(get(table_named(root, "order_lines"), "primary_key"), "order_id");
	cJSON_Delete(root);

	/* an FK that references a hidden column goes too */
	m->tables[s.regions].hidden = false;
	schema_model_find_column(&m->tables[s.regions], "id")->hidden = true;
	root = schema_model_to_json(m, NULL, 0);
	assert_int_equal(cJSON_GetArraySize(get(table_named(root, "customers"), "foreign_keys")), 0);
	assert_int_equal(cJSON_GetArraySize(get(table_named(root, "order_lines"), "foreign_keys")), 1);
	cJSON_Delete(root);
	schema_model_free(m);
}

struct filter_case {
	const char *filter[3];
	size_t n;
	const char *want; /* table names in order */
};

static const struct filter_case filter_cases[] = {
    {{"customers"}, 1, "customers"},
    {{"CUSTOMERS", "Audit"}, 2, "customers,audit"},
    {{"public.order_lines"}, 1, "order_lines"},
    {{"Internal.AUDIT", "public.regions"}, 2, "regions,audit"},
    {{"internal.customers"}, 1, ""},
    {{"public."}, 1, ""},
    {{".customers"}, 1, ""},
    {{"nope", NULL}, 2, ""},
    {{"publiccustomers"}, 1, ""},
    {{"hidden_one"}, 1, ""},
};

static void test_json_filter(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	struct sample s;
	struct cn_schema_builder b;
	assert_int_equal(sample_build(m, &s), CN_OK);
	schema_model_builder(m, &b);
	int h = b.table(b.ctx, NULL, "hidden_one", CN_OBJ_TABLE, NULL, -1);
	m->tables[h].hidden = true;

	for (size_t i = 0; i < sizeof filter_cases / sizeof filter_cases[0]; i++) {
		const struct filter_case *fc = &filter_cases[i];
		cJSON *root = schema_model_to_json(m, fc->filter, fc->n);
		char got[256] = "";
		const cJSON *t;
		assert_non_null(root);
		cJSON_ArrayForEach(t, get(root, "tables"))
		{
			if (got[0])
				strcat(got, ",");
			strcat(got, get(t, "name")->valuestring);
		}
		if (strcmp(got, fc->want) != 0)
			fail_msg("filter case %zu: got '%s', want '%s'", i, got, fc->want);
		cJSON_Delete(root);
	}
	schema_model_free(m);
}

static void test_json_empty_model(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	cJSON *root = schema_model_to_json(m, NULL, 0);
	char *text = cJSON_PrintUnformatted(root);
	assert_string_equal(text, "{\"tables\":[]}");
	free(text);
	cJSON_Delete(root);
	schema_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builder_copies_everything),
		cmocka_unit_test(test_builder_null_type_is_empty),
		cmocka_unit_test(test_builder_rejects_bad_calls),
		cmocka_unit_test(test_builder_grows),
#if ALLOC_HOOKS
		cmocka_unit_test(test_builder_out_of_memory),
#endif
		cmocka_unit_test(test_lookups),
		cmocka_unit_test(test_json_shape),
		cmocka_unit_test(test_json_kinds),
		cmocka_unit_test(test_json_hides),
		cmocka_unit_test(test_json_filter),
		cmocka_unit_test(test_json_empty_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
