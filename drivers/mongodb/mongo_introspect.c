/*
 * mongo_introspect.c - the schema of a MongoDB source: listCollections once,
 * then three commands per collection, whatever its size: an aggregate with
 * {$sample: {size: N}} (options.sample_size, default 1000), listIndexes and
 * count (estimatedDocumentCount). Views get the sample only.
 *
 * Fields are inferred from the sample: every field path (dots for nested
 * documents, "[]" for the elements of an array: "items[].sku"), the BSON
 * types seen ("int|string"; null counts as nullable, not as a type), how
 * many sampled documents have it ("present in 85% of 1000 sampled
 * documents"), and, when the collection has a $jsonSchema validator, the
 * types it declares (a declared field the sample never saw is listed too).
 * _id is the primary key. A collection that cannot be sampled keeps its
 * table with the reason in its comment; introspection goes on.
 *
 * Each sampled path the mappings hide is remembered (mongo_hidden_set), so
 * that the guard can refuse reading a document that holds one.
 */
#include "mongo_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 16
#define MAX_TYPES 24

struct fstat {
	char *path;
	uint8_t types[MAX_TYPES];
	int ntypes;
	size_t present, nulls, last_doc;
	char *declared; /* validator's bsonType text, or NULL */
	bool required;
};

struct stats {
	struct fstat *v;
	size_t n, cap;
	size_t docs;
	bool overflow;
};

static void stats_free(struct stats *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].path);
		free(s->v[i].declared);
	}
	free(s->v);
	*s = (struct stats){0};
}

static struct fstat *stat_get(struct stats *s, const char *path)
{
	for (size_t i = s->n; i-- > 0;) /* recent paths are the likeliest */
		if (!strcmp(s->v[i].path, path))
			return &s->v[i];
	if (s->n >= MONGO_MAX_FIELDS) {
		s->overflow = true;
		return NULL;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		struct fstat *v = realloc(s->v, cap * sizeof *v);
		if (!v)
			return NULL;
		s->v = v;
		s->cap = cap;
	}
	struct fstat *f = &s->v[s->n];
	*f = (struct fstat){.path = strdup(path)};
	if (!f->path)
		return NULL;
	s->n++;
	return f;
}

static void stat_seen(struct stats *s, const char *path, bson_type_t t, size_t doc)
{
	struct fstat *f = stat_get(s, path);
	if (!f)
		return;
	if (f->last_doc != doc) {
		f->last_doc = doc;
		f->present++;
		if (t == BSON_TYPE_NULL)
			f->nulls++;
	}
	for (int i = 0; i < f->ntypes; i++)
		if (f->types[i] == (uint8_t)t)
			return;
	if (f->ntypes < MAX_TYPES)
		f->types[f->ntypes++] = (uint8_t)t;
}

static void walk_value(struct stats *s, bson_iter_t *it, const char *path, size_t doc, int depth);

static void walk_doc(struct stats *s, bson_iter_t *it, const char *prefix, size_t doc, int depth)
{
	while (bson_iter_next(it)) {
		char path[MG_MAX_PATH + 1];
		int n = snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", bson_iter_key(it));
		if (n < 0 || (size_t)n >= sizeof path)
			continue;
		walk_value(s, it, path, doc, depth);
	}
}

static void walk_value(struct stats *s, bson_iter_t *it, const char *path, size_t doc, int depth)
{
	bson_type_t t = bson_iter_type(it);
	stat_seen(s, path, t, doc);
	if (depth >= MAX_DEPTH)
		return;
	bson_iter_t child;
	if (t == BSON_TYPE_DOCUMENT && bson_iter_recurse(it, &child)) {
		walk_doc(s, &child, path, doc, depth + 1);
	} else if (t == BSON_TYPE_ARRAY && bson_iter_recurse(it, &child)) {
		char elem[MG_MAX_PATH + 1];
		int n = snprintf(elem, sizeof elem, "%s[]", path);
		if (n < 0 || (size_t)n >= sizeof elem)
			return;
		while (bson_iter_next(&child))
			walk_value(s, &child, elem, doc, depth + 1);
	}
}

