/*
 * schema_diff.c - snapshots (a model's structure as JSON), diffs between two
 * models, and drift.
 *
 * Diffing sorts both models' tables by (schema, name) into index arrays and
 * merges them, so two 5,000-table models compare in O(n log n); columns,
 * keys and indexes of a table pair are compared with a nested scan (a table
 * has tens of columns, at most a few thousand).
 */
#include "schema_diff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNAPSHOT_FORMAT "interactor-connector schema snapshot"

/* ---- snapshots ---------------------------------------------------------- */

static bool add_strv(cJSON *o, const char *key, char *const *v, size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(o, key);
	for (size_t i = 0; arr && i < n; i++) {
		cJSON *s = cJSON_CreateString(v[i]);
		if (!s)
			return false;
		cJSON_AddItemToArray(arr, s);
	}
	return arr != NULL;
}

static bool encode_table(cJSON *arr, const struct sm_table *t)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return false;
	cJSON_AddItemToArray(arr, o);
	if ((t->schema && !cJSON_AddStringToObject(o, "schema", t->schema)) ||
	    !cJSON_AddStringToObject(o, "name", t->name) ||
	    !cJSON_AddStringToObject(o, "kind", schema_kind_name(t->kind)))
		return false;
	cJSON *cols = cJSON_AddArrayToObject(o, "columns");
	for (size_t i = 0; cols && i < t->ncolumns; i++) {
		const struct sm_column *c = &t->columns[i];
		cJSON *co = cJSON_CreateObject();
		if (!co)
			return false;
		cJSON_AddItemToArray(cols, co);
		if (!cJSON_AddStringToObject(co, "name", c->name) ||
		    !cJSON_AddStringToObject(co, "type", c->type ? c->type : "") ||
		    !cJSON_AddBoolToObject(co, "nullable", c->nullable) ||
		    (c->pk_position > 0 && !cJSON_AddNumberToObject(co, "pk", c->pk_position)))
			return false;
	}
	cJSON *fks = cols ? cJSON_AddArrayToObject(o, "foreign_keys") : NULL;
	for (size_t i = 0; fks && i < t->nfks; i++) {
		const struct sm_foreign_key *fk = &t->fks[i];
		cJSON *fo = cJSON_CreateObject();
		if (!fo)
			return false;
		cJSON_AddItemToArray(fks, fo);
		if ((fk->name && !cJSON_AddStringToObject(fo, "name", fk->name)) ||
		    !add_strv(fo, "columns", fk->columns, fk->ncols) ||
		    (fk->ref_schema && !cJSON_AddStringToObject(fo, "ref_schema", fk->ref_schema)) ||
		    !cJSON_AddStringToObject(fo, "ref_table", fk->ref_table) ||
		    !add_strv(fo, "ref_columns", fk->ref_columns, fk->ncols))
			return false;
	}
	cJSON *ixs = fks ? cJSON_AddArrayToObject(o, "indexes") : NULL;
	for (size_t i = 0; ixs && i < t->nindexes; i++) {
		const struct sm_index *ix = &t->indexes[i];
		cJSON *io = cJSON_CreateObject();
		if (!io)
			return false;
		cJSON_AddItemToArray(ixs, io);
		if (!cJSON_AddStringToObject(io, "name", ix->name) ||
		    !cJSON_AddBoolToObject(io, "unique", ix->unique) ||
		    !add_strv(io, "columns", ix->columns, ix->ncols))
			return false;
	}
	return ixs != NULL;
}

char *schema_snapshot_encode(const struct schema_model *m)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *tables = NULL;
	char *text = NULL;
	if (root && cJSON_AddStringToObject(root, "format", SNAPSHOT_FORMAT) &&
	    cJSON_AddNumberToObject(root, "version", SCHEMA_SNAPSHOT_VERSION))
		tables = cJSON_AddArrayToObject(root, "tables");
	bool ok = tables != NULL;
	for (size_t i = 0; ok && m && i < m->ntables; i++)
		ok = encode_table(tables, &m->tables[i]);
	if (ok)
		text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return text;
}

