/*
 * schema_model.c - the in-memory schema of one source, filled by drivers
 * through a cn_schema_builder and rendered as describe_schema's answer.
 *
 * Arrays of tables, columns, foreign keys and indexes grow by doubling. The
 * structs carry no capacity field, so the capacity is implied by the count:
 * the smallest power of two >= max(count, ARRAY_MIN). Only this file creates
 * those arrays, which keeps the rule true. Synonym arrays are exact-sized and
 * replaced whole (mappings_apply), so they are not under that rule.
 */
#include "schema_model.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ARRAY_MIN 4

/* Make room for one more element in *arr (count n, element size elem).
 * On failure *arr is untouched and CN_ENOMEM is returned. */
static int array_reserve(void **arr, size_t n, size_t elem)
{
	size_t cap;

	if (n == 0 && *arr == NULL)
		cap = ARRAY_MIN;
	else if (n >= ARRAY_MIN && (n & (n - 1)) == 0)
		cap = n * 2;
	else
		return CN_OK;
	if (cap > SIZE_MAX / elem)
		return CN_ENOMEM;
	void *p = realloc(*arr, cap * elem);
	if (!p)
		return CN_ENOMEM;
	*arr = p;
	return CN_OK;
}

/* strdup that keeps NULL as NULL; *ok cleared on allocation failure. */
static char *dup_opt(const char *s, bool *ok)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*ok = false;
	return d;
}

static void strv_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Copy n strings, all non-NULL (checked by the caller). NULL on failure. */
static char **strv_dup(const char *const *src, size_t n)
{
	char **v = calloc(n ? n : 1, sizeof *v);
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		v[i] = strdup(src[i]);
		if (!v[i]) {
			strv_free(v, i);
			return NULL;
		}
	}
	return v;
}

static bool strv_valid(const char *const *v, size_t n)
{
	if (!v || n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!v[i])
			return false;
	return true;
}

static void column_free(struct sm_column *c)
{
	free(c->name);
	free(c->type);
	free(c->default_expr);
	free(c->description);
	free(c->comment);
	strv_free(c->synonyms, c->nsynonyms);
}

static void fk_free(struct sm_foreign_key *fk)
{
	free(fk->name);
	strv_free(fk->columns, fk->ncols);
	strv_free(fk->ref_columns, fk->ncols);
	free(fk->ref_schema);
	free(fk->ref_table);
}

static void index_free(struct sm_index *ix)
{
	free(ix->name);
	strv_free(ix->columns, ix->ncols);
}

static void table_free(struct sm_table *t)
{
	for (size_t i = 0; i < t->ncolumns; i++)
		column_free(&t->columns[i]);
	for (size_t i = 0; i < t->nfks; i++)
		fk_free(&t->fks[i]);
	for (size_t i = 0; i < t->nindexes; i++)
		index_free(&t->indexes[i]);
	free(t->columns);
	free(t->fks);
	free(t->indexes);
	free(t->schema);
	free(t->name);
	free(t->description);
	free(t->comment);
	strv_free(t->synonyms, t->nsynonyms);
}

struct schema_model *schema_model_new(void)
{
	return calloc(1, sizeof(struct schema_model));
}

void schema_model_free(struct schema_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->ntables; i++)
		table_free(&m->tables[i]);
	free(m->tables);
	free(m);
}

/* ---- builder callbacks (ctx is the model) ---- */

static struct sm_table *table_by_handle(struct schema_model *m, int handle)
{
	if (handle < 0 || (size_t)handle >= m->ntables)
		return NULL;
	return &m->tables[handle];
}

static int builder_table(void *ctx, const char *schema, const char *name, enum cn_object_kind kind,
			 const char *comment, int64_t row_estimate)
{
	struct schema_model *m = ctx;
	struct sm_table t = {.kind = kind, .row_count = row_estimate < 0 ? -1 : row_estimate};
	bool ok = true;

	if (!name || (int)kind < CN_OBJ_TABLE || kind > CN_OBJ_COLLECTION)
		return CN_EINVAL;
	if (m->ntables >= INT_MAX)
		return CN_ETOOBIG;
	t.schema = dup_opt(schema, &ok);
	t.name = dup_opt(name, &ok);
	t.description = dup_opt(comment, &ok);
	t.comment = dup_opt(comment, &ok);
	if (!ok || array_reserve((void **)&m->tables, m->ntables, sizeof *m->tables) != CN_OK) {
		table_free(&t);
		return CN_ENOMEM;
	}
	m->tables[m->ntables] = t;
	return (int)m->ntables++;
}

