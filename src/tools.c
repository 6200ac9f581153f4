#include "tools.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "curated.h"
#include "log.h"
#include "metrics.h"
#include "refresh.h"
#include "result_writer.h"

void tool_result_free(struct tool_result *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
	free(r->statement_owned);
	r->statement_owned = NULL;
	r->statement = NULL;
}

void tool_result_error(struct tool_result *out, int http_status, const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);

	struct buf b;
	buf_init(&b, 4096);
	int rc = buf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":", code);
	if (rc == 0)
		rc = buf_json_string(&b, msg, strlen(msg));
	if (rc == 0)
		rc = buf_puts(&b, "}}");
	free(out->body);
	if (rc == 0) {
		out->body = buf_steal(&b, &out->len);
	} else {
		buf_free(&b);
		out->body = strdup("{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}");
		out->len = out->body ? strlen(out->body) : 0;
		http_status = 500;
		code = "internal_error";
	}
	out->http_status = http_status;
	out->error_code = code;
}

/* ---- helpers ---- */

static long elapsed_ms(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000L + (now.tv_nsec - start->tv_nsec) / 1000000L;
}

static double seconds_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* The platform's names for data source types (postgresql, mysql, mongodb, ...). */
static const char *source_type(const char *driver)
{
	if (strcmp(driver, "postgres") == 0)
		return "postgresql";
	return driver; /* sqlite, mongodb */
}

/* Finish a success answer {"result": <json>} from a cJSON tree (consumed). */
static void tool_result_json(struct tool_result *out, cJSON *result, size_t max_bytes)
{
	cJSON *root = cJSON_CreateObject();
	if (!root || !result) {
		cJSON_Delete(root);
		cJSON_Delete(result);
		tool_result_error(out, 500, "internal_error", "out of memory");
		return;
	}
	cJSON_AddItemToObject(root, "result", result);
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!text) {
		tool_result_error(out, 500, "internal_error", "out of memory");
		return;
	}
	size_t n = strlen(text);
	if (max_bytes && n > max_bytes) {
		free(text);
		tool_result_error(out, 400, "result_too_large",
				  "the answer would be %zu bytes, over the %zu byte limit; ask for less", n,
				  max_bytes);
		return;
	}
	free(out->body);
	out->body = text;
	out->len = n;
	out->http_status = 200;
	out->error_code = NULL;
}

static struct source *find_source(struct app *app, const char *name, struct tool_result *out)
{
	struct source *s = sources_find(app->sources, name);
	if (s)
		return s;
	struct buf names;
	buf_init(&names, 1024);
	for (size_t i = 0; i < app->sources->n; i++)
		if (buf_printf(&names, "%s%s", i ? ", " : "", app->sources->items[i]->cfg->name))
			break;
	tool_result_error(out, 400, "unknown_source",
			  "no data source named '%.64s'; available: %s (see list_data_sources)", name,
			  names.data ? names.data : "none");
	buf_free(&names);
	return NULL;
}

/* How a driver status reaches the platform: HTTP status, error code, Retry-After. */
static const struct {
	int rc;
	int http_status;
	const char *code;
	int retry_after;
} status_answers[] = {
	{CN_EREJECTED, 400, "query_rejected", 0},
	{CN_EINVAL, 400, "invalid_parameters", 0},
	{CN_EQUERY, 400, "query_execution_failed", 0},
	{CN_ETIMEOUT, 400, "query_timeout", 0},
	{CN_EBUSY, 429, "rate_limit_exceeded", 1},
	{CN_EUNAVAILABLE, 503, "data_source_disconnected", 5},
	{CN_ECANCELED, 503, "shutting_down", 1},
};

static void tool_result_status(struct tool_result *out, int rc, const struct cn_error *err)
{
	const char *msg = err->message[0] ? err->message : cn_status_message(rc);
	for (size_t i = 0; i < sizeof status_answers / sizeof status_answers[0]; i++) {
		if (status_answers[i].rc == rc) {
			tool_result_error(out, status_answers[i].http_status, status_answers[i].code,
					  "%s%s", msg, status_answers[i].retry_after ? "; retry shortly" : "");
			out->retry_after = status_answers[i].retry_after;
			return;
		}
	}
	tool_result_error(out, 500, "internal_error", "%s", msg);
}

/* The named source, open and introspected, or NULL with out filled. */
static struct source *ready_source(struct app *app, const char *name, struct tool_result *out,
				   void **handle)
{
	struct source *s = find_source(app, name, out);
	if (!s)
		return NULL;
	out->source = s->cfg->name;
	struct cn_error err = {0};
	int rc = source_ready(s, handle, &err);
	if (rc) {
		tool_result_status(out, rc, &err);
		return NULL;
	}
	return s;
}

/* ---- list_data_sources ---- */

static void tool_list_data_sources(struct app *app, const cJSON *params, struct tool_result *out)
{
	(void)params;
	cJSON *result = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(result, "sources");
	for (size_t i = 0; i < app->sources->n; i++) {
		struct source *s = app->sources->items[i];
		void *h;
		struct cn_error err = {0};
		int rc = source_ready(s, &h, &err);
		struct source_status st;
		source_status(s, &st);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", s->cfg->name);
		cJSON_AddStringToObject(o, "type", source_type(s->cfg->driver));
		cJSON_AddStringToObject(o, "description", s->cfg->description ? s->cfg->description : "");
		cJSON_AddStringToObject(o, "status", rc == CN_OK ? "available" : "unavailable");
		if (st.refreshed_at) {
			cJSON_AddNumberToObject(o, "table_count", (double)st.tables);
			refresh_add_time(o, "refreshed_at", st.refreshed_at);
			refresh_add_time(o, "schema_changed_at", st.changed_at);
			cJSON_AddNumberToObject(o, "drift", (double)st.drift);
		}
		if (st.refresh_error[0]) {
			cJSON_AddStringToObject(o, "refresh_error", st.refresh_error);
			refresh_add_time(o, "refresh_failed_at", st.refresh_failed_at);
		}
		cJSON_AddBoolToObject(o, "run_query", s->cfg->allow_run_query);
		cJSON_AddItemToArray(arr, o);
	}
	tool_result_json(out, result, 0);
}