/* ---- the validator ---- */

static void declare(struct stats *s, const char *path, bson_iter_t *schema, bool required);

static void declare_properties(struct stats *s, const char *prefix, bson_iter_t *schema)
{
	bson_iter_t props, req;
	const char *reqs[64];
	size_t nreq = 0;
	bson_iter_t sc = *schema;
	if (bson_iter_find(&sc, "required") && BSON_ITER_HOLDS_ARRAY(&sc) && bson_iter_recurse(&sc, &req))
		while (nreq < 64 && bson_iter_next(&req))
			if (BSON_ITER_HOLDS_UTF8(&req))
				reqs[nreq++] = bson_iter_utf8(&req, NULL);
	sc = *schema;
	if (!bson_iter_find(&sc, "properties") || !BSON_ITER_HOLDS_DOCUMENT(&sc) ||
	    !bson_iter_recurse(&sc, &props))
		return;
	while (bson_iter_next(&props)) {
		bson_iter_t p;
		if (!BSON_ITER_HOLDS_DOCUMENT(&props) || !bson_iter_recurse(&props, &p))
			continue;
		char path[MG_MAX_PATH + 1];
		const char *key = bson_iter_key(&props);
		int n = snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
		if (n < 0 || (size_t)n >= sizeof path)
			continue;
		bool required = false;
		for (size_t i = 0; i < nreq; i++)
			required = required || !strcmp(reqs[i], key);
		declare(s, path, &p, required);
	}
}

/* One property's schema (it iterates the schema's keys from the start). */
static void declare(struct stats *s, const char *path, bson_iter_t *schema, bool required)
{
	bson_iter_t it = *schema, types;
	struct dstr t = {0};
	if (bson_iter_find(&it, "bsonType")) {
		if (BSON_ITER_HOLDS_UTF8(&it)) {
			dstr_puts(&t, bson_iter_utf8(&it, NULL));
		} else if (BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &types)) {
			while (bson_iter_next(&types))
				if (BSON_ITER_HOLDS_UTF8(&types))
					dstr_printf(&t, "%s%s", t.len ? "|" : "",
						    bson_iter_utf8(&types, NULL));
		}
	}
	struct fstat *f = stat_get(s, path);
	if (f && t.data) {
		free(f->declared);
		f->declared = t.data;
		t.data = NULL;
	}
	if (f)
		f->required = required;
	dstr_free(&t);
	declare_properties(s, path, schema);
	it = *schema;
	bson_iter_t items;
	if (bson_iter_find(&it, "items") && BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &items)) {
		char elem[MG_MAX_PATH + 1];
		int n = snprintf(elem, sizeof elem, "%s[]", path);
		if (n > 0 && (size_t)n < sizeof elem)
			declare(s, elem, &items, false);
	}
}

/* ---- one collection ---- */

struct coll_info {
	const char *name;
	bool view;
	const char *view_on;
	bson_t pipeline; /* views */
	bson_t validator_schema;
	bool has_schema;
};

static int sample(struct mongo_handle *h, mongoc_client_t *c, const char *name, struct stats *s,
		  char *why, size_t wlen)
{
	if (h->sample_size == 0)
		return CN_OK;
	bson_t *pipeline = BCON_NEW("pipeline", "[", "{", "$sample", "{", "size",
				    BCON_INT64((int64_t)h->sample_size), "}", "}", "]");
	bson_t opts = BSON_INITIALIZER;
	BSON_APPEND_INT64(&opts, "maxTimeMS", h->timeout_ms ? h->timeout_ms : MONGO_DEFAULT_TIMEOUT_MS);
	BSON_APPEND_INT32(&opts, "batchSize", (int32_t)(h->sample_size < 1000 ? h->sample_size : 1000));
	mongo_append_read_concern(h, &opts);
	mongoc_collection_t *coll = mongoc_client_get_collection(c, h->db, name);
	mongoc_cursor_t *cur = mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, pipeline, &opts,
							   h->read_prefs);
	const bson_t *doc;
	bson_error_t e;
	int rc = CN_OK;
	while (mongoc_cursor_next(cur, &doc)) {
		bson_iter_t it;
		s->docs++;
		if (bson_iter_init(&it, doc))
			walk_doc(s, &it, "", s->docs, 0);
	}
	if (mongoc_cursor_error(cur, &e)) {
		rc = mongo_error_status(&e, false);
		snprintf(why, wlen, "%s", e.message);
	}
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(coll);
	bson_destroy(&opts);
	bson_destroy(pipeline);
	return rc;
}