static const char *str_of(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A JSON array of strings into v (pointers into the tree), at most max. */
static int strv_of(const cJSON *o, const char *key, const char **v, size_t max, size_t *n)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, key), *it;
	*n = 0;
	if (!cJSON_IsArray(arr))
		return CN_EINVAL;
	cJSON_ArrayForEach(it, arr) {
		if (!cJSON_IsString(it) || *n == max)
			return CN_EINVAL;
		v[(*n)++] = it->valuestring;
	}
	return CN_OK;
}

static int kind_of(const char *name, enum cn_object_kind *kind)
{
	static const enum cn_object_kind kinds[] = {CN_OBJ_TABLE, CN_OBJ_VIEW, CN_OBJ_MATVIEW,
						    CN_OBJ_COLLECTION};
	for (size_t i = 0; name && i < sizeof kinds / sizeof kinds[0]; i++) {
		if (strcmp(name, schema_kind_name(kinds[i])) == 0) {
			*kind = kinds[i];
			return CN_OK;
		}
	}
	return CN_EINVAL;
}

#define SNAPSHOT_MAX_KEY_COLUMNS 64

static int decode_table(const cJSON *to, const struct cn_schema_builder *b)
{
	enum cn_object_kind kind;
	const char *name = str_of(to, "name");
	if (!name || kind_of(str_of(to, "kind"), &kind))
		return CN_EINVAL;
	int t = b->table(b->ctx, str_of(to, "schema"), name, kind, NULL, -1);
	if (t < 0)
		return t;
	const cJSON *it;
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(to, "columns")) {
		const cJSON *nullable = cJSON_GetObjectItemCaseSensitive(it, "nullable");
		const cJSON *pk = cJSON_GetObjectItemCaseSensitive(it, "pk");
		int pos = cJSON_IsNumber(pk) && pk->valuedouble >= 1 && pk->valuedouble <= 100000
			      ? pk->valueint
			      : 0;
		int rc = b->column(b->ctx, t, str_of(it, "name"), str_of(it, "type"), cJSON_IsTrue(nullable),
				   NULL, NULL, pos);
		if (rc)
			return rc;
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(to, "foreign_keys")) {
		const char *cols[SNAPSHOT_MAX_KEY_COLUMNS], *refs[SNAPSHOT_MAX_KEY_COLUMNS];
		size_t nc, nr;
		if (strv_of(it, "columns", cols, SNAPSHOT_MAX_KEY_COLUMNS, &nc) ||
		    strv_of(it, "ref_columns", refs, SNAPSHOT_MAX_KEY_COLUMNS, &nr) || nc != nr)
			return CN_EINVAL;
		int rc = b->foreign_key(b->ctx, t, str_of(it, "name"), nc, cols, str_of(it, "ref_schema"),
					str_of(it, "ref_table"), refs);
		if (rc)
			return rc;
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(to, "indexes")) {
		const char *cols[SNAPSHOT_MAX_KEY_COLUMNS];
		size_t nc;
		if (strv_of(it, "columns", cols, SNAPSHOT_MAX_KEY_COLUMNS, &nc))
			return CN_EINVAL;
		int rc = b->index(b->ctx, t, str_of(it, "name"),
				  cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "unique")), nc, cols);
		if (rc)
			return rc;
	}
	return CN_OK;
}

int schema_snapshot_decode(const char *text, size_t len, struct schema_model **out, struct cn_error *err)
{
	*out = NULL;
	cJSON *root = cJSON_ParseWithLength(text, len);
	const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
	const cJSON *tables = cJSON_GetObjectItemCaseSensitive(root, "tables");
	const char *format = str_of(root, "format");
	int rc = CN_OK;
	if (!root || !format || strcmp(format, SNAPSHOT_FORMAT) != 0 || !cJSON_IsArray(tables)) {
		rc = cn_error_set(err, CN_EINVAL, "the stored schema snapshot is not one");
		goto out;
	}
	if (!cJSON_IsNumber(version) || version->valueint != SCHEMA_SNAPSHOT_VERSION) {
		rc = cn_error_set(err, CN_EINVAL, "the stored schema snapshot has version %d; this connector "
				  "reads version %d", cJSON_IsNumber(version) ? version->valueint : 0,
				  SCHEMA_SNAPSHOT_VERSION);
		goto out;
	}
	struct schema_model *m = schema_model_new();
	if (!m) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	struct cn_schema_builder b;
	schema_model_builder(m, &b);
	const cJSON *t;
	cJSON_ArrayForEach(t, tables) {
		if ((rc = decode_table(t, &b)) != CN_OK)
			break;
	}
	if (rc) {
		schema_model_free(m);
		rc = rc == CN_ENOMEM
			 ? cn_error_set(err, rc, "out of memory")
			 : cn_error_set(err, CN_EINVAL, "the stored schema snapshot is malformed");
		goto out;
	}
	*out = m;
out:
	cJSON_Delete(root);
	return rc;
}