/* ---- describe_schema ---- */

/* The answer's fields after "tables" ("source", "type", "description",
 * then those of extra, which is consumed; extra may be NULL) without the
 * braces, malloc'ed; NULL on out of memory. */
static char *describe_tail(const struct source *s, cJSON *extra)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;
	if (o && cJSON_AddStringToObject(o, "source", s->cfg->name) &&
	    cJSON_AddStringToObject(o, "type", source_type(s->cfg->driver)) &&
	    (!s->cfg->description || !*s->cfg->description ||
	     cJSON_AddStringToObject(o, "description", s->cfg->description))) {
		cJSON *item;
		while (extra && (item = extra->child) != NULL)
			cJSON_AddItemToObject(o, item->string, cJSON_DetachItemViaPointer(extra, item));
		text = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(extra);
	cJSON_Delete(o);
	if (text) {
		size_t n = strlen(text);
		memmove(text, text + 1, n - 2); /* drop the braces */
		text[n - 2] = '\0';
	}
	return text;
}

/* {"result":{"tables":[` entries `],` tail `}} into out. */
static void describe_splice(struct tool_result *out, const char *entries, size_t len, const char *tail,
			    size_t max)
{
	struct buf b;
	buf_init(&b, max ? max : SIZE_MAX);
	int rc = buf_puts(&b, "{\"result\":{\"tables\":[");
	if (!rc)
		rc = buf_append(&b, entries, len);
	if (!rc)
		rc = buf_puts(&b, "],");
	if (!rc)
		rc = buf_puts(&b, tail);
	if (!rc)
		rc = buf_puts(&b, "}}");
	if (rc) {
		buf_free(&b);
		tool_result_error(out, rc == CN_ETOOBIG ? 400 : 500,
				  rc == CN_ETOOBIG ? "result_too_large" : "internal_error",
				  rc == CN_ETOOBIG
				      ? "the answer would be over the %zu byte limit; ask for less"
				      : "out of memory (limit %zu)",
				  max);
		return;
	}
	free(out->body);
	out->body = buf_steal(&b, &out->len);
	out->http_status = 200;
	out->error_code = NULL;
}

/* The index fields of a page: mode, counts, next_page and the hint. */
static cJSON *index_fields(const char *prefix, size_t page, const struct schema_compact_page *pg)
{
	cJSON *o = cJSON_CreateObject();
	char hint[800], showing[64] = "", next[160] = "This is the last page.";
	if (!o)
		return NULL;
	if (pg->count)
		snprintf(showing, sizeof showing, ", tables %zu-%zu", pg->first + 1, pg->first + pg->count);
	if (page < pg->pages)
		snprintf(next, sizeof next,
			 "For the next page, call describe_schema with the same parameters "
			 "and \"page\": %zu.",
			 page + 1);
	if (pg->total == 0)
		snprintf(
		    hint, sizeof hint,
		    "No table name starts with '%.100s'. Call describe_schema without `prefix` for the whole "
		    "index, or search_schema to find tables and columns by topic.",
		    prefix ? prefix : "");
	else
		snprintf(
		    hint, sizeof hint,
		    "%s: page %zu of %zu of the table index%s, sorted by name. %s Call describe_schema with "
		    "`tables` (up to 200 names) for their columns and keys, with `prefix` to list only the "
		    "tables whose name starts with some text, or search_schema to find tables and columns "
		    "by topic.",
		    prefix ? "Tables whose name starts with the prefix"
			   : "The schema is larger than one answer",
		    page, pg->pages, showing, next);
	cJSON_AddStringToObject(o, "mode", "index");
	if (prefix)
		cJSON_AddStringToObject(o, "prefix", prefix);
	cJSON_AddNumberToObject(o, "total_tables", (double)pg->total);
	cJSON_AddNumberToObject(o, "page", (double)page);
	cJSON_AddNumberToObject(o, "pages", (double)pg->pages);
	if (page < pg->pages)
		cJSON_AddNumberToObject(o, "next_page", (double)(page + 1));
	cJSON_AddStringToObject(o, "hint", hint);
	return o;
}

/* One page of the compact index (describe_schema without `tables` on a
 * schema that does not fit, or with `page` / `prefix`). */
static void describe_index(struct tool_result *out, const struct source *s, const struct source_view *v,
			   const char *prefix, size_t page)
{
	size_t max = s->cfg->limits.max_result_bytes;
	if (!v->compact) {
		tool_result_error(out, 500, "internal_error", "the table index of '%s' is not available",
				  s->cfg->name);
		return;
	}
	/* room for the fields around the entries, with the numbers at their widest */
	struct schema_compact_page widest = {
	    .total = 999999, .pages = 999999, .first = 999999, .count = 999999};
	char *tail = describe_tail(s, index_fields(prefix, 999998, &widest));
	size_t around = tail ? strlen(tail) + 32 : 0;
	free(tail);
	if (!around || around >= max) {
		tool_result_error(out, 500, "internal_error", "out of memory");
		return;
	}
	struct buf entries;
	struct schema_compact_page pg;
	buf_init(&entries, max);
	int rc = schema_compact_page(v->compact, prefix, page, max - around, &entries, &pg);
	if (rc == CN_ENOTFOUND) {
		buf_free(&entries);
		tool_result_error(out, 400, "invalid_parameters",
				  "parameters.page: %zu is past the last page of the table index (%zu)", page,
				  pg.pages);
		return;
	}
	tail = rc ? NULL : describe_tail(s, index_fields(prefix, page, &pg));
	if (!tail)
		tool_result_error(out, 500, "internal_error", "out of memory");
	else
		describe_splice(out, entries.data ? entries.data : "", entries.len, tail, max);
	free(tail);
	buf_free(&entries);
}