static int add_indexes(struct mongo_handle *h, mongoc_client_t *c, const struct cn_schema_builder *b,
		       int t, const char *name)
{
	mongoc_collection_t *coll = mongoc_client_get_collection(c, h->db, name);
	mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts(coll, NULL);
	const bson_t *doc;
	bson_error_t e;
	int rc = CN_OK;
	while (rc == CN_OK && mongoc_cursor_next(cur, &doc)) {
		bson_iter_t it, key;
		const char *iname = bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it)
					    ? bson_iter_utf8(&it, NULL) : NULL;
		bool unique = bson_iter_init_find(&it, doc, "unique") && bson_iter_as_bool(&it);
		if (!iname || !bson_iter_init_find(&it, doc, "key") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
		    !bson_iter_recurse(&it, &key))
			continue;
		const char *cols[32];
		size_t n = 0;
		while (n < 32 && bson_iter_next(&key))
			cols[n++] = bson_iter_key(&key);
		if (n && b->index(b->ctx, t, iname, unique, n, cols) < 0)
			rc = CN_ENOMEM;
	}
	if (rc == CN_OK && mongoc_cursor_error(cur, &e))
		rc = mongo_error_status(&e, false) == CN_EQUERY ? CN_OK : CN_EUNAVAILABLE;
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(coll);
	return rc;
}

static int64_t estimate(struct mongo_handle *h, mongoc_client_t *c, const char *name)
{
	mongoc_collection_t *coll = mongoc_client_get_collection(c, h->db, name);
	bson_t opts = BSON_INITIALIZER;
	bson_error_t e;
	BSON_APPEND_INT64(&opts, "maxTimeMS", h->timeout_ms ? h->timeout_ms : MONGO_DEFAULT_TIMEOUT_MS);
	int64_t n = mongoc_collection_estimated_document_count(coll, &opts, h->read_prefs, NULL, &e);
	bson_destroy(&opts);
	mongoc_collection_destroy(coll);
	return n < 0 ? -1 : n;
}

static const char *type_text(struct dstr *b, const struct fstat *f)
{
	dstr_reset(b);
	for (int i = 0; i < f->ntypes; i++)
		if (f->types[i] != BSON_TYPE_NULL && f->types[i] != BSON_TYPE_UNDEFINED)
			dstr_printf(b, "%s%s", b->len ? "|" : "", mt_type_name(f->types[i]));
	if (!b->len && f->declared)
		dstr_puts(b, f->declared);
	if (!b->len)
		dstr_puts(b, f->ntypes ? "null" : "unknown");
	return b->data ? b->data : "";
}

