/*
 * pg_catalog.c - names for result columns: type names and cell kinds by type
 * OID, origins (schema, table, column) by relation OID and attribute number.
 *
 * Built-in types come from a static table. Other types and relations are
 * cached per source: relations are filled by introspection; whatever a result
 * names that the cache lacks is looked up once on the meta connection (a
 * pool connection cannot: it is in the middle of streaming that result).
 * A relation whose names cannot be resolved fails the query, because the
 * core masks hidden columns by origin.
 */
#include "pg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LOOKUP_ROUNDS 4 /* domains over arrays of domains... */
#define RESOLVE_DEPTH 8

static const char TYPES_SQL[] =
	"SELECT t.oid, pg_catalog.format_type(t.oid, NULL), t.typtype, t.typcategory, t.typdelim, "
	"t.typbasetype, t.typelem FROM pg_catalog.pg_type t WHERE t.oid = ANY ($1::pg_catalog.oid[])";

static const char RELS_SQL[] =
	"SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname "
	"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	"LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
	"AND NOT a.attisdropped WHERE c.oid = ANY ($1::pg_catalog.oid[]) ORDER BY 1, 4";

void pg_rel_free(void *p)
{
	struct pg_rel *r = p;
	if (!r)
		return;
	for (int i = 0; i < r->natts; i++)
		free(r->attnames[i]);
	free(r->attnames);
	free(r->schema);
	free(r->name);
	free(r);
}

void pg_type_entry_free(void *p)
{
	struct pg_type_entry *t = p;
	if (!t)
		return;
	free(t->name);
	free(t);
}

int pg_cat_put_rel(struct pg_handle *h, struct pg_rel *rel)
{
	pthread_mutex_lock(&h->cache_lock);
	struct pg_rel *old = pg_oid_map_get(&h->rels, rel->oid);
	int rc = pg_oid_map_put(&h->rels, rel->oid, rel);
	atomic_fetch_add(&h->rels_gen, 1); /* the guard's verdicts may differ now */
	pthread_mutex_unlock(&h->cache_lock);
	if (rc) {
		pg_rel_free(rel);
		return rc;
	}
	if (old != rel)
		pg_rel_free(old);
	return CN_OK;
}

void pg_cat_close(struct pg_handle *h)
{
	pg_oid_map_clear(&h->types, pg_type_entry_free);
	pg_oid_map_clear(&h->rels, pg_rel_free);
	PQfinish(h->meta);
	h->meta = NULL;
}

/* ---- look-ups on the meta connection (meta_lock held) ---- */

static int meta_query(struct pg_handle *h, const char *sql, const char *array, PGresult **out,
		      struct cn_error *err)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!h->meta || PQstatus(h->meta) != CONNECTION_OK) {
			PQfinish(h->meta);
			h->meta = NULL;
			int rc = pg_connect(h, &h->meta, err);
			if (rc)
				return rc;
		}
		PGresult *res = PQexecParams(h->meta, sql, 1, NULL, &array, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			*out = res;
			return CN_OK;
		}
		char msg[400];
		if (res)
			pg_error_text(h, res, msg, sizeof msg);
		else
			pg_conn_message(h, h->meta, msg, sizeof msg);
		PQclear(res);
		if (PQstatus(h->meta) == CONNECTION_OK || attempt == 1)
			return cn_error_set(err, CN_EUNAVAILABLE, "catalog look-up failed: %s", msg);
	}
	return cn_error_set(err, CN_EUNAVAILABLE, "catalog look-up failed");
}

static int oid_array(struct dstr *s, const uint32_t *oids, size_t n)
{
	dstr_reset(s);
	int rc = dstr_puts(s, "{");
	for (size_t i = 0; rc == CN_OK && i < n; i++)
		rc = dstr_printf(s, "%s%u", i ? "," : "", oids[i]);
	return rc ? rc : dstr_puts(s, "}");
}

static bool oid_listed(const uint32_t *oids, size_t n, uint32_t oid)
{
	for (size_t i = 0; i < n; i++)
		if (oids[i] == oid)
			return true;
	return false;
}

/* Adds oid to want when it is neither built in nor cached (cache_lock held). */
static void want_type(struct pg_handle *h, uint32_t *want, size_t *n, size_t cap, uint32_t oid)
{
	if (oid == 0 || pg_builtin_type(oid) || pg_oid_map_get(&h->types, oid))
		return;
	if (*n < cap && !oid_listed(want, *n, oid))
		want[(*n)++] = oid;
}