static void tool_describe_schema(struct app *app, const cJSON *params, struct tool_result *out)
{
	const char *name = cJSON_GetObjectItemCaseSensitive(params, "source")->valuestring;
	const cJSON *tables = cJSON_GetObjectItemCaseSensitive(params, "tables");
	const cJSON *page = cJSON_GetObjectItemCaseSensitive(params, "page");
	const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(params, "prefix");
	void *h;
	if (tables && (page || prefix)) {
		tool_result_error(
		    out, 400, "invalid_parameters",
		    "parameters: give `tables` for full detail, or `page` / `prefix` for the table index, "
		    "not both");
		return;
	}
	struct source *s = ready_source(app, name, out, &h);
	if (!s)
		return;
	struct source_view *v = source_view_acquire(s);
	if (!v) {
		tool_result_error(out, 503, "data_source_disconnected",
				  "the schema of '%s' is not read yet; retry shortly", s->cfg->name);
		out->retry_after = 5;
		return;
	}
	size_t max = s->cfg->limits.max_result_bytes;
	if (page || prefix) {
		describe_index(out, s, v, prefix ? prefix->valuestring : NULL,
			       page ? (size_t)page->valuedouble : 1);
		source_view_release(v);
		return;
	}
	if (!tables) {
		/* the whole schema when it fits, else the first page of its index */
		cJSON *fields = cJSON_CreateObject();
		if (fields)
			cJSON_AddBoolToObject(fields, "truncated", 0);
		char *tail = describe_tail(s, fields);
		size_t whole = v->tables_json && tail ? v->tables_json_len + strlen(tail) + 12 : 0;
		if (whole && whole <= max)
			describe_splice(out, v->tables_json + 11, v->tables_json_len - 13, tail, max);
		else
			describe_index(out, s, v, NULL, 1);
		free(tail);
		source_view_release(v);
		return;
	}
	const char *filter[200];
	size_t nfilter = 0;
	const cJSON *t;
	cJSON_ArrayForEach(t, tables)
		filter[nfilter++] = t->valuestring;
	cJSON *tree = schema_model_to_json(v->model, filter, nfilter);
	source_view_release(v);
	if (!tree) {
		tool_result_error(out, 500, "internal_error", "out of memory");
		return;
	}
	cJSON *tarr = cJSON_GetObjectItemCaseSensitive(tree, "tables");
	cJSON_AddStringToObject(tree, "source", s->cfg->name);
	cJSON_AddStringToObject(tree, "type", source_type(s->cfg->driver));
	if (s->cfg->description && *s->cfg->description)
		cJSON_AddStringToObject(tree, "description", s->cfg->description);
	if (cJSON_GetArraySize(tarr) == 0) {
		cJSON_Delete(tree);
		tool_result_error(out, 400, "unknown_table",
				  "none of the requested tables exist in '%s'; call describe_schema without "
				  "`tables` to list them, or search_schema to find them by topic",
				  s->cfg->name);
		return;
	}
	/* Keep the answer under the byte cap: drop tables from the end and say so. */
	cJSON_AddBoolToObject(tree, "truncated", 0);
	for (;;) {
		char *text = cJSON_PrintUnformatted(tree);
		size_t n = text ? strlen(text) + 12 : 0; /* {"result":} */
		free(text);
		if (!text || n <= max || cJSON_GetArraySize(tarr) <= 1)
			break;
		int keep = cJSON_GetArraySize(tarr);
		keep = (int)((double)keep * (double)max / (double)n * 0.95);
		if (keep < 1)
			keep = 1;
		while (cJSON_GetArraySize(tarr) > keep)
			cJSON_DeleteItemFromArray(tarr, cJSON_GetArraySize(tarr) - 1);
		cJSON_ReplaceItemInObjectCaseSensitive(tree, "truncated", cJSON_CreateTrue());
		if (!cJSON_GetObjectItemCaseSensitive(tree, "hint"))
			cJSON_AddStringToObject(
			    tree, "hint",
			    "the tables asked for do not fit one answer: call describe_schema "
			    "again with the tables that were left out");
	}
	tool_result_json(out, tree, max);
}

/* ---- search_schema ---- */

#define SEARCH_DEFAULT_LIMIT 10
#define SEARCH_MAX_LIMIT 50

struct found {
	struct search_hit hit;
	const struct source *source;
};

static int found_cmp(const void *a, const void *b)
{
	const struct found *x = a, *y = b;
	return x->hit.score < y->hit.score ? 1 : x->hit.score > y->hit.score ? -1 : 0;
}