/* ---- diffs -------------------------------------------------------------- */

static int table_cmp(const struct sm_table *a, const struct sm_table *b)
{
	int c = strcmp(a->schema ? a->schema : "", b->schema ? b->schema : "");
	return c ? c : strcmp(a->name, b->name);
}

/* Equal names keep their order in the model, so duplicates pair up in order. */
static int table_ptr_cmp(const void *a, const void *b)
{
	const struct sm_table *x = *(const struct sm_table *const *)a,
			      *y = *(const struct sm_table *const *)b;
	int c = table_cmp(x, y);
	return c ? c : (x > y) - (x < y);
}

/* The tables of m sorted by (schema, name); *n gets the count. */
static const struct sm_table **sorted_tables(const struct schema_model *m, size_t *n)
{
	*n = m ? m->ntables : 0;
	const struct sm_table **v = calloc(*n ? *n : 1, sizeof *v);
	if (!v)
		return NULL;
	for (size_t i = 0; i < *n; i++)
		v[i] = &m->tables[i];
	qsort(v, *n, sizeof *v, table_ptr_cmp);
	return v;
}

struct differ {
	struct schema_diff *d;
	size_t cap;
	bool failed;
};

static char *qualified(const struct sm_table *t)
{
	size_t n = (t->schema ? strlen(t->schema) + 1 : 0) + strlen(t->name) + 1;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s%s%s", t->schema ? t->schema : "", t->schema ? "." : "", t->name);
	return s;
}

static char *dup_or_null(const char *s, bool *ok)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*ok = false;
	return d;
}

static void change_clear(struct schema_change *c)
{
	free(c->table);
	free(c->object);
	free(c->before);
	free(c->after);
}

static void emit(struct differ *df, enum schema_change_kind kind, const struct sm_table *t,
		 const char *object, const char *before, const char *after)
{
	if (df->failed)
		return;
	struct schema_diff *d = df->d;
	if (d->n == df->cap) {
		size_t cap = df->cap ? df->cap * 2 : 16;
		struct schema_change *p = realloc(d->items, cap * sizeof *p);
		if (!p) {
			df->failed = true;
			return;
		}
		d->items = p;
		df->cap = cap;
	}
	bool ok = true;
	struct schema_change c = {.kind = kind, .table = qualified(t)};
	c.object = dup_or_null(object, &ok);
	c.before = dup_or_null(before, &ok);
	c.after = dup_or_null(after, &ok);
	if (!ok || !c.table) {
		change_clear(&c);
		df->failed = true;
		return;
	}
	d->items[d->n++] = c;
}

/* The nth (0-based) column of t named name. Databases do not repeat a
 * column name, but a snapshot read back could: the nth pairs with the nth. */
static const struct sm_column *column_nth(const struct sm_table *t, const char *name, size_t nth)
{
	for (size_t i = 0; i < t->ncolumns; i++)
		if (strcmp(t->columns[i].name, name) == 0 && nth-- == 0)
			return &t->columns[i];
	return NULL;
}

static const struct sm_column *column_named(const struct sm_table *t, const char *name)
{
	return column_nth(t, name, 0);
}

/* How many columns before t->columns[i] have its name. */
static size_t column_rank(const struct sm_table *t, size_t i)
{
	size_t k = 0;
	for (size_t j = 0; j < i; j++)
		k += strcmp(t->columns[j].name, t->columns[i].name) == 0;
	return k;
}