static int types_store(struct pg_handle *h, PGresult *res, uint32_t *next, size_t *nnext,
		       size_t cap)
{
	int rc = CN_OK;
	pthread_mutex_lock(&h->cache_lock);
	for (int r = 0; rc == CN_OK && r < PQntuples(res); r++) {
		struct pg_type_entry *t = calloc(1, sizeof *t);
		if (!t || !(t->name = strdup(PQgetvalue(res, r, 1)))) {
			pg_type_entry_free(t);
			rc = CN_ENOMEM;
			break;
		}
		t->oid = (uint32_t)strtoul(PQgetvalue(res, r, 0), NULL, 10);
		t->typtype = PQgetvalue(res, r, 2)[0];
		t->category = PQgetvalue(res, r, 3)[0];
		t->delim = PQgetvalue(res, r, 4)[0];
		t->base = (uint32_t)strtoul(PQgetvalue(res, r, 5), NULL, 10);
		t->elem = (uint32_t)strtoul(PQgetvalue(res, r, 6), NULL, 10);
		if ((rc = pg_oid_map_put(&h->types, t->oid, t))) {
			pg_type_entry_free(t);
			break;
		}
		if (t->typtype == 'd')
			want_type(h, next, nnext, cap, t->base);
		if (t->category == 'A')
			want_type(h, next, nnext, cap, t->elem);
	}
	pthread_mutex_unlock(&h->cache_lock);
	return rc;
}

static int lookup_types(struct pg_handle *h, uint32_t *want, size_t n, size_t cap,
			struct cn_error *err)
{
	struct dstr arr = {0};
	int rc = CN_OK;
	for (int round = 0; rc == CN_OK && n > 0 && round < LOOKUP_ROUNDS; round++) {
		PGresult *res = NULL;
		if ((rc = oid_array(&arr, want, n)))
			break;
		if ((rc = meta_query(h, TYPES_SQL, arr.data, &res, err)))
			break;
		n = 0;
		rc = types_store(h, res, want, &n, cap);
		PQclear(res);
	}
	dstr_free(&arr);
	if (rc == CN_ENOMEM)
		cn_error_set(err, rc, "out of memory");
	return rc;
}

static struct pg_rel *rel_new(PGresult *res, int first, int last)
{
	struct pg_rel *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->oid = (uint32_t)strtoul(PQgetvalue(res, first, 0), NULL, 10);
	r->schema = strdup(PQgetvalue(res, first, 1));
	r->name = strdup(PQgetvalue(res, first, 2));
	if (!r->schema || !r->name)
		goto fail;
	if (!PQgetisnull(res, last, 3))
		r->natts = atoi(PQgetvalue(res, last, 3));
	if (r->natts > 0 && !(r->attnames = calloc((size_t)r->natts, sizeof *r->attnames)))
		goto fail;
	for (int i = first; i <= last; i++) {
		if (PQgetisnull(res, i, 3))
			continue;
		int att = atoi(PQgetvalue(res, i, 3));
		if (att >= 1 && att <= r->natts && !(r->attnames[att - 1] = strdup(PQgetvalue(res, i, 4))))
			goto fail;
	}
	return r;
fail:
	pg_rel_free(r);
	return NULL;
}

static int lookup_rels(struct pg_handle *h, const uint32_t *want, size_t n, struct cn_error *err)
{
	struct dstr arr = {0};
	PGresult *res = NULL;
	int rc = oid_array(&arr, want, n);
	if (rc == CN_OK)
		rc = meta_query(h, RELS_SQL, arr.data, &res, err);
	dstr_free(&arr);
	if (rc)
		return rc;
	int rows = PQntuples(res);
	for (int first = 0; rc == CN_OK && first < rows;) {
		int last = first;
		while (last + 1 < rows && !strcmp(PQgetvalue(res, last + 1, 0), PQgetvalue(res, first, 0)))
			last++;
		struct pg_rel *r = rel_new(res, first, last);
		rc = r ? pg_cat_put_rel(h, r) : CN_ENOMEM;
		first = last + 1;
	}
	PQclear(res);
	if (rc == CN_ENOMEM)
		cn_error_set(err, rc, "out of memory");
	return rc;
}

/* ---- describing columns ---- */

/* Kind of a type, its element kind and delimiter for arrays (cache_lock held). */
static void type_resolve(struct pg_handle *h, uint32_t oid, int depth, enum pg_kind *kind,
			 enum pg_kind *elem, char *delim)
{
	const struct pg_builtin_type *b = pg_builtin_type(oid);
	const struct pg_type_entry *t = b ? NULL : pg_oid_map_get(&h->types, oid);
	enum pg_kind ek = PG_KIND_TEXT, dummy;
	char ed = ',', d2;
	*kind = PG_KIND_TEXT;
	*elem = PG_KIND_TEXT;
	*delim = ',';
	if (depth > RESOLVE_DEPTH)
		return;
	if (b) {
		*kind = b->kind;
		if (b->kind == PG_KIND_ARRAY) {
			type_resolve(h, b->elem, depth + 1, &ek, &dummy, &d2);
			*elem = ek == PG_KIND_ARRAY ? PG_KIND_TEXT : ek;
		}
		return;
	}
	if (!t)
		return;
	if (t->typtype == 'd') {
		type_resolve(h, t->base, depth + 1, kind, elem, delim);
		return;
	}
	if (t->category == 'A' && t->elem) {
		const struct pg_type_entry *et = pg_oid_map_get(&h->types, t->elem);
		type_resolve(h, t->elem, depth + 1, &ek, &dummy, &d2);
		if (et && et->delim)
			ed = et->delim;
		*kind = PG_KIND_ARRAY;
		*elem = ek == PG_KIND_ARRAY ? PG_KIND_TEXT : ek;
		*delim = ed;
	}
}