static int builder_column(void *ctx, int table, const char *name, const char *type, bool nullable,
			  const char *default_expr, const char *comment, int pk_position)
{
	struct sm_table *t = table_by_handle(ctx, table);
	struct sm_column c = {.nullable = nullable, .pk_position = pk_position};
	bool ok = true;

	if (!t || !name || pk_position < 0)
		return CN_EINVAL;
	c.name = dup_opt(name, &ok);
	c.type = dup_opt(type ? type : "", &ok);
	c.default_expr = dup_opt(default_expr, &ok);
	c.description = dup_opt(comment, &ok);
	c.comment = dup_opt(comment, &ok);
	if (!ok || array_reserve((void **)&t->columns, t->ncolumns, sizeof *t->columns) != CN_OK) {
		column_free(&c);
		return CN_ENOMEM;
	}
	t->columns[t->ncolumns++] = c;
	return CN_OK;
}

static int builder_foreign_key(void *ctx, int table, const char *name, size_t ncols,
			       const char *const *columns, const char *ref_schema, const char *ref_table,
			       const char *const *ref_columns)
{
	struct sm_table *t = table_by_handle(ctx, table);
	struct sm_foreign_key fk = {.ncols = ncols};
	bool ok = true;

	if (!t || !ref_table || !strv_valid(columns, ncols) || !strv_valid(ref_columns, ncols))
		return CN_EINVAL;
	fk.name = dup_opt(name, &ok);
	fk.ref_schema = dup_opt(ref_schema, &ok);
	fk.ref_table = dup_opt(ref_table, &ok);
	fk.columns = strv_dup(columns, ncols);
	fk.ref_columns = strv_dup(ref_columns, ncols);
	if (!fk.columns || !fk.ref_columns)
		ok = false;
	if (!ok || array_reserve((void **)&t->fks, t->nfks, sizeof *t->fks) != CN_OK) {
		/* strv_free tolerates NULL; a NULL array has no elements to free */
		fk_free(&fk);
		return CN_ENOMEM;
	}
	t->fks[t->nfks++] = fk;
	return CN_OK;
}

static int builder_index(void *ctx, int table, const char *name, bool unique, size_t ncols,
			 const char *const *columns)
{
	struct sm_table *t = table_by_handle(ctx, table);
	struct sm_index ix = {.unique = unique, .ncols = ncols};

	if (!t || !name || !strv_valid(columns, ncols))
		return CN_EINVAL;
	ix.name = strdup(name);
	ix.columns = strv_dup(columns, ncols);
	if (!ix.name || !ix.columns ||
	    array_reserve((void **)&t->indexes, t->nindexes, sizeof *t->indexes) != CN_OK) {
		index_free(&ix);
		return CN_ENOMEM;
	}
	t->indexes[t->nindexes++] = ix;
	return CN_OK;
}

void schema_model_builder(struct schema_model *m, struct cn_schema_builder *b)
{
	b->ctx = m;
	b->table = builder_table;
	b->column = builder_column;
	b->foreign_key = builder_foreign_key;
	b->index = builder_index;
}

/* ---- lookups ---- */

static bool schema_matches(const char *want, const char *have)
{
	if (!want)
		return true;
	return have && strcasecmp(want, have) == 0;
}

static const struct sm_table *find_table(const struct schema_model *m, const char *schema, const char *name)
{
	if (!m || !name)
		return NULL;
	for (size_t i = 0; i < m->ntables; i++) {
		const struct sm_table *t = &m->tables[i];
		if (strcasecmp(t->name, name) == 0 && schema_matches(schema, t->schema))
			return t;
	}
	return NULL;
}

static const struct sm_column *find_column(const struct sm_table *t, const char *name)
{
	if (!t || !name)
		return NULL;
	for (size_t i = 0; i < t->ncolumns; i++)
		if (strcasecmp(t->columns[i].name, name) == 0)
			return &t->columns[i];
	return NULL;
}

struct sm_table *schema_model_find_table(struct schema_model *m, const char *schema, const char *name)
{
	return (struct sm_table *)find_table(m, schema, name);
}

struct sm_column *schema_model_find_column(struct sm_table *t, const char *name)
{
	return (struct sm_column *)find_column(t, name);
}

