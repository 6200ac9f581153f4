#include "tools.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "log.h"
#include "result_writer.h"

void tool_result_free(struct tool_result *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
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

/* ---- a JSON Schema subset ---- */

static int type_matches(const char *type, const cJSON *v)
{
	if (strcmp(type, "object") == 0)
		return cJSON_IsObject(v);
	if (strcmp(type, "array") == 0)
		return cJSON_IsArray(v);
	if (strcmp(type, "string") == 0)
		return cJSON_IsString(v);
	if (strcmp(type, "boolean") == 0)
		return cJSON_IsBool(v);
	if (strcmp(type, "null") == 0)
		return cJSON_IsNull(v);
	if (strcmp(type, "number") == 0)
		return cJSON_IsNumber(v) && isfinite(v->valuedouble);
	if (strcmp(type, "integer") == 0)
		return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble);
	return 0;
}

static const char *json_type_name(const cJSON *v)
{
	if (cJSON_IsObject(v)) return "an object";
	if (cJSON_IsArray(v)) return "an array";
	if (cJSON_IsString(v)) return "a string";
	if (cJSON_IsBool(v)) return "a boolean";
	if (cJSON_IsNull(v)) return "null";
	if (cJSON_IsNumber(v)) return "a number";
	return "invalid";
}

int json_schema_check(const cJSON *schema, const cJSON *value, const char *path, char *message,
		      size_t len)
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
	if (cJSON_IsString(type) && !type_matches(type->valuestring, value)) {
		snprintf(message, len, "%s: must be %s %s, not %s", path,
			 strchr("aeiou", type->valuestring[0]) ? "an" : "a", type->valuestring,
			 json_type_name(value));
		return CN_EINVAL;
	}
	if (cJSON_IsArray(type)) {
		int ok = 0;
		const cJSON *t;
		cJSON_ArrayForEach(t, type)
			ok |= cJSON_IsString(t) && type_matches(t->valuestring, value);
		if (!ok) {
			snprintf(message, len, "%s: %s is not allowed here", path, json_type_name(value));
			return CN_EINVAL;
		}
	}
	const cJSON *kw;
	if (cJSON_IsNumber(value)) {
		if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "minimum")) && value->valuedouble < kw->valuedouble) {
			snprintf(message, len, "%s: must be at least %g", path, kw->valuedouble);
			return CN_EINVAL;
		}
		if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "maximum")) && value->valuedouble > kw->valuedouble) {
			snprintf(message, len, "%s: must be at most %g", path, kw->valuedouble);
			return CN_EINVAL;
		}
	}
	if (cJSON_IsString(value)) {
		size_t n = strlen(value->valuestring);
		if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "minLength")) && (double)n < kw->valuedouble) {
			snprintf(message, len, "%s: must not be empty", path);
			return CN_EINVAL;
		}
		if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "maxLength")) && (double)n > kw->valuedouble) {
			snprintf(message, len, "%s: is longer than %g characters", path, kw->valuedouble);
			return CN_EINVAL;
		}
	}
	if (cJSON_IsArray(value)) {
		int n = cJSON_GetArraySize(value);
		if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "maxItems")) && (double)n > kw->valuedouble) {
			snprintf(message, len, "%s: has more than %g items", path, kw->valuedouble);
			return CN_EINVAL;
		}
		const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
		if (items) {
			int i = 0;
			const cJSON *it;
			cJSON_ArrayForEach(it, value) {
				char sub[128];
				snprintf(sub, sizeof sub, "%s[%d]", path, i++);
				if (json_schema_check(items, it, sub, message, len))
					return CN_EINVAL;
			}
		}
	}
	if (cJSON_IsObject(value)) {
		const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
		const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
		const cJSON *r;
		cJSON_ArrayForEach(r, req) {
			if (cJSON_IsString(r) && !cJSON_GetObjectItemCaseSensitive(value, r->valuestring)) {
				snprintf(message, len, "%s.%s: is required", path, r->valuestring);
				return CN_EINVAL;
			}
		}
		const cJSON *addl = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
		const cJSON *member;
		cJSON_ArrayForEach(member, value) {
			char sub[128];
			snprintf(sub, sizeof sub, "%s.%.60s", path, member->string ? member->string : "");
			const cJSON *ps = props ? cJSON_GetObjectItemCaseSensitive(props, member->string) : NULL;
			if (!ps) {
				if (cJSON_IsFalse(addl)) {
					snprintf(message, len, "%s: unknown parameter", sub);
					return CN_EINVAL;
				}
				continue;
			}
			if (json_schema_check(ps, member, sub, message, len))
				return CN_EINVAL;
		}
	}
	return CN_OK;
}

