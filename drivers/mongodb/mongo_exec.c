/*
 * mongo_exec.c - running one request on a client of the pool.
 *
 * What goes on the wire: the command the guard built from the request's
 * allow-listed fields (mongo_guard.c), never the request's own bytes, plus
 * what the connector sets itself:
 *
 *   find       mongoc_collection_find_with_opts: the guard's filter and
 *              options, maxTimeMS = the time budget, batchSize = rows to
 *              read + 1, readConcern from the dsn; read preference from the
 *              dsn
 *   aggregate  mongoc_collection_aggregate: the pipeline and options, with
 *              the same additions (cursor.batchSize)
 *   count, distinct, explain
 *              mongoc_client_read_command_with_opts: the command with
 *              maxTimeMS, the read concern (not for explain) and the dsn's
 *              read preference
 *
 * libmongoc adds $db (the dsn's database), lsid, $clusterTime and
 * $readPreference itself. A cursor is read up to max_rows + 1 documents or
 * MONGO_READ_MAX_BYTES, whichever comes first, and then destroyed, which
 * sends killCursors when the server still holds it open. Only then do the
 * columns (the top-level fields seen in what was read, _id first, then in
 * first-seen order) go to the sink, followed by the rows.
 *
 * Failure paths: the guard's refusal (CN_EREJECTED) or a parameter that does
 * not fit (CN_EINVAL) before any client is taken; no client within the
 * bounded wait: CN_EBUSY; the server's error: CN_EQUERY with its message;
 * maxTimeMS expired (code 50) or a socket timeout past the budget:
 * CN_ETIMEOUT; no server, a lost connection, shutdown of the server:
 * CN_EUNAVAILABLE (libmongoc retries a read once on a network error; the
 * next request after the server is back succeeds); cancel() while the
 * request waits or reads: CN_ECANCELED. Hidden fields are removed from every
 * returned document, at any depth, while the cells are written.
 */
#include "mongo_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COL_MAX_TYPES 24

struct col {
	const char *name; /* points into a held document */
	bool hidden;
	bool missing;     /* some document lacks it */
	size_t last_doc;  /* 1 + the last document that had it */
	uint8_t types[COL_MAX_TYPES];
	int ntypes;
};

struct run {
	struct mongo_handle *h;
	const struct mg_request *req;
	const struct cn_result_sink *sink;
	uint32_t timeout_ms;
	int64_t start;
	unsigned gen;
	size_t want; /* documents to read */
	bool origins;
	/* documents read */
	bson_t **docs;
	size_t ndocs, capdocs, bytes;
	/* columns, and a hash of their names */
	struct col *cols;
	size_t ncols, capcols;
	int32_t *slots; /* index + 1, 0 empty */
	size_t nslots;
	struct dstr scratch;
	struct dstr types;
};

/* ---- hidden fields in results ---- */

static int scrub_hidden(void *ctx, const char *path)
{
	struct run *r = ctx;
	const char *colls[2] = {r->req->scrub[0] ? r->req->scrub : NULL, r->req->collection};
	for (int i = 0; i < 2; i++) {
		if (!colls[i] || (i == 1 && colls[0] && !strcmp(colls[0], colls[1])))
			continue;
		char norm[MG_MAX_PATH + 1];
		if (!mg_path_normalize(path, norm, sizeof norm))
			return 1;
		if (mongo_hook_is_hidden(r->h, colls[i], norm)) {
			mongo_hidden_learn(r->h, colls[i], norm);
			return 1;
		}
	}
	return 0;
}

/* ---- documents ---- */

static int keep_doc(struct run *r, bson_t *doc)
{
	if (r->ndocs == r->capdocs) {
		size_t cap = r->capdocs ? r->capdocs * 2 : 32;
		bson_t **v = realloc(r->docs, cap * sizeof *v);
		if (!v) {
			bson_destroy(doc);
			return CN_ENOMEM;
		}
		r->docs = v;
		r->capdocs = cap;
	}
	r->docs[r->ndocs++] = doc;
	r->bytes += doc->len;
	return CN_OK;
}

static void docs_free(struct run *r)
{
	for (size_t i = 0; i < r->ndocs; i++)
		bson_destroy(r->docs[i]);
	free(r->docs);
	r->docs = NULL;
	r->ndocs = r->capdocs = 0;
}