static int add_fields(struct mongo_handle *h, const struct cn_schema_builder *b, int t,
		      const char *coll, struct stats *s)
{
	struct dstr type = {0}, comment = {0};
	char **hidden = calloc(s->n + 1, sizeof *hidden);
	size_t nhidden = 0;
	int rc = hidden ? CN_OK : CN_ENOMEM;
	/* _id first */
	for (int pass = 0; rc == CN_OK && pass < 2; pass++) {
		for (size_t i = 0; rc == CN_OK && i < s->n; i++) {
			const struct fstat *f = &s->v[i];
			bool is_id = !strcmp(f->path, "_id");
			if (is_id != (pass == 0))
				continue;
			char norm[MG_MAX_PATH + 1];
			if (mg_path_normalize(f->path, norm, sizeof norm) && norm[0] &&
			    mongo_hook_is_hidden(h, coll, norm)) {
				bool dup = false;
				for (size_t k = 0; k < nhidden; k++)
					dup = dup || !strcmp(hidden[k], norm);
				if (!dup && !(hidden[nhidden++] = strdup(norm)))
					rc = CN_ENOMEM;
			}
			dstr_reset(&comment);
			if (s->docs && f->present == s->docs)
				dstr_printf(&comment, "present in all %zu sampled documents", s->docs);
			else if (s->docs)
				dstr_printf(&comment, "present in %.0f%% of %zu sampled documents",
					    100.0 * (double)f->present / (double)s->docs, s->docs);
			else
				dstr_puts(&comment, "declared by the validator; no document was sampled");
			if (f->nulls)
				dstr_printf(&comment, ", null in %zu", f->nulls);
			if (f->declared)
				dstr_printf(&comment, "; validator: bsonType %s%s", f->declared,
					    f->required ? ", required" : "");
			bool nullable = !(f->required || (s->docs && f->present == s->docs)) || f->nulls;
			if (is_id)
				nullable = false;
			if (rc == CN_OK &&
			    b->column(b->ctx, t, f->path, type_text(&type, f), nullable, NULL,
				      comment.data, is_id ? 1 : 0) < 0)
				rc = CN_ENOMEM;
		}
	}
	dstr_free(&type);
	dstr_free(&comment);
	if (hidden)
		mongo_hidden_set(h, coll, hidden, nhidden);
	return rc;
}

static void table_comment(struct dstr *out, const struct coll_info *ci, const struct stats *s,
			  const char *why)
{
	if (ci->view) {
		dstr_printf(out, "view on %s; pipeline: ", ci->view_on ? ci->view_on : "?");
		struct dstr p = {0};
		mt_json_array(&p, &ci->pipeline, NULL);
		if (p.data && p.len > 1500)
			dstr_printf(out, "%.1500s...", p.data);
		else if (p.data)
			dstr_puts(out, p.data);
		dstr_free(&p);
	}
	if (why && *why)
		dstr_printf(out, "%sfields unknown: sampling failed: %s", out->len ? "; " : "", why);
	else if (s->overflow)
		dstr_printf(out, "%sonly the first %u field paths are listed", out->len ? "; " : "",
			    MONGO_MAX_FIELDS);
}

static int one_collection(struct mongo_handle *h, mongoc_client_t *c, const struct cn_schema_builder *b,
			  struct coll_info *ci)
{
	struct stats s = {0};
	char why[300] = "";
	struct dstr comment = {0};
	bool hidden = mongo_hook_is_hidden(h, ci->name, NULL);
	int rc = CN_OK;
	if (!hidden) {
		rc = sample(h, c, ci->name, &s, why, sizeof why);
		if (rc == CN_EQUERY || rc == CN_ETIMEOUT)
			rc = CN_OK; /* the table stays, its comment says why */
		else if (rc)
			goto out;
		if (ci->has_schema) {
			bson_iter_t it;
			if (bson_iter_init(&it, &ci->validator_schema))
				declare_properties(&s, "", &it);
		}
	}
	table_comment(&comment, ci, &s, why);
	int64_t est = ci->view ? -1 : estimate(h, c, ci->name);
	int t = b->table(b->ctx, h->db, ci->name, ci->view ? CN_OBJ_VIEW : CN_OBJ_COLLECTION,
			 comment.len ? comment.data : NULL, est);
	if (t < 0) {
		rc = CN_ENOMEM;
		goto out;
	}
	if (!hidden && (rc = add_fields(h, b, t, ci->name, &s)))
		goto out;
	if (!ci->view && !hidden)
		rc = add_indexes(h, c, b, t, ci->name);
out:
	stats_free(&s);
	dstr_free(&comment);
	return rc;
}

/* A view whose collection is hidden is refused as the collection is: the
 * path "" in its hidden list stands for the whole view (mongo_conn.c). */
static void block_view(struct mongo_handle *h, const char *view)
{
	mongo_hidden_learn(h, view, "");
}