/* "a, b" into out. */
static void join(char *const *v, size_t n, char *out, size_t len)
{
	size_t used = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++) {
		int w = snprintf(out + used, len - used, "%s%s", i ? ", " : "", v[i]);
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

/* The primary key's columns in key order: "a, b", "" for none. */
static void pk_text(const struct sm_table *t, char *out, size_t len)
{
	size_t used = 0;
	int next = 0;
	out[0] = '\0';
	for (;;) {
		const struct sm_column *best = NULL;
		for (size_t i = 0; i < t->ncolumns; i++) {
			const struct sm_column *c = &t->columns[i];
			if (c->pk_position > next && (!best || c->pk_position < best->pk_position))
				best = c;
		}
		if (!best || used >= len)
			return;
		int w = snprintf(out + used, len - used, "%s%s", used ? ", " : "", best->name);
		if (w < 0)
			return;
		used += (size_t)w;
		next = best->pk_position;
	}
}

/* "(a, b) -> s.t (x, y)": how a foreign key is told apart from another. */
static void fk_text(const struct sm_foreign_key *fk, char *out, size_t len)
{
	char cols[512], refs[512];
	join(fk->columns, fk->ncols, cols, sizeof cols);
	join(fk->ref_columns, fk->ncols, refs, sizeof refs);
	snprintf(out, len, "(%s) -> %s%s%s (%s)", cols, fk->ref_schema ? fk->ref_schema : "",
		 fk->ref_schema ? "." : "", fk->ref_table, refs);
}

static void index_text(const struct sm_index *ix, char *out, size_t len)
{
	char cols[512];
	join(ix->columns, ix->ncols, cols, sizeof cols);
	snprintf(out, len, "%s(%s)", ix->unique ? "unique " : "", cols);
}

static void diff_fks(struct differ *df, const struct sm_table *a, const struct sm_table *b)
{
	char x[1100], y[1100];
	for (size_t i = 0; i < a->nfks; i++) {
		fk_text(&a->fks[i], x, sizeof x);
		bool found = false;
		for (size_t j = 0; j < b->nfks && !found; j++) {
			fk_text(&b->fks[j], y, sizeof y);
			found = strcmp(x, y) == 0;
		}
		if (!found)
			emit(df, CHANGE_FOREIGN_KEY_REMOVED, a, x, NULL, NULL);
	}
	for (size_t j = 0; j < b->nfks; j++) {
		fk_text(&b->fks[j], y, sizeof y);
		bool found = false;
		for (size_t i = 0; i < a->nfks && !found; i++) {
			fk_text(&a->fks[i], x, sizeof x);
			found = strcmp(x, y) == 0;
		}
		if (!found)
			emit(df, CHANGE_FOREIGN_KEY_ADDED, b, y, NULL, NULL);
	}
}

static const struct sm_index *index_nth(const struct sm_table *t, const char *name, size_t nth)
{
	for (size_t i = 0; i < t->nindexes; i++)
		if (strcmp(t->indexes[i].name, name) == 0 && nth-- == 0)
			return &t->indexes[i];
	return NULL;
}

static size_t index_rank(const struct sm_table *t, size_t i)
{
	size_t k = 0;
	for (size_t j = 0; j < i; j++)
		k += strcmp(t->indexes[j].name, t->indexes[i].name) == 0;
	return k;
}

static void diff_indexes(struct differ *df, const struct sm_table *a, const struct sm_table *b)
{
	char x[600], y[600];
	for (size_t i = 0; i < a->nindexes; i++) {
		const struct sm_index *ia = &a->indexes[i], *ib = index_nth(b, ia->name, index_rank(a, i));
		index_text(ia, x, sizeof x);
		if (!ib) {
			emit(df, CHANGE_INDEX_REMOVED, a, ia->name, x, NULL);
			continue;
		}
		index_text(ib, y, sizeof y);
		if (strcmp(x, y) != 0)
			emit(df, CHANGE_INDEX_CHANGED, b, ia->name, x, y);
	}
	for (size_t j = 0; j < b->nindexes; j++) {
		if (!index_nth(a, b->indexes[j].name, index_rank(b, j))) {
			index_text(&b->indexes[j], y, sizeof y);
			emit(df, CHANGE_INDEX_ADDED, b, b->indexes[j].name, NULL, y);
		}
	}
}

static void diff_table(struct differ *df, const struct sm_table *a, const struct sm_table *b)
{
	if (a->kind != b->kind)
		emit(df, CHANGE_TABLE_KIND, b, NULL, schema_kind_name(a->kind), schema_kind_name(b->kind));
	for (size_t i = 0; i < a->ncolumns; i++) {
		const struct sm_column *ca = &a->columns[i], *cb = column_nth(b, ca->name, column_rank(a, i));
		if (!cb) {
			emit(df, CHANGE_COLUMN_REMOVED, a, ca->name, ca->type, NULL);
			continue;
		}
		if (strcmp(ca->type ? ca->type : "", cb->type ? cb->type : "") != 0)
			emit(df, CHANGE_COLUMN_TYPE, b, cb->name, ca->type, cb->type);
		if (ca->nullable != cb->nullable)
			emit(df, CHANGE_COLUMN_NULLABLE, b, cb->name, ca->nullable ? "null" : "not null",
			     cb->nullable ? "null" : "not null");
	}
	for (size_t j = 0; j < b->ncolumns; j++)
		if (!column_nth(a, b->columns[j].name, column_rank(b, j)))
			emit(df, CHANGE_COLUMN_ADDED, b, b->columns[j].name, NULL, b->columns[j].type);
	char pa[512], pb[512];
	pk_text(a, pa, sizeof pa);
	pk_text(b, pb, sizeof pb);
	if (strcmp(pa, pb) != 0)
		emit(df, CHANGE_PRIMARY_KEY, b, NULL, *pa ? pa : NULL, *pb ? pb : NULL);
	diff_fks(df, a, b);
	diff_indexes(df, a, b);
}

struct schema_diff *schema_diff_compute(const struct schema_model *old, const struct schema_model *new)
{
	struct differ df = {.d = calloc(1, sizeof(struct schema_diff))};
	size_t na, nb;
	const struct sm_table **a = sorted_tables(old, &na), **b = sorted_tables(new, &nb);
	if (!df.d || !a || !b) {
		df.failed = true;
		goto out;
	}
	size_t i = 0, j = 0;
	while (i < na || j < nb) {
		int c = i == na ? 1 : j == nb ? -1 : table_cmp(a[i], b[j]);
		if (c < 0) {
			emit(&df, CHANGE_TABLE_REMOVED, a[i], NULL, schema_kind_name(a[i]->kind), NULL);
			i++;
		} else if (c > 0) {
			emit(&df, CHANGE_TABLE_ADDED, b[j], NULL, NULL, schema_kind_name(b[j]->kind));
			j++;
		} else {
			diff_table(&df, a[i++], b[j++]);
		}
	}
out:
	free(a);
	free(b);
	if (df.failed) {
		schema_diff_free(df.d);
		return NULL;
	}
	return df.d;
}

void schema_diff_free(struct schema_diff *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		change_clear(&d->items[i]);
	free(d->items);
	free(d);
}

static const struct {
	const char *name;
	const char *object_key; /* the JSON key of `object` */
} change_names[] = {
	[CHANGE_TABLE_ADDED] = {"table_added", NULL},
	[CHANGE_TABLE_REMOVED] = {"table_removed", NULL},
	[CHANGE_TABLE_KIND] = {"table_kind_changed", NULL},
	[CHANGE_COLUMN_ADDED] = {"column_added", "column"},
	[CHANGE_COLUMN_REMOVED] = {"column_removed", "column"},
	[CHANGE_COLUMN_TYPE] = {"column_type_changed", "column"},
	[CHANGE_COLUMN_NULLABLE] = {"column_nullability_changed", "column"},
	[CHANGE_PRIMARY_KEY] = {"primary_key_changed", NULL},
	[CHANGE_FOREIGN_KEY_ADDED] = {"foreign_key_added", "foreign_key"},
	[CHANGE_FOREIGN_KEY_REMOVED] = {"foreign_key_removed", "foreign_key"},
	[CHANGE_INDEX_ADDED] = {"index_added", "index"},
	[CHANGE_INDEX_REMOVED] = {"index_removed", "index"},
	[CHANGE_INDEX_CHANGED] = {"index_changed", "index"},
};

const char *schema_change_name(enum schema_change_kind kind)
{
	return (unsigned)kind < sizeof change_names / sizeof change_names[0] ? change_names[kind].name : "?";
}

void schema_change_describe(const struct schema_change *c, char *out, size_t len)
{
	const char *b = c->before && *c->before ? c->before : "none";
	const char *a = c->after && *c->after ? c->after : "none";
	switch (c->kind) {
	case CHANGE_TABLE_ADDED: snprintf(out, len, "%s %s added", a, c->table); break;
	case CHANGE_TABLE_REMOVED: snprintf(out, len, "%s %s removed", b, c->table); break;
	case CHANGE_TABLE_KIND: snprintf(out, len, "%s is now a %s (was a %s)", c->table, a, b); break;
	case CHANGE_COLUMN_ADDED:
		snprintf(out, len, "column %s.%s added (%s)", c->table, c->object, a);
		break;
	case CHANGE_COLUMN_REMOVED:
		snprintf(out, len, "column %s.%s removed (was %s)", c->table, c->object, b);
		break;
	case CHANGE_COLUMN_TYPE:
		snprintf(out, len, "column %s.%s retyped: %s -> %s", c->table, c->object, b, a);
		break;
	case CHANGE_COLUMN_NULLABLE:
		snprintf(out, len, "column %s.%s is now %s (was %s)", c->table, c->object, a, b);
		break;
	case CHANGE_PRIMARY_KEY:
		snprintf(out, len, "primary key of %s: (%s) -> (%s)", c->table, b, a);
		break;
	case CHANGE_FOREIGN_KEY_ADDED:
		snprintf(out, len, "foreign key %s %s added", c->table, c->object);
		break;
	case CHANGE_FOREIGN_KEY_REMOVED:
		snprintf(out, len, "foreign key %s %s removed", c->table, c->object);
		break;
	case CHANGE_INDEX_ADDED: snprintf(out, len, "index %s on %s %s added", c->object, c->table, a); break;
	case CHANGE_INDEX_REMOVED:
		snprintf(out, len, "index %s on %s removed (was %s)", c->object, c->table, b);
		break;
	case CHANGE_INDEX_CHANGED:
		snprintf(out, len, "index %s on %s changed: %s -> %s", c->object, c->table, b, a);
		break;
	}
}

cJSON *schema_diff_to_json(const struct schema_diff *d)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; arr && d && i < d->n; i++) {
		const struct schema_change *c = &d->items[i];
		cJSON *o = cJSON_CreateObject();
		if (!o)
			goto fail;
		cJSON_AddItemToArray(arr, o);
		const char *okey = change_names[c->kind].object_key;
		char msg[1200];
		schema_change_describe(c, msg, sizeof msg);
		if (!cJSON_AddStringToObject(o, "change", schema_change_name(c->kind)) ||
		    !cJSON_AddStringToObject(o, "table", c->table) ||
		    (okey && c->object && !cJSON_AddStringToObject(o, okey, c->object)) ||
		    (c->before && !cJSON_AddStringToObject(o, "before", c->before)) ||
		    (c->after && !cJSON_AddStringToObject(o, "after", c->after)) ||
		    !cJSON_AddStringToObject(o, "message", msg))
			goto fail;
	}
	return arr;