/* ---- columns ---- */

static uint64_t name_hash(const char *s)
{
	uint64_t x = 14695981039346656037ull;
	for (; *s; s++) {
		x ^= (unsigned char)*s;
		x *= 1099511628211ull;
	}
	return x;
}

static int col_rehash(struct run *r, size_t nslots)
{
	int32_t *slots = calloc(nslots, sizeof *slots);
	if (!slots)
		return CN_ENOMEM;
	for (size_t i = 0; i < r->ncols; i++) {
		size_t j = name_hash(r->cols[i].name) & (nslots - 1);
		while (slots[j])
			j = (j + 1) & (nslots - 1);
		slots[j] = (int32_t)i + 1;
	}
	free(r->slots);
	r->slots = slots;
	r->nslots = nslots;
	return CN_OK;
}

/* The column named name, added when add is set and it is new: its index,
 * -2 when absent, -1 on out of memory. */
static long col_index(struct run *r, const char *name, bool add)
{
	uint64_t hash = name_hash(name);
	if (r->nslots) {
		size_t j = hash & (r->nslots - 1);
		while (r->slots[j]) {
			struct col *c = &r->cols[r->slots[j] - 1];
			if (!strcmp(c->name, name))
				return r->slots[j] - 1;
			j = (j + 1) & (r->nslots - 1);
		}
	}
	if (!add)
		return -2;
	if (r->ncols == r->capcols) {
		size_t cap = r->capcols ? r->capcols * 2 : 16;
		struct col *v = realloc(r->cols, cap * sizeof *v);
		if (!v)
			return -1;
		r->cols = v;
		r->capcols = cap;
	}
	struct col *c = &r->cols[r->ncols++];
	*c = (struct col){.name = name};
	c->hidden = scrub_hidden(r, name);
	if (r->ncols * 2 > r->nslots) {
		if (col_rehash(r, r->nslots ? r->nslots * 2 : 64)) {
			r->ncols--;
			return -1;
		}
	} else {
		size_t j = hash & (r->nslots - 1);
		while (r->slots[j])
			j = (j + 1) & (r->nslots - 1);
		r->slots[j] = (int32_t)r->ncols;
	}
	return (long)r->ncols - 1;
}

static void col_type(struct col *c, bson_type_t t)
{
	for (int i = 0; i < c->ntypes; i++)
		if (c->types[i] == (uint8_t)t)
			return;
	if (c->ntypes < COL_MAX_TYPES)
		c->types[c->ntypes++] = (uint8_t)t;
}

/* Columns from every document held: _id first, then first-seen order. */
static int discover_columns(struct run *r)
{
	for (size_t d = 0; d < r->ndocs; d++) {
		bson_iter_t it;
		if (bson_iter_init_find(&it, r->docs[d], "_id")) {
			if (col_index(r, "_id", true) < 0)
				return CN_ENOMEM;
			break;
		}
	}
	/* the document past max_rows only tells the sink there is more: it
	 * brings no column of its own */
	size_t ndocs = r->ndocs == r->want && r->want > 1 ? r->ndocs - 1 : r->ndocs;
	for (size_t d = 0; d < ndocs; d++) {
		bson_iter_t it;
		size_t before = r->ncols;
		if (!bson_iter_init(&it, r->docs[d]))
			continue;
		while (bson_iter_next(&it)) {
			long i = col_index(r, bson_iter_key(&it), true);
			if (i < 0)
				return CN_ENOMEM;
			struct col *c = &r->cols[i];
			if (d > 0 && (size_t)i >= before)
				c->missing = true; /* earlier documents lacked it */
			col_type(c, bson_iter_type(&it));
			c->last_doc = d + 1;
		}
		for (size_t i = 0; i < r->ncols; i++)
			if (r->cols[i].last_doc != d + 1)
				r->cols[i].missing = true;
	}
	return CN_OK;
}