/* ---- helpers ---- */

static long elapsed_ms(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000L + (now.tv_nsec - start->tv_nsec) / 1000000L;
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
		if (buf_printf(&names, "%s%s", i ? ", " : "", app->sources->items[i].cfg->name))
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
		struct source *s = &app->sources->items[i];
		void *h;
		struct cn_error err = {0};
		int rc = source_ready(s, &h, &err);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", s->cfg->name);
		cJSON_AddStringToObject(o, "type", source_type(s->cfg->driver));
		cJSON_AddStringToObject(o, "description", s->cfg->description ? s->cfg->description : "");
		cJSON_AddStringToObject(o, "status", rc == CN_OK ? "available" : "unavailable");
		pthread_mutex_lock(&s->lock);
		if (s->model)
			cJSON_AddNumberToObject(o, "table_count", (double)schema_model_visible_tables(s->model));
		pthread_mutex_unlock(&s->lock);
		cJSON_AddBoolToObject(o, "run_query", s->cfg->allow_run_query);
		cJSON_AddItemToArray(arr, o);
	}
	tool_result_json(out, result, 0);
}

/* ---- describe_schema ---- */

static void tool_describe_schema(struct app *app, const cJSON *params, struct tool_result *out)
{
	const char *name = cJSON_GetObjectItemCaseSensitive(params, "source")->valuestring;
	void *h;
	struct source *s = ready_source(app, name, out, &h);
	if (!s)
		return;
	const char *filter[200];
	size_t nfilter = 0;
	const cJSON *t;
	cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(params, "tables"))
		filter[nfilter++] = t->valuestring;

	pthread_mutex_lock(&s->lock);
	cJSON *tree = schema_model_to_json(s->model, filter, nfilter);
	pthread_mutex_unlock(&s->lock);
	if (!tree) {
		tool_result_error(out, 500, "internal_error", "out of memory");
		return;
	}
	cJSON *tables = cJSON_GetObjectItemCaseSensitive(tree, "tables");
	cJSON_AddStringToObject(tree, "source", s->cfg->name);
	cJSON_AddStringToObject(tree, "type", source_type(s->cfg->driver));
	if (s->cfg->description && *s->cfg->description)
		cJSON_AddStringToObject(tree, "description", s->cfg->description);
	if (nfilter && cJSON_GetArraySize(tables) == 0) {
		cJSON_Delete(tree);
		tool_result_error(out, 400, "unknown_table",
				  "none of the requested tables exist in '%s'; call describe_schema without "
				  "`tables` to list them",
				  s->cfg->name);
		return;
	}
	/* Keep the answer under the byte cap: drop tables from the end and say so. */
	size_t max = s->cfg->limits.max_result_bytes;
	cJSON_AddBoolToObject(tree, "truncated", 0);
	for (;;) {
		char *text = cJSON_PrintUnformatted(tree);
		size_t n = text ? strlen(text) + 12 : 0; /* {"result":} */
		free(text);
		if (!text || n <= max || cJSON_GetArraySize(tables) <= 1)
			break;
		int keep = cJSON_GetArraySize(tables);
		keep = (int)((double)keep * (double)max / (double)n * 0.95);
		if (keep < 1)
			keep = 1;
		while (cJSON_GetArraySize(tables) > keep)
			cJSON_DeleteItemFromArray(tables, cJSON_GetArraySize(tables) - 1);
		cJSON_ReplaceItemInObjectCaseSensitive(tree, "truncated", cJSON_CreateTrue());
		if (!cJSON_GetObjectItemCaseSensitive(tree, "hint"))
			cJSON_AddStringToObject(tree, "hint",
						"the schema is larger than one answer: call describe_schema "
						"with `tables` for the rest");
	}
	tool_result_json(out, tree, max);
}