fail:
	cJSON_Delete(arr);
	return NULL;
}

/* ---- drift -------------------------------------------------------------- */

struct schema_drift *schema_drift_new(void)
{
	return calloc(1, sizeof(struct schema_drift));
}

static void drift_item_clear(struct drift_item *it)
{
	free(it->key);
	free(it->file);
	free(it->table);
	free(it->column);
	free(it->type);
}

void schema_drift_free(struct schema_drift *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		drift_item_clear(&d->items[i]);
	free(d->items);
	free(d);
}

static int drift_push(struct schema_drift *d, struct drift_item *it, bool ok)
{
	if (ok && d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct drift_item *p = realloc(d->items, cap * sizeof *p);
		if (p) {
			d->items = p;
			d->cap = cap;
		} else {
			ok = false;
		}
	}
	if (!ok) {
		drift_item_clear(it);
		return CN_ENOMEM;
	}
	d->items[d->n++] = *it;
	return CN_OK;
}

int schema_drift_add_mapping(struct schema_drift *d, const char *file, int line, const char *key)
{
	bool ok = true;
	struct drift_item it = {.kind = DRIFT_UNMATCHED_MAPPING, .line = line};
	it.key = dup_or_null(key ? key : "", &ok);
	it.file = dup_or_null(file ? file : "", &ok);
	return drift_push(d, &it, ok);
}