static const char *col_type_text(struct run *r, const struct col *c)
{
	dstr_reset(&r->types);
	bool null = c->missing;
	for (int i = 0; i < c->ntypes; i++) {
		if (c->types[i] == BSON_TYPE_NULL || c->types[i] == BSON_TYPE_UNDEFINED) {
			null = true;
			continue;
		}
		if (dstr_printf(&r->types, "%s%s", r->types.len ? "|" : "", mt_type_name(c->types[i])))
			return NULL;
	}
	if (null && dstr_printf(&r->types, "%s", r->types.len ? "|null" : "null"))
		return NULL;
	return r->types.data ? r->types.data : "";
}

/* libbson declares bson_iter_t 128-byte aligned (its size is not a multiple
 * of that): an array of them needs each in a slot of its own. */
struct held {
	_Alignas(128) bson_iter_t it;
};

/* Columns, then one row per held document. Stops when the sink is full. */
static int push_rows(struct run *r, struct cn_error *err)
{
	int rc = CN_OK;
	if (discover_columns(r))
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	struct held *its = aligned_alloc(_Alignof(struct held), (r->ncols + 1) * sizeof *its);
	bool *have = calloc(r->ncols + 1, sizeof *have);
	if (!its || !have) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r->ncols; i++) {
		const struct col *c = &r->cols[i];
		if (c->hidden)
			continue;
		const char *type = col_type_text(r, c);
		if (!type) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			goto out;
		}
		struct cn_column_info info = {
			.name = c->name,
			.type = type,
			.origin_schema = r->origins ? r->h->db : NULL,
			.origin_table = r->origins ? r->req->collection : NULL,
			.origin_column = r->origins ? c->name : NULL,
		};
		if ((rc = r->sink->column(r->sink->ctx, &info)) < 0)
			goto sink_failed;
	}
	struct mt_scrub scrub = {r, scrub_hidden};
	for (size_t d = 0; d < r->ndocs; d++) {
		bson_iter_t it;
		memset(have, 0, r->ncols * sizeof *have);
		if (bson_iter_init(&it, r->docs[d])) {
			while (bson_iter_next(&it)) {
				long i = col_index(r, bson_iter_key(&it), false);
				if (i >= 0 && !have[i]) {
					have[i] = true;
					its[i].it = it;
				}
			}
		}
		for (size_t i = 0; i < r->ncols; i++) {
			if (r->cols[i].hidden)
				continue;
			struct cn_value v = {.kind = CN_VAL_NULL};
			if (have[i] && mt_cell(&its[i].it, r->cols[i].name, &scrub, &r->scratch, &v)) {
				rc = cn_error_set(err, CN_ENOMEM, "out of memory");
				goto out;
			}
			if ((rc = r->sink->cell(r->sink->ctx, &v)) < 0)
				goto sink_failed;
		}
		rc = r->sink->row_end(r->sink->ctx);
		if (rc == CN_SINK_FULL) {
			rc = CN_OK;
			break;
		}
		if (rc < 0)
			goto sink_failed;
	}
	rc = CN_OK;
	goto out;
sink_failed:
	rc = cn_error_set(err, rc, "the result could not be written (status %d)", rc);
out:
	free(its);
	free(have);
	return rc;
}

/* ---- running ---- */

/* A network error this late is the socket timeout (budget + slack), not a
 * server that went away. */
static bool past_budget(const struct run *r)
{
	return mongo_now_ms() - r->start >= (int64_t)r->timeout_ms + MONGO_CLIENT_SLACK_MS / 2;
}

static int failed(struct run *r, const bson_error_t *e, struct cn_error *err)
{
	if (mongo_pool_gen(r->h) != r->gen)
		return cn_error_set(err, CN_ECANCELED, "the query was canceled: the connector is "
				    "shutting down");
	int st = mongo_error_status(e, past_budget(r));
	if (st == CN_ETIMEOUT)
		return cn_error_set(err, CN_ETIMEOUT, "the query ran longer than its time limit of %u ms "
				    "and was stopped", r->timeout_ms);
	return mongo_error_set(r->h, err, st, st == CN_EUNAVAILABLE ? "cannot reach" : "", e);
}

/* Options of find/aggregate: the guard's command without its name and the
 * parts passed separately, plus the connector's own. */