static const char *type_name(struct pg_handle *h, uint32_t oid)
{
	const struct pg_builtin_type *b = pg_builtin_type(oid);
	if (b)
		return b->name;
	const struct pg_type_entry *t = pg_oid_map_get(&h->types, oid);
	return t ? t->name : "unknown";
}

void pg_cols_free(struct pg_col *cols, int ncols)
{
	for (int i = 0; cols && i < ncols; i++) {
		free(cols[i].name);
		free(cols[i].type);
		free(cols[i].schema);
		free(cols[i].table);
		free(cols[i].column);
	}
	free(cols);
}

static char *dup_or_null(const char *s, bool *fail)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*fail = true;
	return d;
}

/* Fill cols from res and the cache (cache_lock held). */
static int describe_locked(struct pg_handle *h, const PGresult *res, struct pg_col *cols,
			   struct cn_error *err)
{
	bool fail = false;
	struct dstr tname = {0};
	for (int i = 0; i < PQnfields(res) && !fail; i++) {
		struct pg_col *c = &cols[i];
		uint32_t type = PQftype(res, i), rel = PQftable(res, i);
		type_resolve(h, type, 0, &c->kind, &c->elem_kind, &c->delim);
		dstr_reset(&tname);
		if (pg_type_format(&tname, type, type_name(h, type), PQfmod(res, i))) {
			fail = true;
			break;
		}
		c->name = dup_or_null(PQfname(res, i), &fail);
		c->type = dup_or_null(tname.data, &fail);
		if (rel == 0)
			continue;
		const struct pg_rel *r = pg_oid_map_get(&h->rels, rel);
		if (!r) {
			dstr_free(&tname);
			return cn_error_set(err, CN_EUNAVAILABLE,
					    "cannot tell which table result column %s comes from",
					    PQfname(res, i));
		}
		int att = PQftablecol(res, i);
		c->schema = dup_or_null(r->schema, &fail);
		c->table = dup_or_null(r->name, &fail);
		if (att >= 1 && att <= r->natts)
			c->column = dup_or_null(r->attnames[att - 1], &fail);
	}
	dstr_free(&tname);
	return fail ? cn_error_set(err, CN_ENOMEM, "out of memory") : CN_OK;
}

int pg_cat_describe(struct pg_handle *h, const PGresult *res, struct pg_col *cols,
		    struct cn_error *err)
{
	int n = PQnfields(res);
	size_t cap = (size_t)n * 3 + 8;
	uint32_t *types = calloc(cap, sizeof *types), *rels = calloc(cap, sizeof *rels);
	size_t ntypes = 0, nrels = 0;
	int rc = CN_OK;
	if (!types || !rels) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	pthread_mutex_lock(&h->cache_lock);
	for (int i = 0; i < n; i++) {
		want_type(h, types, &ntypes, cap, PQftype(res, i));
		uint32_t rel = PQftable(res, i);
		if (rel && !pg_oid_map_get(&h->rels, rel) && !oid_listed(rels, nrels, rel))
			rels[nrels++] = rel;
	}
	pthread_mutex_unlock(&h->cache_lock);
	if (ntypes || nrels) {
		pthread_mutex_lock(&h->meta_lock);
		if (ntypes)
			rc = lookup_types(h, types, ntypes, cap, err);
		if (rc == CN_OK && nrels)
			rc = lookup_rels(h, rels, nrels, err);
		pthread_mutex_unlock(&h->meta_lock);
		if (rc)
			goto out;
	}
	pthread_mutex_lock(&h->cache_lock);
	rc = describe_locked(h, res, cols, err);
	pthread_mutex_unlock(&h->cache_lock);
out:
	free(types);
	free(rels);
	return rc;
}

/* ---- the guard's hook ---- */

int pg_cat_has_hidden_columns(void *handle, const char *schema, const char *table)
{
	struct pg_handle *h = handle;
	int found = 0;
	if (!h->is_hidden || !table)
		return 0;
	pthread_mutex_lock(&h->cache_lock);
	for (size_t i = 0; !found && i < h->rels.cap; i++) {
		const struct pg_rel *r = h->rels.keys[i] ? h->rels.values[i] : NULL;
		if (!r || strcasecmp(r->name, table) != 0 || (schema && strcasecmp(r->schema, schema)))
			continue;
		for (int a = 0; !found && a < r->natts; a++)
			if (r->attnames[a] && h->is_hidden(h->host_ctx, r->schema, r->name, r->attnames[a]))
				found = 1;
	}
	pthread_mutex_unlock(&h->cache_lock);
	return found;
}
