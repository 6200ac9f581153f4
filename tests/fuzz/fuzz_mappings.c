/*
 * fuzz_mappings.c - mapping files from arbitrary bytes: load, and when the
 * file loads, apply it to a small fixed model, ask is_hidden about every
 * object and render describe_schema's JSON. Everything is freed each run.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "mappings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct schema_model *model_build(void)
{
	struct schema_model *m = schema_model_new();
	struct cn_schema_builder b;
	const char *id[] = {"id"}, *cust[] = {"customer_id"}, *email[] = {"email"};
	int t;

	if (!m)
		return NULL;
	schema_model_builder(m, &b);
	t = b.table(b.ctx, "public", "customers", CN_OBJ_TABLE, "Customer accounts", 10);
	if (t >= 0) {
		(void)b.column(b.ctx, t, "id", "int", false, NULL, NULL, 1);
		(void)b.column(b.ctx, t, "email", "text", false, NULL, "login", 0);
		(void)b.index(b.ctx, t, "customers_email", true, 1, email);
	}
	t = b.table(b.ctx, "public", "orders", CN_OBJ_TABLE, NULL, -1);
	if (t >= 0) {
		(void)b.column(b.ctx, t, "id", "int", false, NULL, NULL, 1);
		(void)b.column(b.ctx, t, "customer_id", "int", true, NULL, NULL, 0);
		(void)b.foreign_key(b.ctx, t, "fk", 1, cust, NULL, "customers", id);
	}
	t = b.table(b.ctx, "archive", "customers", CN_OBJ_VIEW, NULL, 0);
	if (t >= 0)
		(void)b.column(b.ctx, t, "email", "text", true, "''", NULL, 0);
	t = b.table(b.ctx, NULL, "daily", CN_OBJ_COLLECTION, NULL, -1);
	if (t >= 0)
		(void)b.column(b.ctx, t, "n", NULL, true, NULL, NULL, 0);
	return m;
}

static void warn_ignore(void *ctx, const char *file, int line, const char *key, const char *msg)
{
	size_t *count = ctx;
	/* touch every argument so a dangling pointer shows up under ASan */
	if (file[0] && line > 0 && key[0] && msg[0])
		(*count)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mappings *mp = NULL;
	struct cn_error err = {0};
	struct schema_model *m;
	size_t warned = 0;

	if (mappings_load_buffer("fuzz.yaml", data, size, &mp, &err) != CN_OK) {
		if (mp || err.message[0] == '\0')
			abort(); /* an error always comes with a message and no result */
		return 0;
	}
	m = model_build();
	if (m) {
		size_t unmatched = mappings_apply(mp, m, warn_ignore, &warned);
		if (unmatched != warned || unmatched > mp->n)
			abort();
		for (size_t i = 0; i < m->ntables; i++) {
			const struct sm_table *t = &m->tables[i];
			int th = mappings_is_hidden(mp, t->schema, t->name, NULL);
			/* what apply hides, is_hidden reports (it may report more, never less) */
			if (t->hidden && !th)
				abort();
			for (size_t j = 0; j < t->ncolumns; j++)
				if ((t->hidden || t->columns[j].hidden) &&
				    !mappings_is_hidden(mp, t->schema, t->name, t->columns[j].name))
					abort();
		}
		const char *filter[] = {"customers", "public.orders"};
		cJSON_Delete(schema_model_to_json(m, NULL, 0));
		cJSON_Delete(schema_model_to_json(m, filter, 2));
		schema_model_free(m);
	}
	mappings_free(mp);
	return 0;
}