size_t schema_model_visible_tables(const struct schema_model *m)
{
	size_t n = 0;
	if (!m)
		return 0;
	for (size_t i = 0; i < m->ntables; i++)
		if (!m->tables[i].hidden)
			n++;
	return n;
}

/* ---- JSON ---- */

const char *schema_kind_name(enum cn_object_kind kind)
{
	switch (kind) {
	case CN_OBJ_TABLE: return "table";
	case CN_OBJ_VIEW: return "view";
	case CN_OBJ_MATVIEW: return "materialized_view";
	case CN_OBJ_COLLECTION: return "collection";
	}
	return "table";
}

/* A column of t named name is hidden (unknown names are not). */
static bool column_hidden(const struct sm_table *t, const char *name)
{
	const struct sm_column *c = find_column(t, name);
	return c && c->hidden;
}

/* The table a foreign key points at: same schema as its table first. */
static const struct sm_table *fk_target(const struct schema_model *m, const struct sm_table *t,
					const struct sm_foreign_key *fk)
{
	const struct sm_table *r = NULL;
	if (fk->ref_schema)
		return find_table(m, fk->ref_schema, fk->ref_table);
	if (t->schema)
		r = find_table(m, t->schema, fk->ref_table);
	return r ? r : find_table(m, NULL, fk->ref_table);
}

static bool fk_visible(const struct schema_model *m, const struct sm_table *t,
		       const struct sm_foreign_key *fk)
{
	const struct sm_table *r = fk_target(m, t, fk);
	if (r && r->hidden)
		return false;
	for (size_t i = 0; i < fk->ncols; i++)
		if (column_hidden(t, fk->columns[i]) || (r && column_hidden(r, fk->ref_columns[i])))
			return false;
	return true;
}

static bool index_visible(const struct sm_table *t, const struct sm_index *ix)
{
	for (size_t i = 0; i < ix->ncols; i++)
		if (column_hidden(t, ix->columns[i]))
			return false;
	return true;
}

/* Append an array of n strings to obj under key; false on out of memory. */
static bool add_strings(cJSON *obj, const char *key, char *const *v, size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(obj, key);
	if (!arr)
		return false;
	for (size_t i = 0; i < n; i++) {
		cJSON *s = cJSON_CreateString(v[i]);
		if (!s)
			return false;
		cJSON_AddItemToArray(arr, s);
	}
	return true;
}

static bool add_opt_string(cJSON *obj, const char *key, const char *value)
{
	return !value || cJSON_AddStringToObject(obj, key, value);
}

static bool add_primary_key(cJSON *obj, const struct sm_table *t)
{
	cJSON *arr = cJSON_AddArrayToObject(obj, "primary_key");
	int next = 0;

	if (!arr)
		return false;
	/* Positions are small and few: pick the next higher one each round. */
	for (;;) {
		const struct sm_column *best = NULL;
		for (size_t i = 0; i < t->ncolumns; i++) {
			const struct sm_column *c = &t->columns[i];
			if (c->pk_position > next && !c->hidden &&
			    (!best || c->pk_position < best->pk_position))
				best = c;
		}
		if (!best)
			return true;
		cJSON *s = cJSON_CreateString(best->name);
		if (!s)
			return false;
		cJSON_AddItemToArray(arr, s);
		next = best->pk_position;
	}
}

static bool add_column(cJSON *arr, const struct sm_column *c)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return false;
	cJSON_AddItemToArray(arr, o);
	if (!cJSON_AddStringToObject(o, "name", c->name) ||
	    !cJSON_AddStringToObject(o, "type", c->type ? c->type : "") ||
	    !cJSON_AddBoolToObject(o, "nullable", c->nullable) ||
	    !add_opt_string(o, "default", c->default_expr))
		return false;
	if (c->pk_position > 0 && !cJSON_AddTrueToObject(o, "primary_key"))
		return false;
	if (!add_opt_string(o, "description", c->description))
		return false;
	return c->nsynonyms == 0 || add_strings(o, "synonyms", c->synonyms, c->nsynonyms);
}

static bool add_foreign_key(cJSON *arr, const struct sm_foreign_key *fk)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return false;
	cJSON_AddItemToArray(arr, o);
	if (!add_strings(o, "columns", fk->columns, fk->ncols))
		return false;
	cJSON *ref = cJSON_AddObjectToObject(o, "references");
	return ref && add_opt_string(ref, "schema", fk->ref_schema) &&
	       cJSON_AddStringToObject(ref, "table", fk->ref_table) &&
	       add_strings(ref, "columns", fk->ref_columns, fk->ncols);
}