int mongo_introspect_run(struct mongo_handle *h, const struct cn_schema_builder *b, struct cn_error *err)
{
	mongoc_client_t *c;
	uint32_t slot;
	int rc = mongo_pool_checkout(h, MONGO_CHECKOUT_MAX_WAIT_MS * 5, mongo_pool_gen(h), &slot, &c, err);
	if (rc)
		return rc;
	mongo_hidden_reset(h); /* the mappings may have changed: learn again */
	mongoc_database_t *db = mongoc_client_get_database(c, h->db);
	bson_t opts = BSON_INITIALIZER;
	BSON_APPEND_BOOL(&opts, "authorizedCollections", true);
	mongoc_cursor_t *cur = mongoc_database_find_collections_with_opts(db, &opts);
	const bson_t *info;
	bson_error_t e;
	bson_t **infos = NULL;
	size_t n = 0, cap = 0;
	while (rc == CN_OK && mongoc_cursor_next(cur, &info)) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			bson_t **v = realloc(infos, cap * sizeof *v);
			if (!v) {
				rc = cn_error_set(err, CN_ENOMEM, "out of memory");
				break;
			}
			infos = v;
		}
		infos[n++] = bson_copy(info);
	}
	if (rc == CN_OK && mongoc_cursor_error(cur, &e))
		rc = mongo_error_set(h, err, mongo_error_status(&e, false) == CN_EQUERY ? CN_EQUERY
											: CN_EUNAVAILABLE,
				     "cannot list the collections of", &e);
	mongoc_cursor_destroy(cur);
	mongoc_database_destroy(db);
	bson_destroy(&opts);
	for (size_t i = 0; rc == CN_OK && i < n; i++) {
		struct coll_info ci = {0};
		bson_iter_t it, o;
		if (!bson_iter_init_find(&it, infos[i], "name") || !BSON_ITER_HOLDS_UTF8(&it))
			continue;
		ci.name = bson_iter_utf8(&it, NULL);
		if (!strncmp(ci.name, "system.", 7))
			continue;
		ci.view = bson_iter_init_find(&it, infos[i], "type") && BSON_ITER_HOLDS_UTF8(&it) &&
			  !strcmp(bson_iter_utf8(&it, NULL), "view");
		bson_init(&ci.pipeline);
		bson_init(&ci.validator_schema);
		if (bson_iter_init_find(&it, infos[i], "options") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
		    bson_iter_recurse(&it, &o)) {
			bson_iter_t v = o, sub;
			if (bson_iter_find(&v, "viewOn") && BSON_ITER_HOLDS_UTF8(&v))
				ci.view_on = bson_iter_utf8(&v, NULL);
			v = o;
			if (bson_iter_find(&v, "pipeline") && BSON_ITER_HOLDS_ARRAY(&v)) {
				const uint8_t *data;
				uint32_t len;
				bson_iter_array(&v, &len, &data);
				bson_destroy(&ci.pipeline);
				bson_init_static(&ci.pipeline, data, len);
			}
			v = o;
			if (bson_iter_find_descendant(&v, "validator.$jsonSchema", &sub) &&
			    BSON_ITER_HOLDS_DOCUMENT(&sub)) {
				const uint8_t *data;
				uint32_t len;
				bson_iter_document(&sub, &len, &data);
				bson_destroy(&ci.validator_schema);
				bson_init_static(&ci.validator_schema, data, len);
				ci.has_schema = true;
			}
		}
		if (ci.view && ci.view_on && mongo_hook_is_hidden(h, ci.view_on, NULL))
			block_view(h, ci.name);
		rc = one_collection(h, c, b, &ci);
		if (rc == CN_ENOMEM)
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		else if (rc)
			rc = cn_error_set(err, rc, "introspection of %s stopped at collection '%s': the "
					  "server did not answer", h->target, ci.name);
		bson_destroy(&ci.pipeline);
		bson_destroy(&ci.validator_schema);
	}
	for (size_t i = 0; i < n; i++)
		bson_destroy(infos[i]);
	free(infos);
	mongo_pool_checkin(h, slot, c);
	return rc;
}