static cJSON *match_json(const struct found *f)
{
	const struct sm_table *t = f->hit.table;
	const struct sm_column *c = f->hit.column;
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	const char *desc = c ? c->description : t->description;
	char *const *syn = c ? c->synonyms : t->synonyms;
	size_t nsyn = c ? c->nsynonyms : t->nsynonyms;
	cJSON_AddStringToObject(o, "source", f->source->cfg->name);
	if (t->schema)
		cJSON_AddStringToObject(o, "schema", t->schema);
	cJSON_AddStringToObject(o, "table", t->name);
	if (c) {
		cJSON_AddStringToObject(o, "column", c->name);
		cJSON_AddStringToObject(o, "kind", "column");
		cJSON_AddStringToObject(o, "type", c->type ? c->type : "");
	} else {
		cJSON_AddStringToObject(o, "kind", schema_kind_name(t->kind));
	}
	if (desc && *desc)
		cJSON_AddStringToObject(o, "description", desc);
	if (nsyn) {
		cJSON *arr = cJSON_AddArrayToObject(o, "synonyms");
		for (size_t i = 0; arr && i < nsyn; i++)
			cJSON_AddItemToArray(arr, cJSON_CreateString(syn[i]));
	}
	cJSON_AddNumberToObject(o, "score", round(f->hit.score * 1000) / 1000);
	return o;
}

static void tool_search_schema(struct app *app, const cJSON *params, struct tool_result *out)
{
	const cJSON *src = cJSON_GetObjectItemCaseSensitive(params, "source");
	const char *query = cJSON_GetObjectItemCaseSensitive(params, "query")->valuestring;
	const cJSON *lim = cJSON_GetObjectItemCaseSensitive(params, "limit");
	size_t limit = lim ? (size_t)lim->valuedouble : SEARCH_DEFAULT_LIMIT;
	struct source_view *views[CONFIG_MAX_SOURCES];
	struct source *srcs[CONFIG_MAX_SOURCES];
	size_t nviews = 0, max = 0;
	cJSON *unavailable = cJSON_CreateArray();
	char probe[SEARCH_MAX_WORDS * (SEARCH_MAX_WORD + 8) + 1];
	if (schema_search_fts_query(query, probe, sizeof probe) != CN_OK) {
		cJSON_Delete(unavailable);
		tool_result_error(
		    out, 400, "invalid_parameters",
		    "parameters.query: has no word to search for; write words such as \"signup date\"");
		return;
	}
	if (cJSON_IsString(src)) {
		void *h;
		struct source *s = ready_source(app, src->valuestring, out, &h);
		if (!s) {
			cJSON_Delete(unavailable);
			return;
		}
		srcs[0] = s;
		views[nviews++] = source_view_acquire(s);
	} else {
		for (size_t i = 0; i < app->sources->n && nviews < CONFIG_MAX_SOURCES; i++) {
			srcs[nviews] = app->sources->items[i];
			views[nviews] = source_view_acquire(srcs[nviews]);
			if (views[nviews])
				nviews++;
			else
				cJSON_AddItemToArray(unavailable,
						     cJSON_CreateString(app->sources->items[i]->cfg->name));
		}
	}
	struct found *all = calloc(nviews * limit + 1, sizeof *all);
	size_t nall = 0;
	int rc = all ? CN_OK : CN_ENOMEM;
	struct cn_error err = {0};
	struct search_hit *hits = calloc(limit, sizeof *hits);
	if (!hits)
		rc = CN_ENOMEM;
	for (size_t i = 0; i < nviews && rc == CN_OK; i++) {
		size_t n = 0;
		size_t cap = srcs[i]->cfg->limits.max_result_bytes;
		if (!max || cap < max)
			max = cap;
		if (!views[i] || !views[i]->search)
			continue;
		rc = schema_search_query(views[i]->search, query, limit, hits, &n, &err);
		for (size_t k = 0; k < n && rc == CN_OK; k++)
			all[nall++] = (struct found){hits[k], srcs[i]};
	}
	free(hits);
	if (rc) {
		tool_result_error(out, 500, "internal_error", "%s",
				  err.message[0] ? err.message : "out of memory");
	} else {
		qsort(all, nall, sizeof *all, found_cmp);
		if (nall > limit)
			nall = limit;
		cJSON *result = cJSON_CreateObject();
		cJSON_AddStringToObject(result, "query", query);
		cJSON *matches = cJSON_AddArrayToObject(result, "matches");
		for (size_t i = 0; i < nall; i++)
			cJSON_AddItemToArray(matches, match_json(&all[i]));
		if (cJSON_GetArraySize(unavailable) > 0)
			cJSON_AddItemToObject(result, "unavailable_sources", unavailable);
		else
			cJSON_Delete(unavailable);
		unavailable = NULL;
		cJSON_AddStringToObject(
		    result, "hint",
		    nall ? "Call describe_schema with `tables` for the columns, keys and "
			   "references of a table; run_query reads the data."
			 : "Nothing matched: try other or fewer words, or describe_schema for "
			   "the list of tables.");
		/* keep under the byte cap: drop matches from the end */
		bool truncated = false;
		for (;;) {
			char *text = cJSON_PrintUnformatted(result);
			size_t n = text ? strlen(text) + 12 : 0;
			free(text);
			if (!text || !max || n <= max || cJSON_GetArraySize(matches) == 0)
				break;
			cJSON_DeleteItemFromArray(matches, cJSON_GetArraySize(matches) - 1);
			truncated = true;
		}
		cJSON_AddBoolToObject(result, "truncated", truncated);
		tool_result_json(out, result, max);
	}
	cJSON_Delete(unavailable);
	free(all);
	for (size_t i = 0; i < nviews; i++)
		source_view_release(views[i]);
}

/* ---- run_query and curated tools: one statement through the guard ---- */

/* What the guard said of a curated tool's statement: logged when it
 * changes, so a refusal is seen once per change, not once per call. */