static bool build_opts(struct run *r, const char *skip1, const char *skip2, bson_t *opts)
{
	bson_iter_t it;
	bson_init(opts);
	if (!bson_iter_init(&it, &r->req->cmd))
		return false;
	while (bson_iter_next(&it)) {
		const char *k = bson_iter_key(&it);
		if (!strcmp(k, skip1) || !strcmp(k, skip2))
			continue;
		if (!bson_append_iter(opts, k, -1, &it))
			return false;
	}
	return BSON_APPEND_INT64(opts, "maxTimeMS", r->timeout_ms) &&
	       BSON_APPEND_INT32(opts, "batchSize", (int32_t)r->want) &&
	       mongo_append_read_concern(r->h, opts);
}

static int read_cursor(struct run *r, mongoc_cursor_t *cur, struct cn_error *err)
{
	const bson_t *doc;
	bson_error_t e;
	int rc = CN_OK;
	while (r->ndocs < r->want && r->bytes < MONGO_READ_MAX_BYTES && mongoc_cursor_next(cur, &doc)) {
		bson_t *copy = bson_copy(doc);
		if (!copy || keep_doc(r, copy)) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			break;
		}
		if (mongo_pool_gen(r->h) != r->gen) {
			rc = cn_error_set(err, CN_ECANCELED, "the query was canceled: the connector is "
					  "shutting down");
			break;
		}
	}
	if (rc == CN_OK && mongoc_cursor_error(cur, &e))
		rc = failed(r, &e, err);
	mongoc_cursor_destroy(cur); /* killCursors when the server still holds it */
	return rc;
}