static int add_undescribed(struct schema_drift *d, const struct sm_table *t, const struct sm_column *c)
{
	if (t->hidden || c->hidden || (c->description && *c->description))
		return CN_OK;
	bool ok = true;
	struct drift_item it = {.kind = DRIFT_UNDESCRIBED_COLUMN, .table = qualified(t)};
	it.column = dup_or_null(c->name, &ok);
	it.type = dup_or_null(c->type ? c->type : "", &ok);
	return drift_push(d, &it, ok && it.table);
}

static const struct sm_table *table_in(const struct sm_table **v, size_t n, const struct sm_table *t)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = table_cmp(v[mid], t);
		if (c == 0)
			return v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int schema_drift_add_undescribed(struct schema_drift *d, const struct schema_model *baseline,
				 const struct schema_model *current)
{
	size_t nb;
	if (!baseline || !current)
		return CN_OK;
	const struct sm_table **base = sorted_tables(baseline, &nb);
	if (!base)
		return CN_ENOMEM;
	int rc = CN_OK;
	for (size_t i = 0; i < current->ntables && !rc; i++) {
		const struct sm_table *t = &current->tables[i];
		const struct sm_table *old = table_in(base, nb, t);
		for (size_t j = 0; j < t->ncolumns && !rc; j++)
			if (!old || !column_named(old, t->columns[j].name))
				rc = add_undescribed(d, t, &t->columns[j]);
	}
	free(base);
	return rc;
}