static void curated_verdict(struct curated_tool *c, const struct config *cfg, int verdict, const char *why)
{
	int was = atomic_exchange(&c->verdict, verdict);
	if (was == verdict)
		return;
	if (verdict == CURATED_REFUSED)
		log_error("%s:%d: tools[%zu].statement: the guard of source '%s' refuses it: %s; tool "
			  "'%s' answers query_rejected until the statement is fixed",
			  cfg ? cfg->path : "config", c->cfg->statement_line, c->index, c->cfg->source, why,
			  c->cfg->name);
	else if (was != CURATED_UNCHECKED || verdict != CURATED_ACCEPTED)
		log_info("tools[%zu] '%s': the guard of source '%s' accepts its statement now", c->index,
			 c->cfg->name, c->cfg->source);
}

/* Run text on source through its guard, caps and masking. curated: the
 * curated tool it belongs to (its refusals are the operator's to fix), or
 * NULL for run_query. */
static void run_statement(struct app *app, const char *source, const char *sql,
			  const struct cn_value *params, size_t nparams, uint32_t max_rows,
			  struct curated_tool *curated, struct tool_result *out)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	out->statement = sql;
	void *h;
	struct source *s = ready_source(app, source, out, &h);
	if (!s)
		return;
	struct cn_error err = {0};
	const struct cn_driver *drv = s->module->api;
	int rc = drv->check(h, sql, &err);
	if (curated && rc == CN_EREJECTED) {
		curated_verdict(curated, app->cfg, CURATED_REFUSED, err.message);
		tool_result_error(out, 400, "query_rejected",
				  "this curated tool cannot run: the guard of source '%s' refuses its "
				  "statement (%s); the connector's operator must fix it", s->cfg->name,
				  err.message);
		return;
	}
	if (rc) {
		if (rc == CN_EREJECTED)
			metrics_rejection(s->cfg->name, err.reject);
		tool_result_status(out, rc, &err);
		return;
	}
	if (curated)
		curated_verdict(curated, app->cfg, CURATED_ACCEPTED, NULL);
	const struct config_limits *lim = &s->cfg->limits;
	struct result_writer_opts opts = {
		.max_rows = max_rows && max_rows < lim->max_rows ? max_rows : lim->max_rows,
		.max_bytes = lim->max_result_bytes,
		.hidden_ctx = s,
		.is_hidden = source_is_hidden,
	};
	struct result_writer *w = result_writer_new(&opts);
	if (!w) {
		tool_result_error(out, 500, "internal_error", "out of memory");
		return;
	}
	struct cn_query q = {
		.text = sql,
		.params = params,
		.nparams = nparams,
		/* a call that may be answered 202 runs on its own thread, with the longer budget */
		.timeout_ms = app->async && lim->async_timeout_ms ? lim->async_timeout_ms : lim->timeout_ms,
		.max_rows = opts.max_rows,
	};
	struct timespec db_start;
	clock_gettime(CLOCK_MONOTONIC, &db_start);
	rc = drv->execute(h, &q, result_writer_sink(w), &err);
	metrics_query(s->cfg->name, seconds_since(&db_start),
		      rc == CN_OK ? result_writer_row_count(w) : 0);
	if (rc == CN_EREJECTED) /* a read-only layer past the guard */
		metrics_rejection(s->cfg->name, err.reject);
	if (rc == CN_OK) {
		char *body;
		size_t len;
		rc = result_writer_finish(w, elapsed_ms(&start), &body, &len);
		if (rc == CN_OK) {
			free(out->body);
			out->body = body;
			out->len = len;
			out->rows = result_writer_row_count(w);
			out->http_status = 200;
			out->error_code = NULL;
		} else {
			tool_result_error(out, 400, "result_too_large",
					  "the result's columns alone exceed the %u byte limit; select fewer columns",
					  lim->max_result_bytes);
		}
	} else {
		tool_result_status(out, rc, &err);
	}
	result_writer_free(w);
}

void tools_run_query(struct app *app, const char *source, const char *sql,
		     const struct cn_value *params, size_t nparams, uint32_t max_rows,
		     struct tool_result *out)
{
	struct source *s = sources_find(app->sources, source);
	if (s && !s->cfg->allow_run_query) {
		out->source = s->cfg->name;
		tool_result_error(out, 400, "run_query_disabled",
				  "ad-hoc queries are turned off for source '%s'%s", s->cfg->name,
				  app->catalog && app->catalog->ncurated
				      ? "; its curated tools answer the questions it is open for"
				      : "");
		return;
	}
	run_statement(app, source, sql, params, nparams, max_rows, NULL, out);
}

static int param_from_json(const cJSON *j, struct cn_value *v)
{
	if (cJSON_IsNull(j)) {
		v->kind = CN_VAL_NULL;
	} else if (cJSON_IsBool(j)) {
		v->kind = CN_VAL_BOOL;
		v->u.b = cJSON_IsTrue(j);
	} else if (cJSON_IsNumber(j)) {
		double d = j->valuedouble;
		if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
			v->kind = CN_VAL_INT;
			v->u.i = (int64_t)d;
		} else {
			v->kind = CN_VAL_DOUBLE;
			v->u.d = d;
		}
	} else if (cJSON_IsString(j)) {
		v->kind = CN_VAL_TEXT;
		v->u.s.ptr = j->valuestring;
		v->u.s.len = strlen(j->valuestring);
	} else {
		return CN_EINVAL;
	}
	return CN_OK;
}

/* The query as text: SQL sources take a string; sources without CN_CAP_SQL
 * (MongoDB) take a command document, as an object or as its JSON text. An
 * object is printed back to JSON (cJSON keeps duplicate keys, so the
 * driver's strict reader still sees them). *owned: text to free. */