/* ---- run_query ---- */

void tools_run_query(struct app *app, const char *source, const char *sql,
		     const struct cn_value *params, size_t nparams, uint32_t max_rows,
		     struct tool_result *out)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	struct source *s = sources_find(app->sources, source);
	if (s && !s->cfg->allow_run_query) {
		out->source = s->cfg->name;
		tool_result_error(out, 400, "run_query_disabled",
				  "ad-hoc queries are turned off for source '%s'", s->cfg->name);
		return;
	}
	void *h;
	if (!(s = ready_source(app, source, out, &h)))
		return;
	struct cn_error err = {0};
	const struct cn_driver *drv = s->module->api;
	int rc = drv->check(h, sql, &err);
	if (rc) {
		tool_result_status(out, rc, &err);
		return;
	}
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
		.timeout_ms = lim->timeout_ms,
		.max_rows = opts.max_rows,
	};
	rc = drv->execute(h, &q, result_writer_sink(w), &err);
	if (rc == CN_OK) {
		char *body;
		size_t len;
		rc = result_writer_finish(w, elapsed_ms(&start), &body, &len);
		if (rc == CN_OK) {
			free(out->body);
			out->body = body;
			out->len = len;
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
	const cJSON *plist = cJSON_GetObjectItemCaseSensitive(params, "parameters");
	const cJSON *mr = cJSON_GetObjectItemCaseSensitive(params, "max_rows");
	struct cn_value values[TOOLS_MAX_PARAMS];
	size_t n = 0;
	const cJSON *p;
	cJSON_ArrayForEach(p, plist) {
		if (n == TOOLS_MAX_PARAMS || param_from_json(p, &values[n])) {
			tool_result_error(out, 400, "invalid_parameters",
					  "parameters[%zu]: must be a string, number, boolean or null", n);
			free(owned);
			return;
		}
		n++;
	}
	tools_run_query(app, source, sql, values, n, mr ? (uint32_t)mr->valuedouble : 0, out);
	free(owned);
}

const struct tool_def tools_catalog[] = {
	{"list_data_sources", tool_list_data_sources,
	 "List the databases this connector can query: name, type, description, status and table count.",
	 "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}"},
	{"describe_schema", tool_describe_schema,
	 "Describe the tables of one data source: columns with types, nullability, keys, references, "
	 "descriptions, synonyms and row estimates. Pass `tables` to describe only some tables.",
	 "{\"type\":\"object\",\"required\":[\"source\"],\"additionalProperties\":false,"
	 "\"properties\":{"
	 "\"source\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64,"
	 "\"description\":\"Data source name from list_data_sources\"},"
	 "\"tables\":{\"type\":\"array\",\"maxItems\":200,"
	 "\"items\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":256},"
	 "\"description\":\"Only these tables (name or schema.name)\"}}}"},
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
static cJSON *tool_schemas[NTOOLS];
static pthread_once_t tool_schemas_once = PTHREAD_ONCE_INIT;

static void tool_schemas_parse(void)
{
	for (size_t i = 0; i < NTOOLS; i++)
		tool_schemas[i] = cJSON_Parse(tools_catalog[i].parameters_schema);
}

const struct tool_def *tools_find(const char *name)
{
	for (size_t i = 0; i < NTOOLS; i++)
		if (strcmp(tools_catalog[i].name, name) == 0)
			return &tools_catalog[i];
	return NULL;
}

void tools_call(struct app *app, const struct tool_def *tool, const cJSON *params,
		struct tool_result *out)
{
	memset(out, 0, sizeof *out);
	pthread_once(&tool_schemas_once, tool_schemas_parse);
	size_t idx = (size_t)(tool - tools_catalog);
	cJSON *empty = NULL;
	if (!params)
		params = empty = cJSON_CreateObject();
	char msg[300];
	if (!tool_schemas[idx] || !params) {
		tool_result_error(out, 500, "internal_error", "out of memory");
		goto out;
	}
	if (json_schema_check(tool_schemas[idx], params, "parameters", msg, sizeof msg)) {
		tool_result_error(out, 400, "invalid_parameters", "%s", msg);
		goto out;
	}
	tool->run(app, params, out);
out:
	cJSON_Delete(empty);
}