void drift_item_describe(const struct drift_item *it, char *out, size_t len)
{
	if (it->kind == DRIFT_UNMATCHED_MAPPING)
		snprintf(out, len, "mapping '%s' (%s:%d) matches no table or column", it->key, it->file,
			 it->line);
	else
		snprintf(out, len, "column %s.%s (%s) is new since the baseline and has no description",
			 it->table, it->column, it->type);
}

cJSON *schema_drift_to_json(const struct schema_drift *d)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; arr && d && i < d->n; i++) {
		const struct drift_item *it = &d->items[i];
		char msg[700];
		cJSON *o = cJSON_CreateObject();
		if (!o)
			goto fail;
		cJSON_AddItemToArray(arr, o);
		drift_item_describe(it, msg, sizeof msg);
		bool ok;
		if (it->kind == DRIFT_UNMATCHED_MAPPING)
			ok = cJSON_AddStringToObject(o, "kind", "unmatched_mapping") &&
			     cJSON_AddStringToObject(o, "key", it->key) &&
			     cJSON_AddStringToObject(o, "file", it->file) &&
			     cJSON_AddNumberToObject(o, "line", it->line);
		else
			ok = cJSON_AddStringToObject(o, "kind", "undescribed_column") &&
			     cJSON_AddStringToObject(o, "table", it->table) &&
			     cJSON_AddStringToObject(o, "column", it->column) &&
			     cJSON_AddStringToObject(o, "type", it->type);
		if (!ok || !cJSON_AddStringToObject(o, "message", msg))
			goto fail;
	}
	return arr;
fail:
	cJSON_Delete(arr);
	return NULL;
}

struct schema_drift *schema_drift_from_json(const cJSON *json)
{
	if (!cJSON_IsArray(json))
		return NULL;
	struct schema_drift *d = schema_drift_new();
	const cJSON *o;
	if (!d)
		return NULL;
	cJSON_ArrayForEach(o, json) {
		const char *kind = str_of(o, "kind");
		int rc;
		if (kind && strcmp(kind, "unmatched_mapping") == 0) {
			const cJSON *line = cJSON_GetObjectItemCaseSensitive(o, "line");
			rc = schema_drift_add_mapping(d, str_of(o, "file"),
						      cJSON_IsNumber(line) ? line->valueint : 0,
						      str_of(o, "key"));
		} else if (kind && strcmp(kind, "undescribed_column") == 0 && str_of(o, "table") &&
			   str_of(o, "column")) {
			bool ok = true;
			struct drift_item it = {.kind = DRIFT_UNDESCRIBED_COLUMN};
			it.table = dup_or_null(str_of(o, "table"), &ok);
			it.column = dup_or_null(str_of(o, "column"), &ok);
			it.type = dup_or_null(str_of(o, "type") ? str_of(o, "type") : "", &ok);
			rc = drift_push(d, &it, ok);
		} else {
			rc = CN_EINVAL;
		}
		if (rc) {
			schema_drift_free(d);
			return NULL;
		}
	}
	return d;
}