static const char *query_text(struct app *app, const char *source, const cJSON *query, char **owned,
			      struct tool_result *out)
{
	*owned = NULL;
	if (cJSON_IsString(query))
		return query->valuestring;
	struct source *s = sources_find(app->sources, source);
	if (s && (s->module->api->caps & CN_CAP_SQL)) {
		out->source = s->cfg->name;
		tool_result_error(out, 400, "invalid_parameters",
				  "parameters.query: source '%s' takes one SQL statement as a string, "
				  "not an object", s->cfg->name);
		return NULL;
	}
	if (!(*owned = cJSON_PrintUnformatted(query)))
		tool_result_error(out, 500, "internal_error", "out of memory");
	return *owned;
}

static void tool_run_query(struct app *app, const cJSON *params, struct tool_result *out)
{
	const char *source = cJSON_GetObjectItemCaseSensitive(params, "source")->valuestring;
	char *owned;
	const char *sql = query_text(app, source, cJSON_GetObjectItemCaseSensitive(params, "query"),
				     &owned, out);
	if (!sql)
		return;
	out->statement = sql;
	out->statement_owned = owned; /* the audit log reads it after the call */
	const cJSON *plist = cJSON_GetObjectItemCaseSensitive(params, "parameters");
	const cJSON *mr = cJSON_GetObjectItemCaseSensitive(params, "max_rows");
	struct cn_value values[TOOLS_MAX_PARAMS];
	size_t n = 0;
	const cJSON *p;
	cJSON_ArrayForEach(p, plist) {
		if (n == TOOLS_MAX_PARAMS || param_from_json(p, &values[n])) {
			tool_result_error(out, 400, "invalid_parameters",
					  "parameters[%zu]: must be a string, number, boolean or null", n);
			return;
		}
		n++;
	}
	tools_run_query(app, source, sql, values, n, mr ? (uint32_t)mr->valuedouble : 0, out);
}

const struct tool_def tools_catalog[] = {
	{"list_data_sources", tool_list_data_sources,
	 "List the databases this connector can query: name, type, description, status and table count.",
	 "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}"},
	{"describe_schema", tool_describe_schema,
	 "Describe the tables of one data source: columns with types, nullability, keys, references, "
	 "descriptions, synonyms and row estimates. Pass `tables` to describe only some tables. When a "
	 "schema is too large for one answer, the answer is a paged index of its tables (name, kind, "
	 "description, column count; `mode` is \"index\"): follow `next_page`, narrow it with `prefix`, "
	 "then ask for the tables you need with `tables`.",
	 "{\"type\":\"object\",\"required\":[\"source\"],\"additionalProperties\":false,"
	 "\"properties\":{"
	 "\"source\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64,"
	 "\"description\":\"Data source name from list_data_sources\"},"
	 "\"tables\":{\"type\":\"array\",\"maxItems\":200,"
	 "\"items\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":256},"
	 "\"description\":\"Only these tables (name or schema.name), with every detail\"},"
	 "\"page\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000000,"
	 "\"description\":\"Page of the table index (see next_page in the previous answer)\"},"
	 "\"prefix\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":256,"
	 "\"description\":\"Index only the tables whose name or schema.name starts with this "
	 "(case-insensitive)\"}}}"},
	{"search_schema", tool_search_schema,
	 "Find tables and columns by what they mean: searches names, synonyms, descriptions and database "
	 "comments (word stems and prefixes: \"signup\" finds a column described as the signup date) and "
	 "answers the best matches first, with their source, table, column, type and description. Use it "
	 "before describe_schema on a large database, or when the names do not say what you look for.",
	 "{\"type\":\"object\",\"required\":[\"query\"],\"additionalProperties\":false,"
	 "\"properties\":{"
	 "\"query\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":500,"
	 "\"description\":\"Words to look for, e.g. \\\"customer signup date\\\"\"},"
	 "\"source\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64,"
	 "\"description\":\"Only this data source (default: all of them)\"},"
	 "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":50,"
	 "\"description\":\"At most this many matches (default 10)\"}}}"},
	{"run_query", tool_run_query,
	 "Run one read-only query on a data source. SQL sources (postgresql, sqlite): `query` is one "
	 "SELECT with $1, $2, ... placeholders. MongoDB sources: `query` is one read command as a JSON "
	 "object, with {\"$param\": N} where parameter N goes, for example "
	 "{\"find\": \"orders\", \"filter\": {\"status\": {\"$param\": 1}}, "
	 "\"projection\": {\"total\": 1}, \"sort\": {\"placed_at\": -1}, \"limit\": 20}; "
	 "{\"aggregate\": \"orders\", \"pipeline\": [{\"$match\": {\"status\": \"shipped\"}}, "
	 "{\"$group\": {\"_id\": \"$customer_id\", \"n\": {\"$sum\": 1}}}]}; "
	 "{\"count\": \"orders\", \"query\": {\"total\": {\"$gt\": {\"$param\": 1}}}}; "
	 "{\"distinct\": \"orders\", \"key\": \"status\"}; dates and ids as "
	 "{\"$date\": \"2024-05-01T00:00:00Z\"} and {\"$oid\": \"<24 hex digits>\"} "
	 "(also around a $param). Pass values in `parameters`; never put them into the query. "
	 "Results are capped in rows and bytes; `truncated` says when rows were left out.",
	 "{\"type\":\"object\",\"required\":[\"source\",\"query\"],\"additionalProperties\":false,"
	 "\"properties\":{"
	 "\"source\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64,"
	 "\"description\":\"Data source name from list_data_sources\"},"
	 "\"query\":{\"type\":[\"string\",\"object\"],\"minLength\":1,\"maxLength\":65536,"
	 "\"description\":\"SQL sources: one SELECT statement with $1..$n placeholders (a string). "
	 "MongoDB sources: one find, aggregate, count or distinct command document (an object, or its "
	 "JSON as a string) with {\\\"$param\\\": N} where parameter N goes\"},"
	 "\"parameters\":{\"type\":\"array\",\"maxItems\":100,"
	 "\"items\":{\"type\":[\"string\",\"number\",\"boolean\",\"null\"]},"
	 "\"description\":\"Values for $1..$n (SQL) or {\\\"$param\\\": N} (MongoDB), in order\"},"
	 "\"max_rows\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100000,"
	 "\"description\":\"At most this many rows (the source's own cap still applies)\"}}}"},
	{NULL, NULL, NULL, NULL},
};