static bool add_index(cJSON *arr, const struct sm_index *ix)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return false;
	cJSON_AddItemToArray(arr, o);
	return cJSON_AddStringToObject(o, "name", ix->name) &&
	       cJSON_AddBoolToObject(o, "unique", ix->unique) &&
	       add_strings(o, "columns", ix->columns, ix->ncols);
}

static bool add_table_parts(cJSON *o, const struct schema_model *m, const struct sm_table *t)
{
	cJSON *cols = cJSON_AddArrayToObject(o, "columns");
	if (!cols)
		return false;
	for (size_t i = 0; i < t->ncolumns; i++)
		if (!t->columns[i].hidden && !add_column(cols, &t->columns[i]))
			return false;
	cJSON *fks = cJSON_AddArrayToObject(o, "foreign_keys");
	if (!fks)
		return false;
	for (size_t i = 0; i < t->nfks; i++)
		if (fk_visible(m, t, &t->fks[i]) && !add_foreign_key(fks, &t->fks[i]))
			return false;
	cJSON *ixs = cJSON_AddArrayToObject(o, "indexes");
	if (!ixs)
		return false;
	for (size_t i = 0; i < t->nindexes; i++)
		if (index_visible(t, &t->indexes[i]) && !add_index(ixs, &t->indexes[i]))
			return false;
	return true;
}

static bool add_table(cJSON *arr, const struct schema_model *m, const struct sm_table *t)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return false;
	cJSON_AddItemToArray(arr, o);
	if (!cJSON_AddStringToObject(o, "name", t->name) || !add_opt_string(o, "schema", t->schema) ||
	    !cJSON_AddStringToObject(o, "kind", schema_kind_name(t->kind)) ||
	    !add_opt_string(o, "description", t->description) ||
	    !add_strings(o, "synonyms", t->synonyms, t->nsynonyms))
		return false;
	if (t->row_count >= 0 && !cJSON_AddNumberToObject(o, "row_count", (double)t->row_count))
		return false;
	return add_primary_key(o, t) && add_table_parts(o, m, t);
}

/* filter entry f names t: "name" or "schema.name", case-insensitive. */
static bool filter_names(const char *f, const struct sm_table *t)
{
	if (strcasecmp(f, t->name) == 0)
		return true;
	if (!t->schema)
		return false;
	size_t sl = strlen(t->schema);
	return strncasecmp(f, t->schema, sl) == 0 && f[sl] == '.' && strcasecmp(f + sl + 1, t->name) == 0;
}

static bool filter_keeps(const char *const *filter, size_t nfilter, const struct sm_table *t)
{
	if (nfilter == 0)
		return true;
	for (size_t i = 0; i < nfilter; i++)
		if (filter[i] && filter_names(filter[i], t))
			return true;
	return false;
}

cJSON *schema_model_to_json(const struct schema_model *m, const char *const *filter, size_t nfilter)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *tables = root ? cJSON_AddArrayToObject(root, "tables") : NULL;

	if (!tables)
		goto fail;
	for (size_t i = 0; m && i < m->ntables; i++) {
		const struct sm_table *t = &m->tables[i];
		if (t->hidden || !filter_keeps(filter, nfilter, t))
			continue;
		if (!add_table(tables, m, t))
			goto fail;
	}
	return root;
fail:
	cJSON_Delete(root);
	return NULL;
}

/* ---- the compact index ---- */

struct compact_entry {
	char *key;  /* "schema.name" or "name", for the sort and the prefix filter */
	char *json; /* the rendered entry */
	size_t len;
};

struct schema_compact {
	struct compact_entry *entries;
	size_t n;
};

static int compact_cmp(const void *a, const void *b)
{
	const struct compact_entry *x = a, *y = b;
	int c = strcasecmp(x->key, y->key);
	return c ? c : strcmp(x->key, y->key);
}

/* At most max bytes of s, cut on a UTF-8 boundary; *cut says whether it was cut. */
static size_t utf8_prefix(const char *s, size_t max, bool *cut)
{
	size_t len = strlen(s), n = 0;
	*cut = len > max;
	if (!*cut)
		return len;
	while (n < max) {
		size_t k = utf8_seq_len((const unsigned char *)s + n, len - n);
		if (k == 0)
			k = 1; /* invalid byte: buf_json_string replaces it */
		if (n + k > max)
			break;
		n += k;
	}
	return n;
}