static int run_find(struct run *r, mongoc_client_t *c, struct cn_error *err)
{
	bson_t opts, filter;
	bson_iter_t it;
	const uint8_t *data = NULL;
	uint32_t len = 0;
	if (bson_iter_init_find(&it, &r->req->cmd, "filter") && BSON_ITER_HOLDS_DOCUMENT(&it))
		bson_iter_document(&it, &len, &data);
	if (data ? !bson_init_static(&filter, data, len) : (bson_init(&filter), false))
		return cn_error_set(err, CN_EINTERNAL, "the guard's filter is not a document");
	if (!build_opts(r, "find", "filter", &opts)) {
		bson_destroy(&opts);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	mongoc_collection_t *coll = mongoc_client_get_collection(c, r->h->db, r->req->collection);
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, r->h->read_prefs);
	int rc = read_cursor(r, cur, err);
	mongoc_collection_destroy(coll);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

static int run_aggregate(struct run *r, mongoc_client_t *c, struct cn_error *err)
{
	bson_t opts, pipeline;
	bson_iter_t it;
	const uint8_t *data = NULL;
	uint32_t len = 0;
	if (!bson_iter_init_find(&it, &r->req->cmd, "pipeline") || !BSON_ITER_HOLDS_ARRAY(&it))
		return cn_error_set(err, CN_EINTERNAL, "the guard's pipeline is not an array");
	bson_iter_array(&it, &len, &data);
	if (!bson_init_static(&pipeline, data, len))
		return cn_error_set(err, CN_EINTERNAL, "the guard's pipeline is not an array");
	if (!build_opts(r, "aggregate", "pipeline", &opts)) {
		bson_destroy(&opts);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	mongoc_collection_t *coll = mongoc_client_get_collection(c, r->h->db, r->req->collection);
	mongoc_cursor_t *cur = mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, &pipeline, &opts,
							   r->h->read_prefs);
	int rc = read_cursor(r, cur, err);
	mongoc_collection_destroy(coll);
	bson_destroy(&opts);
	bson_destroy(&pipeline);
	return rc;
}

/* A reply turned into the documents to show. */
static int reply_docs(struct run *r, const bson_t *reply, struct cn_error *err)
{
	bson_iter_t it;
	if (r->req->explain) {
		static const char *const drop[] = {"ok", "$clusterTime", "operationTime", "serverInfo",
						   "serverParameters"};
		bson_t *doc = bson_new();
		bool ok = doc && bson_iter_init(&it, reply);
		while (ok && bson_iter_next(&it)) {
			const char *k = bson_iter_key(&it);
			bool skip = false;
			for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
				skip = skip || !strcmp(k, drop[i]);
			if (!skip)
				ok = bson_append_iter(doc, k, -1, &it);
		}
		if (!ok) {
			if (doc)
				bson_destroy(doc);
			return cn_error_set(err, CN_ENOMEM, "out of memory");
		}
		return keep_doc(r, doc) ? cn_error_set(err, CN_ENOMEM, "out of memory") : CN_OK;
	}
	if (r->req->command == MG_COUNT) {
		bson_t *doc = bson_new();
		int64_t n = bson_iter_init_find(&it, reply, "n") && BSON_ITER_HOLDS_NUMBER(&it)
				    ? bson_iter_as_int64(&it) : 0;
		if (!doc || !BSON_APPEND_INT64(doc, "n", n) || keep_doc(r, doc))
			return cn_error_set(err, CN_ENOMEM, "out of memory");
		return CN_OK;
	}
	/* distinct: one row per value */
	bson_iter_t vals;
	if (!bson_iter_init_find(&it, reply, "values") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &vals))
		return cn_error_set(err, CN_EQUERY, "the server's distinct reply has no values");
	while (r->ndocs < r->want && r->bytes < MONGO_READ_MAX_BYTES && bson_iter_next(&vals)) {
		bson_t *doc = bson_new();
		if (!doc || !bson_append_iter(doc, r->req->key, -1, &vals) || keep_doc(r, doc))
			return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	return CN_OK;
}

static int run_command(struct run *r, mongoc_client_t *c, struct cn_error *err)
{
	bson_t cmd, opts = BSON_INITIALIZER, reply;
	bson_error_t e;
	bson_copy_to(&r->req->cmd, &cmd);
	bool ok = BSON_APPEND_INT64(&cmd, "maxTimeMS", r->timeout_ms) &&
		  (r->req->explain || mongo_append_read_concern(r->h, &opts));
	int rc = CN_OK;
	if (!ok) {
		bson_init(&reply);
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
	} else if (!mongoc_client_read_command_with_opts(c, r->h->db, &cmd, r->h->read_prefs, &opts,
							 &reply, &e)) {
		rc = failed(r, &e, err);
	} else {
		rc = reply_docs(r, &reply, err);
	}
	bson_destroy(&reply);
	bson_destroy(&cmd);
	bson_destroy(&opts);
	return rc;
}

static uint32_t effective_timeout(const struct mongo_handle *h, const struct cn_query *q)
{
	uint32_t t = q->timeout_ms ? q->timeout_ms : h->timeout_ms;
	if (t == 0)
		t = MONGO_DEFAULT_TIMEOUT_MS;
	return t > MONGO_MAX_TIMEOUT_MS ? MONGO_MAX_TIMEOUT_MS : t;
}

int mongo_exec_query(struct mongo_handle *h, const struct cn_query *q,
		     const struct cn_result_sink *sink, struct cn_error *err)
{
	struct mg_hooks hooks = {h, mongo_hook_is_hidden, mongo_hook_hidden_under};
	struct mg_request req;
	int rc = mg_guard_build(q->text, strlen(q->text), &hooks, q->params, q->nparams, true, &req, err);
	if (rc)
		return rc;
	struct run r = {
		.h = h,
		.req = &req,
		.sink = sink,
		.timeout_ms = effective_timeout(h, q),
		.start = mongo_now_ms(),
		.gen = mongo_pool_gen(h),
		.want = (q->max_rows ? q->max_rows : 1000u) + 1u,
		.origins = !req.explain && req.command != MG_COUNT,
	};
	mongoc_client_t *c;
	uint32_t slot;
	uint32_t wait = r.timeout_ms < MONGO_CHECKOUT_MAX_WAIT_MS ? r.timeout_ms : MONGO_CHECKOUT_MAX_WAIT_MS;
	if ((rc = mongo_pool_checkout(h, wait, r.gen, &slot, &c, err)))
		goto out;
	if (!req.explain && req.command == MG_FIND)
		rc = run_find(&r, c, err);
	else if (!req.explain && req.command == MG_AGGREGATE)
		rc = run_aggregate(&r, c, err);
	else
		rc = run_command(&r, c, err);
	mongo_pool_checkin(h, slot, c);
	if (rc == CN_OK)
		rc = push_rows(&r, err);
out:
	docs_free(&r);
	free(r.cols);
	free(r.slots);
	dstr_free(&r.scratch);
	dstr_free(&r.types);
	mg_request_free(&req);
	return rc;
}