#define NTOOLS (sizeof tools_catalog / sizeof tools_catalog[0] - 1)

/* The built-in tools as catalog entries, their schemas parsed once. */
static struct tool_entry builtin_entries[NTOOLS];
static cJSON *builtin_schemas[NTOOLS];
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

static void builtin_parse(void)
{
	for (size_t i = 0; i < NTOOLS; i++) {
		builtin_schemas[i] = cJSON_Parse(tools_catalog[i].parameters_schema);
		builtin_entries[i] = (struct tool_entry){
			.name = tools_catalog[i].name,
			.registered_name = NULL,
			.description = tools_catalog[i].description,
			.schema = builtin_schemas[i],
			.builtin = &tools_catalog[i],
			.offered = true,
		};
	}
}

const struct tool_def *tools_find(const char *name)
{
	for (size_t i = 0; i < NTOOLS; i++)
		if (strcmp(tools_catalog[i].name, name) == 0)
			return &tools_catalog[i];
	return NULL;
}

bool tools_may_run_long(const struct app *app, const struct tool_entry *e, const cJSON *params)
{
	const char *source = NULL;
	if (e->curated) {
		source = e->curated->cfg->source;
	} else if (e->builtin && strcmp(e->builtin->name, "run_query") == 0 && params) {
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(params, "source");
		source = cJSON_IsString(name) ? name->valuestring : NULL;
	}
	struct source *s = source ? sources_find(app->sources, source) : NULL;
	return s && s->cfg->limits.async_timeout_ms > 0 && (e->curated || s->cfg->allow_run_query);
}

/* ---- curated tools ---- */

static void tool_curated(struct app *app, const struct tool_entry *e, const cJSON *params,
			 struct tool_result *out)
{
	const struct config_tool *t = e->curated->cfg;
	struct cn_value values[CONFIG_MAX_TOOL_PARAMS];
	char msg[300];
	if (curated_bind(t, params, values, msg, sizeof msg)) {
		out->source = t->source;
		tool_result_error(out, 400, "invalid_parameters", "%s", msg);
		return;
	}
	run_statement(app, t->source, t->statement, values, t->nparams, 0, e->curated, out);
}

void tools_call_entry(struct app *app, const struct tool_entry *e, const cJSON *params,
		      struct tool_result *out)
{
	memset(out, 0, sizeof *out);
	cJSON *empty = NULL;
	if (!params)
		params = empty = cJSON_CreateObject();
	char msg[300];
	if (!e->schema || !params) {
		tool_result_error(out, 500, "internal_error", "out of memory");
		goto out;
	}
	if (json_schema_check(e->schema, params, "parameters", msg, sizeof msg)) {
		tool_result_error(out, 400, "invalid_parameters", "%s", msg);
		goto out;
	}
	if (e->curated)
		tool_curated(app, e, params, out);
	else
		e->builtin->run(app, params, out);
out:
	cJSON_Delete(empty);
}

void tools_call(struct app *app, const struct tool_def *tool, const cJSON *params,
		struct tool_result *out)
{
	pthread_once(&builtin_once, builtin_parse);
	tools_call_entry(app, &builtin_entries[tool - tools_catalog], params, out);
}

/* ---- the catalog ---- */

void tool_catalog_free(struct tool_catalog *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->items[i].registered_name);
		cJSON_Delete(c->schemas[i]);
	}
	free(c->items);
	free(c->schemas);
	free(c->curated);
	free(c);
}

/* A statement for the wrong kind of source: a document where SQL is read, or SQL where a
 * document is. */
static int statement_fits(const struct config *cfg, const struct config_tool *t, size_t i,
			  struct source_set *set, struct cn_error *err)
{
	struct source *s = set ? sources_find(set, t->source) : NULL;
	if (!s)
		return CN_OK;
	bool sql = s->module->api->caps & CN_CAP_SQL;
	if (sql && t->statement_is_document)
		return cn_error_set(err, CN_ECONFIG, "%s:%d: tools[%zu].statement: source '%s' (%s) takes "
				    "one SQL statement with $1..$n, not a command document", cfg->path,
				    t->statement_line, i, s->cfg->name, s->cfg->driver);
	if (!sql && !t->statement_is_document)
		return cn_error_set(err, CN_ECONFIG, "%s:%d: tools[%zu].statement: source '%s' (%s) takes "
				    "a command document such as {find: orders, filter: {status: {$param: "
				    "1}}}, not SQL", cfg->path, t->statement_line, i, s->cfg->name,
				    s->cfg->driver);
	return CN_OK;
}