static int compact_render(const struct sm_table *t, struct buf *b)
{
	size_t visible = 0;
	for (size_t i = 0; i < t->ncolumns; i++)
		visible += !t->columns[i].hidden;
	int rc = buf_puts(b, "{\"name\":");
	if (!rc)
		rc = buf_json_string(b, t->name, strlen(t->name));
	if (!rc && t->schema) {
		rc = buf_puts(b, ",\"schema\":");
		if (!rc)
			rc = buf_json_string(b, t->schema, strlen(t->schema));
	}
	if (!rc)
		rc = buf_printf(b, ",\"kind\":\"%s\",\"columns\":%zu", schema_kind_name(t->kind), visible);
	if (!rc && t->description && *t->description) {
		bool cut;
		size_t n = utf8_prefix(t->description, SCHEMA_COMPACT_DESC_MAX, &cut);
		rc = buf_puts(b, ",\"description\":");
		if (!rc && cut) {
			/* the cut text and an ellipsis, as one string */
			struct buf tmp;
			buf_init(&tmp, SCHEMA_COMPACT_DESC_MAX + 8);
			rc = buf_append(&tmp, t->description, n);
			if (!rc)
				rc = buf_puts(&tmp, "\xe2\x80\xa6");
			if (!rc)
				rc = buf_json_string(b, tmp.data, tmp.len);
			buf_free(&tmp);
		} else if (!rc) {
			rc = buf_json_string(b, t->description, n);
		}
	}
	if (!rc)
		rc = buf_puts(b, "}");
	return rc;
}

struct schema_compact *schema_compact_new(const struct schema_model *m)
{
	struct schema_compact *c = calloc(1, sizeof *c);
	size_t n = schema_model_visible_tables(m);
	if (!c || !(c->entries = calloc(n ? n : 1, sizeof *c->entries))) {
		free(c);
		return NULL;
	}
	for (size_t i = 0; m && i < m->ntables; i++) {
		const struct sm_table *t = &m->tables[i];
		if (t->hidden)
			continue;
		struct compact_entry *e = &c->entries[c->n];
		struct buf b;
		buf_init(&b, 1u << 20);
		size_t kl = (t->schema ? strlen(t->schema) + 1 : 0) + strlen(t->name) + 1;
		e->key = malloc(kl);
		if (!e->key || compact_render(t, &b)) {
			free(e->key);
			buf_free(&b);
			schema_compact_free(c);
			return NULL;
		}
		snprintf(e->key, kl, "%s%s%s", t->schema ? t->schema : "", t->schema ? "." : "", t->name);
		e->json = buf_steal(&b, &e->len);
		c->n++;
	}
	qsort(c->entries, c->n, sizeof *c->entries, compact_cmp);
	return c;
}

void schema_compact_free(struct schema_compact *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->entries[i].key);
		free(c->entries[i].json);
	}
	free(c->entries);
	free(c);
}

/* The entry's name or schema.name starts with prefix. */
static bool compact_matches(const struct compact_entry *e, const char *prefix, size_t pl)
{
	if (pl == 0 || strncasecmp(e->key, prefix, pl) == 0)
		return true;
	const char *dot = strchr(e->key, '.');
	return dot && strncasecmp(dot + 1, prefix, pl) == 0;
}

int schema_compact_page(const struct schema_compact *c, const char *prefix, size_t page, size_t budget,
			struct buf *out, struct schema_compact_page *info)
{
	size_t pl = prefix ? strlen(prefix) : 0;
	size_t cur = 1, used = 0, pos = 0;
	bool emitted = false;
	*info = (struct schema_compact_page){.pages = 1};
	for (size_t i = 0; c && i < c->n; i++) {
		const struct compact_entry *e = &c->entries[i];
		if (!compact_matches(e, prefix, pl))
			continue;
		size_t need = e->len + (used ? 1 : 0);
		if (used && used + need > budget) {
			cur++;
			used = 0;
			need = e->len;
		}
		used += need;
		if (cur == page) {
			if (info->count == 0)
				info->first = pos;
			int rc = buf_puts(out, emitted ? "," : "");
			if (!rc)
				rc = buf_append(out, e->json, e->len);
			if (rc)
				return rc;
			emitted = true;
			info->count++;
		}
		pos++;
	}
	info->total = pos;
	info->pages = cur;
	return page >= 1 && page <= cur ? CN_OK : CN_ENOTFOUND;
}