int tool_catalog_new(const struct config *cfg, struct source_set *set, struct tool_catalog **out,
		     struct cn_error *err)
{
	pthread_once(&builtin_once, builtin_parse);
	*out = NULL;
	struct tool_catalog *c = calloc(1, sizeof *c);
	size_t max = NTOOLS + cfg->ntools;
	if (c) {
		c->cfg = cfg;
		c->items = calloc(max, sizeof *c->items);
		c->schemas = calloc(max, sizeof *c->schemas);
		c->curated = calloc(cfg->ntools ? cfg->ntools : 1, sizeof *c->curated);
	}
	if (!c || !c->items || !c->schemas || !c->curated) {
		tool_catalog_free(c);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	bool adhoc = false;
	for (size_t i = 0; i < cfg->nsources; i++)
		adhoc |= cfg->sources[i].allow_run_query;
	int rc = CN_OK;
	for (size_t i = 0; rc == CN_OK && i < NTOOLS; i++) {
		struct tool_entry *e = &c->items[c->n];
		*e = builtin_entries[i];
		/* run_query is not offered when no source takes ad-hoc queries */
		e->offered = adhoc || strcmp(e->name, "run_query") != 0;
		c->schemas[c->n] = cJSON_Duplicate(builtin_schemas[i], true);
		e->schema = c->schemas[c->n];
		if (asprintf(&e->registered_name, "%s%s", cfg->tool_prefix, e->name) < 0)
			e->registered_name = NULL;
		c->n++;
		if (!e->schema || !e->registered_name)
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	for (size_t i = 0; rc == CN_OK && i < cfg->ntools; i++) {
		const struct config_tool *t = &cfg->tools[i];
		rc = statement_fits(cfg, t, i, set, err);
		if (rc)
			break;
		struct curated_tool *ct = &c->curated[c->ncurated++];
		ct->cfg = t;
		ct->index = i;
		atomic_init(&ct->verdict, CURATED_UNCHECKED);
		struct tool_entry *e = &c->items[c->n];
		c->schemas[c->n] = curated_tool_schema(t);
		*e = (struct tool_entry){.name = t->name, .description = t->description,
					 .schema = c->schemas[c->n], .curated = ct, .offered = true};
		if (asprintf(&e->registered_name, "%s%s", cfg->tool_prefix, t->name) < 0)
			e->registered_name = NULL;
		c->n++;
		if (!e->schema || !e->registered_name)
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	if (rc) {
		tool_catalog_free(c);
		return rc;
	}
	*out = c;
	return CN_OK;
}

const struct tool_entry *tool_catalog_find(const struct tool_catalog *c, const char *name)
{
	for (size_t i = 0; c && i < c->n; i++)
		if (strcmp(c->items[i].registered_name, name) == 0)
			return &c->items[i];
	for (size_t i = 0; c && i < c->n; i++)
		if (strcmp(c->items[i].name, name) == 0)
			return &c->items[i];
	return NULL;
}

const struct tool_entry *tools_resolve(const struct app *app, const char *name)
{
	if (app->catalog)
		return tool_catalog_find(app->catalog, name);
	pthread_once(&builtin_once, builtin_parse);
	for (size_t i = 0; i < NTOOLS; i++)
		if (strcmp(builtin_entries[i].name, name) == 0)
			return &builtin_entries[i];
	return NULL;
}

int tool_catalog_check(struct tool_catalog *c, struct source_set *set, struct cn_error *err)
{
	for (size_t i = 0; i < c->ncurated; i++) {
		struct curated_tool *ct = &c->curated[i];
		const struct config_tool *t = ct->cfg;
		struct source *s = sources_find(set, t->source);
		void *h;
		struct cn_error e = {0};
		if (!s)
			continue;
		int rc = source_ready(s, &h, &e);
		if (rc == CN_OK)
			rc = s->module->api->check(h, t->statement, &e);
		if (rc == CN_EREJECTED)
			return cn_error_set(err, CN_ECONFIG,
					    "%s:%d: tools[%zu].statement: the guard of source '%s' refuses it: %s",
					    c->cfg->path, t->statement_line, ct->index, t->source, e.message);
		if (rc == CN_OK) {
			atomic_store(&ct->verdict, CURATED_ACCEPTED);
			continue;
		}
		log_warn("tools[%zu] '%s': its statement is checked at first use: source '%s' cannot be "
			 "asked now (%s)", ct->index, t->name, t->source, e.message);
	}
	return CN_OK;
}

cJSON *tool_catalog_to_json(const struct tool_catalog *c, const char *public_url)
{
	cJSON *arr = cJSON_CreateArray();
	size_t ul = public_url ? strlen(public_url) : 0;
	while (ul && public_url[ul - 1] == '/')
		ul--;
	for (size_t i = 0; arr && i < c->n; i++) {
		const struct tool_entry *e = &c->items[i];
		if (!e->offered)
			continue;
		cJSON *o = cJSON_CreateObject();
		if (!o || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			goto fail;
		}
		if (!cJSON_AddStringToObject(o, "name", e->registered_name) ||
		    !cJSON_AddStringToObject(o, "description", e->description))
			goto fail;
		cJSON *schema = cJSON_Duplicate(e->schema, true);
		if (!schema || !cJSON_AddItemToObject(o, "parameters", schema)) {
			cJSON_Delete(schema);
			goto fail;
		}
		if (ul) {
			char *url = NULL;
			bool ok = asprintf(&url, "%.*s/v1/tools/%s", (int)ul, public_url,
					   e->registered_name) > 0 &&
				  cJSON_AddStringToObject(o, "callback_url", url);
			free(url);
			if (!ok)
				goto fail;
		}
	}
	return arr;
fail:
	cJSON_Delete(arr);
	return NULL;
}
